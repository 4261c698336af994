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

import json
import re
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis import Case
from schemathesis.config import SchemathesisConfig

from application.config import Settings
from interfaces.http.app import create_app
from interfaces.http.config import ServerConfig
from tests.http.conftest import ServerErrors
from tests.http.server import LiveServer

MAX_EXAMPLES = 60
SEED = 20_260_101
REQUEST_TIMEOUT_S = 10.0
INTERNAL_ERROR = -32603
URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")  # what params.Url accepts
CLOSED_PORT_URL = "http://127.0.0.1:9/hook"  # the discard port: nothing listens there


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
def test_no_server_errors(case: Case, safe_server: LiveServer, server_errors: ServerErrors) -> None:
    case.body = _local_webhooks(case.body)
    response = case.call(base_url=safe_server.url, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code < 500, (response.status_code, response.text[:2000])
    if response.headers.get("content-type", [""])[0].startswith("application/json"):
        internal = _internal_errors(json.loads(response.content))
        assert not internal, internal
    assert not server_errors.take()
    case.validate_response(response)


def test_schema_is_openapi_3_1(safe_server: LiveServer) -> None:
    served = safe_server.client.get("/schema/openapi.json").json()
    assert served == json.loads(json.dumps(DOCUMENT))  # what the fuzzing above was built from
    assert served["openapi"].startswith("3.1")
    assert set(served["paths"]) >= {"/tasks", "/system"}
