"""The CLI's input files, fuzzed: whatever a file holds (bytes, JSON of any shape, NaN,
deep nesting, huge values), `tasks create`, `tasks update` and `run` exit 0 or 2 with a
reason, never a traceback, and store nothing they refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from interfaces.cli.main import cli, register_commands

register_commands()

SEED = 20_261_124
FIELDS = ["id", "name", "parent_id", "priority", "dependencies", "inputs", "params", "tasks"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["", "\x00", "é", "a" * 5_000, "noop", "echo"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)), inner, max_size=4),
    ),
    max_leaves=15,
)
documents = st.one_of(
    values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.lists(st.dictionaries(st.sampled_from(FIELDS), values, max_size=6), max_size=4).map(
        lambda v: json.dumps(v, allow_nan=True).encode()
    ),
    st.binary(max_size=200),
    st.just(b"[" * 10_000 + b"]" * 10_000),
)


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-fuzz") / "home"


@seed(SEED)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=documents, command=st.sampled_from(["create", "update", "run"]))
def test_any_input_file_is_a_clear_answer(
    home: Path, tmp_path_factory: pytest.TempPathFactory, document: bytes, command: str
) -> None:
    path = tmp_path_factory.mktemp("in") / "tasks.json"
    path.write_bytes(document)
    args: dict[str, list[str]] = {
        "create": ["tasks", "create", str(path)],
        "update": ["tasks", "update", "nobody-has-this-id", str(path)],
        "run": ["run", str(path)],
    }
    env = {"FLOWLEDGER_HOME": str(home), "FLOWLEDGER_CONCURRENCY": "4"}
    result = CliRunner().invoke(cli, args[command], env=env)
    assert "Traceback" not in result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    if result.exit_code == 2:
        assert result.output.strip(), "a refusal says why"
