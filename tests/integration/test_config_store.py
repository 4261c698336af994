"""Settings from the environment select the real store; bad settings name their variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from application.config import ConfigError, Settings
from application.ledger import Ledger
from tests.integration.support import settings_like, task


def env_for(settings: Settings) -> dict[str, str]:
    """The FLOWLEDGER_* variables that select the same store as `settings`."""
    env = {"FLOWLEDGER_HOME": str(settings.home)}
    if settings.database_url:
        env["FLOWLEDGER_DATABASE_URL"] = settings.database_url
    if settings.database_schema:
        env["FLOWLEDGER_DATABASE_SCHEMA"] = settings.database_schema
    return env


def test_from_env_selects_the_same_store(ledger: Ledger) -> None:
    settings = Settings.from_env(env_for(ledger.settings))
    assert settings.store_kind == ledger.settings.store_kind
    from_env = Ledger(settings)
    try:
        tree = from_env.create_tree([task("made-from-env")])
        assert ledger.tree_id_of("made-from-env") == tree.id
        assert ledger.load(tree.id).root_id == "made-from-env"
    finally:
        from_env.close()
    if settings.store_kind == "sqlite":
        assert (ledger.settings.home / "events.sqlite3").is_file()
        assert settings.store_location == str(ledger.settings.home / "events.sqlite3")
    else:
        assert not (ledger.settings.home / "events.sqlite3").exists()
        assert settings.store_location.startswith("127.0.0.1:5432/")


def test_flowledger_home_holds_the_sqlite_store(tmp_path: Path) -> None:
    home = tmp_path / "nested" / "data dir ✓"
    settings = Settings.from_env({"FLOWLEDGER_HOME": str(home)})
    assert settings.home == home
    assert settings.store_kind == "sqlite"
    app = Ledger(settings)
    try:
        app.create_tree([task("r")])
    finally:
        app.close()
    assert (home / "events.sqlite3").is_file()
    again = Ledger(Settings.from_env({"FLOWLEDGER_HOME": str(home)}))
    try:
        assert again.tree_of("r").root_id == "r"
    finally:
        again.close()


def test_default_home_is_under_the_user_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = Settings.from_env({})
    assert settings.home == tmp_path / ".flowledger"
    assert settings.sqlite_path == tmp_path / ".flowledger" / "events.sqlite3"
    assert settings.database_url is None
    assert settings.snapshot_every == 100


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@127.0.0.1:3306/flowledger",
        "sqlite:///tmp/events.db",
        "127.0.0.1:5432/test",
        "postgresql://postgres@127.0.0.1:5432",
        "postgresql://postgres@127.0.0.1:5432/",
        "postgresql://postgres@127.0.0.1:notaport/test",
        "postgresql://postgres@127.0.0.1:99999/test",
    ],
)
def test_a_bad_database_url_names_the_variable(tmp_path: Path, url: str) -> None:
    settings = Settings.from_env({"FLOWLEDGER_HOME": str(tmp_path), "FLOWLEDGER_DATABASE_URL": url})
    with pytest.raises(ConfigError) as raised:
        Ledger(settings)
    assert "FLOWLEDGER_DATABASE_URL" in str(raised.value)
    assert not (tmp_path / "events.sqlite3").exists()


@pytest.mark.parametrize("value", ["0", "-3", "ten", "1.5", "²", str(2**40)])
def test_a_bad_snapshot_interval_names_the_variable(tmp_path: Path, value: str) -> None:
    env = {"FLOWLEDGER_HOME": str(tmp_path), "FLOWLEDGER_SNAPSHOT_EVERY": value}
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert "FLOWLEDGER_SNAPSHOT_EVERY" in str(raised.value)


def test_an_unusable_home_names_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = Settings.from_env({"FLOWLEDGER_HOME": str(blocker / "home")})
    with pytest.raises(ConfigError) as raised:
        Ledger(settings)
    assert "FLOWLEDGER_HOME" in str(raised.value)


def test_the_postgres_scheme_alias_selects_the_same_store(ledger: Ledger) -> None:
    if ledger.settings.store_kind != "postgresql":
        assert Settings.from_env(env_for(ledger.settings)).store_kind == "sqlite"
        return
    url = str(ledger.settings.database_url).replace("postgresql://", "postgres://", 1)
    alias = Ledger(settings_like(ledger.settings, database_url=url))
    try:
        tree = alias.create_tree([task("via-alias")])
        assert ledger.tree_id_of("via-alias") == tree.id
    finally:
        alias.close()


@pytest.mark.postgres
def test_a_database_that_does_not_exist_names_the_variable(postgres_settings: Settings) -> None:
    """A URL naming a missing database is a bad FLOWLEDGER_DATABASE_URL, whatever the schema."""
    url = str(postgres_settings.database_url)
    missing = url[: url.rindex("/") + 1] + "flowledger_no_such_database"
    with pytest.raises(ConfigError) as raised:
        Ledger(settings_like(postgres_settings, database_url=missing, database_schema=None))
    assert "FLOWLEDGER_DATABASE_URL" in str(raised.value)
    assert "flowledger_no_such_database" in str(raised.value)


@pytest.mark.parametrize("content", ["directory", "garbage"])
def test_an_unreadable_sqlite_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    settings = Settings(home=tmp_path)
    if content == "directory":
        settings.sqlite_path.mkdir()
    else:
        settings.sqlite_path.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(ConfigError) as raised:
        Ledger(settings)
    assert str(settings.sqlite_path) in str(raised.value)


@pytest.mark.parametrize("schema", ['a"b', "drop table", "x" * 41, "1abc"])
def test_a_schema_that_is_not_a_plain_identifier_is_refused(tmp_path: Path, schema: str) -> None:
    env = {"FLOWLEDGER_HOME": str(tmp_path), "FLOWLEDGER_DATABASE_SCHEMA": schema}
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert "FLOWLEDGER_DATABASE_SCHEMA" in str(raised.value)
