"""Schemathesis over the server's own OpenAPI schema: no generated request, valid or not, may
make the server fail (no 5xx, no JSON-RPC -32603 internal error, nothing logged as an error),
and every answer must match the documented responses (JSON and SSE events alike).

Bounded: a fixed seed, deterministic generation, at most MAX_EXAMPLES fuzzed cases per
operation (the coverage phase adds a bounded number more: about 3,000 requests in all), a
per-request timeout. Webhook URLs are pointed at a closed local port. The server's executor
registry holds only noop, echo and fail, so a generated tree can never wait on `sleep` or
call out with `http`: tasks.execute with wait=true or use_streaming ends at once (or the
tree is refused as unknown_executor)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis import Case
from schemathesis.config import SchemathesisConfig

from application.config import Settings
from application.executors import ExecutorRegistry, loaded_registry
from interfaces.http.app import create_app
from interfaces.http.config import ServerConfig
from interfaces.rpc.orchestrator import Orchestrator
from tests.conftest import POSTGRES_URL, postgres_schema
from tests.http.server import LiveServer, running_server

MAX_EXAMPLES = 60
SEED = 20_260_101
REQUEST_TIMEOUT_S = 10.0
SAFE_EXECUTORS = ("noop", "echo", "fail")
INTERNAL_ERROR = -32603
URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")  # what params.Url accepts
CLOSED_PORT_URL = "http://127.0.0.1:9/hook"  # the discard port: nothing listens there


def _safe_registry() -> ExecutorRegistry:
    """Only executors that finish at once and touch nothing outside the process."""
    everything = loaded_registry()
    safe = ExecutorRegistry()
    for executor_id in SAFE_EXECUTORS:
        entry = everything.get(executor_id)
        assert entry is not None, executor_id
        safe.register(entry.origin, executor_id, input_schema=entry.input_schema)
    return safe


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server on each store (PostgreSQL when FLOWLEDGER_TEST_POSTGRES_URL is set)."""
    home = tmp_path_factory.mktemp("schemathesis") / "home"
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            settings = Settings(home=home)
        else:
            if not POSTGRES_URL:
                pytest.skip("FLOWLEDGER_TEST_POSTGRES_URL is not set (CI sets it)")
            schemas = postgres_schema()
            stack.callback(schemas.close)  # drops the schema
            settings = Settings(home=home, database_url=POSTGRES_URL, database_schema=next(schemas))
        orchestrator = Orchestrator(settings, executors=_safe_registry())
        server = stack.enter_context(running_server(settings, orchestrator=orchestrator))
        # Something to find: ids the generator may hit and a tree it may read or run.
        server.result("tasks.create", [{"id": "root", "name": "root"}])
        yield server


def _openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, built without starting anything (the test checks that
    the live server serves the same one)."""
    app = create_app(Settings(home=Path("/nonexistent/flowledger")), ServerConfig())
    document: dict[str, Any] = app.openapi_schema.to_schema()
    return document


CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "request-timeout": REQUEST_TIMEOUT_S,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        # JSON-RPC answers a bad request with HTTP 200 and an error object (API.md), so a
        # rejected request is not a 4xx: the check below asserts the error object instead.
        "checks": {"negative_data_rejection": {"enabled": False}},
    }
)
DOCUMENT = _openapi_document()
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(DOCUMENT)), config=CONFIG)


class _ServerErrors(logging.Handler):
    """Error records the server logs: an internal error inside a notification or a batch
    has no -32603 to show (a notification gets no answer), but it is logged."""

    IGNORED = ("flowledger.webhooks",)  # an unreachable webhook is the caller's problem

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(self.IGNORED):
            self.records.append(record)

    def take(self) -> list[str]:
        found = [self.format(r) for r in self.records]
        self.records.clear()
        return found


@pytest.fixture(scope="module")
def server_errors() -> Iterator[_ServerErrors]:
    handler = _ServerErrors()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def _internal_errors(body: Any) -> list[Any]:
    replies = body if isinstance(body, list) else [body]
    return [
        r
        for r in replies
        if isinstance(r, dict)
        and isinstance(r.get("error"), dict)
        and r["error"].get("code") == INTERNAL_ERROR
    ]


def _local_webhooks(value: Any) -> Any:
    """`value` with every valid webhook URL pointed at a closed local port: deliveries fail
    at once instead of resolving and calling generated hosts."""
    if isinstance(value, list):
        return [_local_webhooks(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _local_webhooks(v) for k, v in value.items()}
    hook = out.get("webhook_config")
    if isinstance(hook, dict) and isinstance(hook.get("url"), str) and URL.match(hook["url"]):
        out["webhook_config"] = {**hook, "url": CLOSED_PORT_URL}
    return out


@schema.parametrize()
def test_no_server_errors(case: Case, live: LiveServer, server_errors: _ServerErrors) -> None:
    case.body = _local_webhooks(case.body)
    response = case.call(base_url=live.url, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code < 500, (response.status_code, response.text[:2000])
    if response.headers.get("content-type", [""])[0].startswith("application/json"):
        internal = _internal_errors(json.loads(response.content))
        assert not internal, internal
    assert not server_errors.take()
    case.validate_response(response)


def test_schema_is_openapi_3_1(live: LiveServer) -> None:
    served = live.client.get("/schema/openapi.json").json()
    assert served == json.loads(json.dumps(DOCUMENT))  # what the fuzzing above was built from
    assert served["openapi"].startswith("3.1")
    assert set(served["paths"]) >= {"/tasks", "/system"}
