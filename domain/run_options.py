"""How a task wants to be run, read from its params and schemas: which executor, the
timeout, the retry policy and what to do when the process running it dies."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from msgspec import Struct

from domain.errors import FieldError

MAX_ATTEMPTS = 100
MAX_DELAY_S = 7 * 24 * 3600.0
DEFAULT_BACKOFF_S = 1.0
DEFAULT_MAX_BACKOFF_S = 60.0
ON_INTERRUPT = ("rerun", "fail")


class RetryPolicy(Struct, frozen=True, kw_only=True):
    """params.retry: up to `max_attempts` attempts, waiting backoff_s * 2**(n-1) (at most
    max_backoff_s) after failed attempt n."""

    max_attempts: int = 1
    backoff_s: float = DEFAULT_BACKOFF_S
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based) before the next."""
        if self.backoff_s == 0:
            return 0.0
        exponent = min(attempt - 1, 1000)  # 2.0**1000 times a week is still a finite float
        return min(self.backoff_s * 2.0**exponent, self.max_backoff_s)

    def allows_another(self, attempt: int) -> bool:
        return attempt < self.max_attempts


NO_RETRY = RetryPolicy()


class RunOptions(Struct, frozen=True, kw_only=True):
    """Everything the runner reads from one task's definition."""

    executor_id: str | None = None
    timeout_s: float | None = None
    retry: RetryPolicy = NO_RETRY
    on_interrupt: Literal["rerun", "fail"] = "rerun"


def executor_id_of(params: Mapping[str, Any], schemas: Mapping[str, Any]) -> str | None:
    """params.executor_id, else schemas.method; None for a grouping node."""
    chosen = params.get("executor_id")
    if chosen is None:
        chosen = schemas.get("method")
    return chosen if isinstance(chosen, str) and chosen else None


def run_options(params: Mapping[str, Any], schemas: Mapping[str, Any]) -> RunOptions:
    """The run options of a task whose params passed `run_params_problems`."""
    retry = params.get("retry")
    timeout = params.get("timeout_s")
    return RunOptions(
        executor_id=executor_id_of(params, schemas),
        timeout_s=None if timeout is None else float(timeout),
        retry=NO_RETRY
        if retry is None
        else RetryPolicy(
            max_attempts=retry.get("max_attempts", 1),
            backoff_s=float(retry.get("backoff_s", DEFAULT_BACKOFF_S)),
            max_backoff_s=float(retry.get("max_backoff_s", DEFAULT_MAX_BACKOFF_S)),
        ),
        on_interrupt=params.get("on_interrupt", "rerun"),
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seconds(value: Any, field: str, *, positive: bool) -> FieldError | None:
    if not _number(value) or not math.isfinite(value):
        return FieldError(field, "must be a number of seconds")
    if value < 0 or (positive and value == 0):
        return FieldError(field, "must be more than 0" if positive else "must be 0 or more")
    if value > MAX_DELAY_S:
        return FieldError(field, f"must be at most {MAX_DELAY_S:.0f} s (a week)")
    return None


def run_params_problems(
    params: Mapping[str, Any], schemas: Mapping[str, Any], where: str
) -> list[FieldError]:
    """Why the run-related keys of params/schemas are unusable (other keys are free)."""
    problems: list[FieldError] = []
    p = f"{where}.params" if where else "params"
    s = f"{where}.schemas" if where else "schemas"
    for field, value in ((f"{p}.executor_id", params.get("executor_id")),):
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(FieldError(field, "must be a non-empty string (an executor id)"))
    method = schemas.get("method")
    if method is not None and (not isinstance(method, str) or not method):
        problems.append(FieldError(f"{s}.method", "must be a non-empty string (an executor id)"))
    input_schema = schemas.get("input_schema")
    if input_schema is not None and not isinstance(input_schema, dict):
        problems.append(FieldError(f"{s}.input_schema", "must be an object (a JSON Schema)"))
    elif isinstance(input_schema, dict) and not isinstance(
        input_schema.get("properties", {}), dict
    ):
        problems.append(FieldError(f"{s}.input_schema.properties", "must be an object"))
    if "timeout_s" in params and params["timeout_s"] is not None:
        problem = _seconds(params["timeout_s"], f"{p}.timeout_s", positive=True)
        if problem:
            problems.append(problem)
    if "on_interrupt" in params and params["on_interrupt"] not in ON_INTERRUPT:
        problems.append(FieldError(f"{p}.on_interrupt", 'must be "rerun" or "fail"'))
    retry = params.get("retry")
    if retry is not None:
        problems.extend(_retry_problems(retry, f"{p}.retry"))
    return problems


def _retry_problems(retry: Any, where: str) -> list[FieldError]:
    if not isinstance(retry, dict):
        return [FieldError(where, "must be an object {max_attempts, backoff_s, max_backoff_s}")]
    problems = [
        FieldError(f"{where}.{key}", "unknown field")
        for key in retry
        if key not in RetryPolicy.__struct_fields__
    ]
    attempts = retry.get("max_attempts", 1)
    if type(attempts) is not int or not 1 <= attempts <= MAX_ATTEMPTS:
        problems.append(
            FieldError(f"{where}.max_attempts", f"must be an integer from 1 to {MAX_ATTEMPTS}")
        )
    for key in ("backoff_s", "max_backoff_s"):
        if key in retry:
            problem = _seconds(retry[key], f"{where}.{key}", positive=False)
            if problem:
                problems.append(problem)
    return problems
