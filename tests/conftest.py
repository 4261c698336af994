"""Shared fixtures: a Ledger on a real SQLite file, and on the real PostgreSQL when enabled."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from application.config import Settings
from application.ledger import Ledger

POSTGRES_URL = os.environ.get("FLOWLEDGER_TEST_POSTGRES_URL")


def postgres_schema() -> Iterator[str]:
    """A fresh schema name (the Ledger creates the schema), dropped afterwards."""
    import psycopg

    assert POSTGRES_URL is not None
    schema = f"fl_test_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def postgres_settings(tmp_path: Path) -> Iterator[Settings]:
    if not POSTGRES_URL:
        pytest.skip("FLOWLEDGER_TEST_POSTGRES_URL is not set (CI sets it)")
    for schema in postgres_schema():
        yield Settings(home=tmp_path / "home", database_url=POSTGRES_URL, database_schema=schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_settings(request: pytest.FixtureRequest) -> Settings:
    """Settings for each backend: every test using this runs on SQLite and PostgreSQL."""
    name = "sqlite_settings" if request.param == "sqlite" else "postgres_settings"
    settings: Settings = request.getfixturevalue(name)
    return settings


@pytest.fixture
def ledger(store_settings: Settings) -> Iterator[Ledger]:
    app = Ledger(store_settings)
    try:
        yield app
    finally:
        app.close()
