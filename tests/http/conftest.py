"""Running servers on each store (SQLite file; PostgreSQL when enabled): `server` is fresh
for one test; `shared_server` serves a whole module (tests keep apart by unique names)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from application.config import Settings
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
