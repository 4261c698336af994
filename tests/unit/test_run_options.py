"""domain.run_options: run params are validated at creation (naming the field) and read
into RunOptions; the retry policy's backoff doubles up to its cap."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidSpec
from domain.run_options import (
    MAX_ATTEMPTS,
    MAX_DELAY_S,
    NO_RETRY,
    RetryPolicy,
    RunOptions,
    executor_id_of,
    run_options,
    run_params_problems,
)
from domain.specs import parse_changes, read_tasks
from tests.unit.strategies import FAST


def refused_fields(params: Any = None, schemas: Any = None) -> dict[str, str]:
    """{field: reason} of a one-task array whose first task has these params/schemas."""
    item: dict[str, Any] = {"id": "a", "name": "a"}
    if params is not None:
        item["params"] = params
    if schemas is not None:
        item["schemas"] = schemas
    with pytest.raises(InvalidSpec) as caught:
        read_tasks([item])
    return {f.field: f.reason for f in caught.value.fields}


@pytest.mark.parametrize(
    ("params", "schemas", "field"),
    [
        ({"timeout_s": 0}, None, "tasks[0].params.timeout_s"),
        ({"timeout_s": -1}, None, "tasks[0].params.timeout_s"),
        ({"timeout_s": "5"}, None, "tasks[0].params.timeout_s"),
        ({"timeout_s": True}, None, "tasks[0].params.timeout_s"),
        ({"timeout_s": MAX_DELAY_S + 1}, None, "tasks[0].params.timeout_s"),
        ({"executor_id": ""}, None, "tasks[0].params.executor_id"),
        ({"executor_id": 7}, None, "tasks[0].params.executor_id"),
        (None, {"method": ""}, "tasks[0].schemas.method"),
        (None, {"method": ["echo"]}, "tasks[0].schemas.method"),
        (None, {"input_schema": "object"}, "tasks[0].schemas.input_schema"),
        (None, {"input_schema": {"properties": []}}, "tasks[0].schemas.input_schema.properties"),
        ({"on_interrupt": "retry"}, None, "tasks[0].params.on_interrupt"),
        ({"retry": 3}, None, "tasks[0].params.retry"),
        ({"retry": {"max_attempts": 0}}, None, "tasks[0].params.retry.max_attempts"),
        ({"retry": {"max_attempts": MAX_ATTEMPTS + 1}}, None, "tasks[0].params.retry.max_attempts"),
        ({"retry": {"max_attempts": 2.0}}, None, "tasks[0].params.retry.max_attempts"),
        ({"retry": {"max_attempts": True}}, None, "tasks[0].params.retry.max_attempts"),
        ({"retry": {"backoff_s": -0.5}}, None, "tasks[0].params.retry.backoff_s"),
        ({"retry": {"max_backoff_s": "1"}}, None, "tasks[0].params.retry.max_backoff_s"),
        ({"retry": {"attempts": 3}}, None, "tasks[0].params.retry.attempts"),
    ],
)
def test_bad_run_params_are_refused_naming_the_field(params: Any, schemas: Any, field: str) -> None:
    fields = refused_fields(params, schemas)
    assert list(fields) == [field]
    assert fields[field]


def test_every_problem_is_reported_at_once_with_its_task_index() -> None:
    items = [
        {"id": "a", "name": "a", "params": {"timeout_s": 1}},
        {
            "id": "b",
            "name": "b",
            "parent_id": "a",
            "params": {"timeout_s": 0, "retry": {"max_attempts": 0, "backoff_s": -1}},
        },
    ]
    with pytest.raises(InvalidSpec) as caught:
        read_tasks(items)
    assert [f.field for f in caught.value.fields] == [
        "tasks[1].params.timeout_s",
        "tasks[1].params.retry.max_attempts",
        "tasks[1].params.retry.backoff_s",
    ]
    assert caught.value.message.startswith("tasks[1].params.timeout_s: ")


def test_an_update_names_the_field_without_a_task_index() -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_changes({"params": {"timeout_s": -2}})
    assert [f.field for f in caught.value.fields] == ["params.timeout_s"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"timeout_s": None},
        {"timeout_s": 0.001, "on_interrupt": "fail"},
        {"retry": {"max_attempts": MAX_ATTEMPTS, "backoff_s": 0, "max_backoff_s": 0}},
        {"retry": {"max_attempts": 1, "backoff_s": MAX_DELAY_S}},
        {"anything": {"else": "is free"}},
    ],
)
def test_good_run_params_pass(params: dict[str, Any]) -> None:
    assert run_params_problems(params, {}, "tasks[0]") == []
    assert read_tasks([{"id": "a", "name": "a", "params": params}]).specs[0].params == params


# -- reading the options -------------------------------------------------------------------------
def test_run_options_defaults() -> None:
    assert run_options({}, {}) == RunOptions()
    assert run_options({}, {}).retry == NO_RETRY
    assert NO_RETRY.max_attempts == 1
    assert not NO_RETRY.allows_another(1)
    assert RunOptions().on_interrupt == "rerun"


def test_run_options_read_every_field() -> None:
    options = run_options(
        {
            "executor_id": "echo",
            "timeout_s": 2,
            "retry": {"max_attempts": 4, "backoff_s": 1, "max_backoff_s": 3},
            "on_interrupt": "fail",
        },
        {"method": "noop"},
    )
    assert options == RunOptions(
        executor_id="echo",
        timeout_s=2.0,
        retry=RetryPolicy(max_attempts=4, backoff_s=1.0, max_backoff_s=3.0),
        on_interrupt="fail",
    )
    assert isinstance(options.timeout_s, float)


def test_executor_id_wins_over_method_and_neither_means_grouping() -> None:
    assert executor_id_of({"executor_id": "a"}, {"method": "b"}) == "a"
    assert executor_id_of({}, {"method": "b"}) == "b"
    assert executor_id_of({"executor_id": None}, {"method": "b"}) == "b"
    assert executor_id_of({}, {}) is None
    assert run_options({}, {"input_schema": {}}).executor_id is None


@pytest.mark.parametrize(("max_attempts", "allowed"), [(1, []), (3, [1, 2]), (5, [1, 2, 3, 4])])
def test_allows_another_until_max_attempts(max_attempts: int, allowed: list[int]) -> None:
    policy = RetryPolicy(max_attempts=max_attempts)
    assert [n for n in range(1, max_attempts + 2) if policy.allows_another(n)] == allowed


# -- backoff -------------------------------------------------------------------------------------
def test_backoff_examples() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_s=1.0, max_backoff_s=10.0)
    assert [policy.delay_after(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert RetryPolicy(backoff_s=0).delay_after(50) == 0.0
    assert RetryPolicy(backoff_s=5, max_backoff_s=2).delay_after(1) == 2.0


@FAST
@given(
    backoff=st.floats(min_value=1e-3, max_value=MAX_DELAY_S),
    cap=st.floats(min_value=0, max_value=MAX_DELAY_S),
    attempt=st.integers(min_value=1, max_value=MAX_ATTEMPTS - 1),
)
def test_backoff_doubles_after_each_failed_attempt_up_to_the_cap(
    backoff: float, cap: float, attempt: int
) -> None:
    policy = RetryPolicy(max_attempts=MAX_ATTEMPTS, backoff_s=backoff, max_backoff_s=cap)
    delay = policy.delay_after(attempt)
    assert delay == min(backoff * 2.0 ** (attempt - 1), cap)
    assert 0 <= delay <= cap
    assert policy.delay_after(attempt + 1) == min(2 * delay, cap)  # doubling is exact
    assert policy.delay_after(1) == min(backoff, cap)


def test_backoff_keeps_doubling_for_a_tiny_backoff() -> None:
    # Regression (found in commit 2387036, fixed since):
    # domain/run_options.py RetryPolicy.delay_after caps the exponent at 64 ("2**64 s
    # already exceeds any max_backoff_s"), which only holds when backoff_s >= 1 s. With a
    # valid tiny backoff_s (any value >= 0 passes validation) the delay stops doubling after
    # attempt 65: backoff_s=1e-20, attempt 99 gives 1e-20 * 2**64 ~= 0.18 s instead of
    # min(1e-20 * 2**98, 60) = 60 s, contradicting the documented backoff_s * 2**(n-1).
    assert run_params_problems({"retry": {"backoff_s": 1e-20}}, {}, "") == []
    policy = RetryPolicy(max_attempts=MAX_ATTEMPTS, backoff_s=1e-20, max_backoff_s=60.0)
    assert policy.delay_after(99) == min(1e-20 * 2.0**98, 60.0) == 60.0
