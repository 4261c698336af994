"""Running servers on each store (SQLite file; PostgreSQL when enabled): `server` is fresh
for one test; `shared_server` serves a whole module (tests keep apart by unique names);
`safe_server` serves a module of fuzzing with only executors that end at once, and
`server_errors` collects what the server logs as an error meanwhile."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest

from application.config import Settings
from application.executors import ExecutorRegistry, loaded_registry
from interfaces.rpc.orchestrator import Orchestrator
from tests.conftest import POSTGRES_URL, postgres_schema
from tests.http import support
from tests.http.server import LiveServer, running_server

assert support.hold  # registers the test.hold executor before any server starts


@pytest.fixture
def server(store_settings: Settings) -> Iterator[LiveServer]:
    with running_server(store_settings) as live:
        yield live


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("home")
    if request.param == "sqlite":
        with running_server(Settings(home=home)) as live:
            yield live
        return
    if not POSTGRES_URL:
        pytest.skip("FLOWLEDGER_TEST_POSTGRES_URL is not set (CI sets it)")
    for schema in postgres_schema():
        settings = Settings(home=home, database_url=POSTGRES_URL, database_schema=schema)
        with running_server(settings) as live:
            yield live


@pytest.fixture
def names() -> support.Names:
    return support.Names()


SAFE_EXECUTORS = ("noop", "echo", "fail")


def safe_registry() -> ExecutorRegistry:
    """Only executors that finish at once and touch nothing outside the process: a
    generated tree can never wait on `sleep` or call out with `http`."""
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
def safe_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server on each store running only SAFE_EXECUTORS, with one tree to find (root)."""
    home = tmp_path_factory.mktemp("fuzzed") / "home"
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            settings = Settings(home=home)
        else:
            if not POSTGRES_URL:
                pytest.skip("FLOWLEDGER_TEST_POSTGRES_URL is not set (CI sets it)")
            schemas = postgres_schema()
            stack.callback(schemas.close)  # drops the schema
            settings = Settings(home=home, database_url=POSTGRES_URL, database_schema=next(schemas))
        orchestrator = Orchestrator(settings, executors=safe_registry())
        server = stack.enter_context(running_server(settings, orchestrator=orchestrator))
        server.result("tasks.create", [{"id": "root", "name": "root"}])
        yield server


class ServerErrors(logging.Handler):
    """Error records the server logs: an internal error inside a notification or a batch
    has no -32603 to show (a notification gets no answer), but it is logged."""

    # an unreachable webhook or push receiver is the caller's problem
    IGNORED = ("flowledger.webhooks", "flowledger.a2a.push")

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
def server_errors() -> Iterator[ServerErrors]:
    handler = ServerErrors()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
