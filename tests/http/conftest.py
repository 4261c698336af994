"""A running server on each store (SQLite file; PostgreSQL when enabled)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from application.config import Settings
from tests.http.server import LiveServer, running_server


@pytest.fixture
def server(store_settings: Settings) -> Iterator[LiveServer]:
    with running_server(store_settings) as live:
        yield live
