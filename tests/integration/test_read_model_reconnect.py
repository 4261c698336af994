"""PostgreSQL: a read after the server dropped the read models' connections (a restart, a
failover) answers: the dead connection is discarded and the read runs once more."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from application.config import Settings
from application.ledger import Ledger
from projections.projector import Projector
from projections.queries import ReadModel
from projections.schema import create_read_engine
from tests.conftest import POSTGRES_URL


@pytest.mark.postgres
def test_a_read_survives_dropped_connections(postgres_settings: Settings) -> None:
    assert POSTGRES_URL is not None
    ledger = Ledger(postgres_settings)
    engine = create_read_engine(postgres_settings)
    try:
        ledger.create_tree([{"id": "rc-root", "name": "root"}])
        Projector(ledger, engine).catch_up()
        reads = ReadModel(engine)
        assert reads.task("rc-root")["id"] == "rc-root"
        with engine.connect() as conn:  # the pooled connection the next read will take
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert reads.task("rc-root")["id"] == "rc-root"
    finally:
        engine.dispose()
        ledger.close()
