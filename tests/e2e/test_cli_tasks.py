"""`flowledger tasks get|tree|children|list|update|delete|copy|cancel` and `history` through
Click's CliRunner on a real store: --json is exactly the JSON-RPC result (what the server's
dispatch answers for the same call on the same store), and every refusal exits 1 or 2 with
its reason on stderr, never a traceback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from application.config import Settings
from interfaces.cli.main import cli
from interfaces.rpc import dispatch
from interfaces.rpc.calls import Call
from interfaces.rpc.orchestrator import Orchestrator

Invoke = Callable[..., Result]

TREE = [
    {"id": "r", "name": "root", "user_id": "ana"},
    {"id": "a", "name": "fetch", "parent_id": "r", "schemas": {"method": "echo"}, "priority": 1},
    {"id": "b", "name": "load", "parent_id": "r", "dependencies": ["a"], "priority": 0},
    {"id": "c", "name": "leaf", "parent_id": "b", "schemas": {"method": "noop"}},
]


def use_store(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """Point the CLI (this process's environment) at `settings`' store."""
    import os

    for name in [n for n in os.environ if n.startswith("FLOWLEDGER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FLOWLEDGER_HOME", str(settings.home))
    if settings.database_url is not None:
        monkeypatch.setenv("FLOWLEDGER_DATABASE_URL", settings.database_url)
        monkeypatch.setenv("FLOWLEDGER_DATABASE_SCHEMA", settings.database_schema or "")


def invoker() -> Invoke:
    from interfaces.cli import history, tasks  # noqa: F401  (registers the commands)

    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(cli, list(args), input=stdin)

    return invoke


@pytest.fixture
def run(store_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """The CLI on each store (SQLite, and PostgreSQL when enabled)."""
    use_store(monkeypatch, store_settings)
    return invoker()


@pytest.fixture
def local(sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """The CLI on the embedded store (for refusals, which do not depend on the store)."""
    use_store(monkeypatch, sqlite_settings)
    return invoker()


def server_answers(settings: Settings, calls: list[tuple[str, Any]]) -> list[Any]:
    """What the server's JSON-RPC endpoint answers to each (method, params): the HTTP body
    path, decoded."""

    async def main() -> list[bytes]:
        async with Orchestrator(settings, live=False, run_trees=False, resume=False) as o:
            bodies = []
            for method, params in calls:
                body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
                answer = await dispatch.answer(Call(o), json.dumps(body).encode(), "/tasks")
                assert isinstance(answer, bytes)
                bodies.append(answer)
            return bodies

    replies = [json.loads(body) for body in asyncio.run(main())]
    assert all("result" in reply for reply in replies), replies
    return [reply["result"] for reply in replies]


def server_answer(settings: Settings, method: str, params: Any) -> Any:
    return server_answers(settings, [(method, params)])[0]


def ok(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    assert result.stderr == "" or "Traceback" not in result.stderr
    return json.loads(result.stdout)


def refused(result: Result, code: int, *reasons: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    for reason in reasons:
        assert reason in result.stderr, result.stderr
    assert "Traceback" not in result.output


def created(run: Invoke, tasks: list[dict[str, Any]] = TREE) -> dict[str, Any]:
    root: dict[str, Any] = ok(run("tasks", "create", "-", "--json", stdin=json.dumps(tasks)))
    return root


def test_each_read_is_exactly_the_json_rpc_result(run: Invoke, store_settings: Settings) -> None:
    created(run)
    assert ok(run("tasks", "cancel", "c", "--json"))[0]["status"] == "cancelled"
    cases: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
        (("tasks", "get", "b"), "tasks.get", {"task_id": "b"}),
        (("tasks", "tree", "c"), "tasks.tree", {"task_id": "c"}),
        (("tasks", "children", "r"), "tasks.children", {"task_id": "r"}),
        (("tasks", "children", "--parent", "b"), "tasks.children", {"parent_id": "b"}),
        (("tasks", "list"), "tasks.list", {}),
        (
            ("tasks", "list", "--all", "--status", "pending", "--user", "ana", "--limit", "2"),
            "tasks.list",
            {"root_only": False, "status": "pending", "user_id": "ana", "limit": 2},
        ),
        (("history", "a"), "tasks.history", {"task_id": "a"}),
        (
            ("history", "a", "--after-version", "1", "--limit", "1"),
            "tasks.history",
            {"task_id": "a", "after_version": 1, "limit": 1},
        ),
        (("history", "a", "--at", "1"), "tasks.replay", {"task_id": "a", "version": 1}),
        (
            ("history", "a", "--at", "2999-01-01T00:00:00"),
            "tasks.replay",
            {"task_id": "a", "at": "2999-01-01T00:00:00Z"},
        ),
    ]
    answers = server_answers(store_settings, [(method, params) for _, method, params in cases])
    for (args, _, _), answer in zip(cases, answers, strict=True):
        assert ok(run(*args, "--json")) == answer, args
    children = ok(run("tasks", "children", "r", "--json"))
    assert [c["id"] for c in children] == ["b", "a"]  # most urgent first
    listed = ok(run("tasks", "list", "--all", "--status", "pending", "--json"))
    assert {t["id"] for t in listed} == {"r", "a", "b"}


def test_people_get_tables_and_trees_without_colour_off_a_terminal(run: Invoke) -> None:
    created(run)
    shown = {
        "get": run("tasks", "get", "a"),
        "tree": run("tasks", "tree", "a"),
        "children": run("tasks", "children", "r"),
        "list": run("tasks", "list"),
        "history": run("history", "r"),
    }
    for name, result in shown.items():
        assert result.exit_code == 0, (name, result.output)
        assert "\x1b[" not in result.output, name
    assert "fetch" in shown["get"].stdout
    assert "tree_status" not in shown["get"].stdout  # only the root has one
    assert "leaf" in shown["tree"].stdout
    assert "load" in shown["children"].stdout
    assert "root" in shown["list"].stdout
    assert "Created" in shown["history"].stdout


def test_update_changes_a_pending_task_then_delete_removes_it(
    run: Invoke, store_settings: Settings
) -> None:
    created(run)
    changed = ok(
        run(
            "tasks",
            "update",
            "c",
            "--name",
            "last",
            "--priority",
            "3",
            "--inputs",
            '{"n": 1}',
            "--params",
            '{"timeout_s": 5}',
            "--dependencies",
            '[{"id": "a", "required": false}]',
            "--json",
        )
    )
    assert (changed["name"], changed["priority"], changed["inputs"]) == ("last", 3, {"n": 1})
    assert changed["params"] == {"timeout_s": 5}
    assert changed["dependencies"] == [{"id": "a", "required": False}]
    assert changed == server_answer(store_settings, "tasks.get", {"task_id": "c"})

    from_stdin = ok(
        run("tasks", "update", "c", "-", "--json", stdin='{"schemas": {"method": "echo"}}')
    )
    assert from_stdin["schemas"] == {"method": "echo"}
    assert "last" in run("tasks", "update", "c", "--priority", "4").stdout

    deleted = ok(run("tasks", "delete", "b", "--json"))
    assert deleted == {
        "success": True,
        "task_id": "b",
        "deleted_count": 2,
        "deleted_ids": ["b", "c"],
    }
    refused(run("tasks", "get", "c"), 1, "task 'c' not found")
    assert "deleted 1 task(s): a" in run("tasks", "delete", "a").stdout
    types = [e["type"] for e in ok(run("history", "r", "--json"))]
    assert types.count("TaskRemoved") == 2


def test_update_refusals_name_each_field(local: Invoke, tmp_path: Any) -> None:
    created(local)
    refused(local("tasks", "update", "c", "--priority", "-1"), 2, "priority")
    refused(
        local("tasks", "update", "c", "-", stdin='{"status": "done", "priority": "high"}'),
        2,
        "status: not updatable",
        "priority",
    )
    refused(local("tasks", "update", "c", "--inputs", "{nope"), 2, "--inputs", "not valid JSON")
    refused(local("tasks", "update", "c", "-", stdin="[1]"), 2, "stdin must hold a JSON object")
    refused(local("tasks", "update", "c", "-", stdin='{"task_id": "x"}'), 2, "TASK_ID argument")
    refused(
        local("tasks", "update", "c", "-", "--name", "x", stdin='{"name": "y"}'),
        2,
        "name is given twice",
    )
    changes = tmp_path / "changes.json"
    changes.write_text('{"dependencies": ["nowhere"]}')
    refused(local("tasks", "update", "c", str(changes)), 2, "nowhere")
    refused(local("tasks", "update", "c", str(tmp_path / "missing.json")), 2, "cannot read")
    refused(local("tasks", "update", "zzz", "--name", "x"), 1, "task 'zzz' not found")
    local("tasks", "cancel", "c")
    refused(local("tasks", "update", "c", "--name", "x"), 1, "pending")


def test_delete_refusals(local: Invoke) -> None:
    created(local)
    refused(local("tasks", "delete", "a"), 1, "cannot be removed: b")  # names the blocker
    refused(local("tasks", "delete", "nope"), 1, "not found")
    local("tasks", "cancel", "c")
    refused(local("tasks", "delete", "c"), 1)
    assert ok(local("tasks", "get", "a", "--json"))["status"] == "pending"


def test_copy_options_are_the_servers(local: Invoke) -> None:
    created(local)
    refused(local("tasks", "copy", "b", "--mode", "custom"), 2, "custom_task_ids")
    refused(local("tasks", "copy", "b", "--custom-ids", "a"), 2, "only with copy_mode custom")
    refused(local("tasks", "copy", "b", "--mode", "sideways"), 2, "--mode")
    refused(local("tasks", "copy", "nope"), 1, "not found")
    planned = ok(
        local(
            "tasks",
            "copy",
            "r",
            "--mode",
            "custom",
            "--custom-ids",
            "b",
            "--children",
            "--dry-run",
            "--json",
        )
    )
    assert planned["saved"] is False
    assert {t["original_task_id"] for t in planned["tasks"]} >= {"b", "c"}
    copy = ok(local("tasks", "copy", "b", "--mode", "full", "--json"))
    assert copy["tree_status"] == "pending"
    assert copy["original_task_id"] == "r"
    assert "children" in copy


def test_children_and_list_validate_like_the_server(local: Invoke) -> None:
    created(local)
    refused(local("tasks", "children"), 2, "give task_id or parent_id")
    refused(local("tasks", "children", "r", "--parent", "r"), 2, "give task_id or parent_id")
    refused(local("tasks", "children", "nope"), 1, "not found")
    refused(local("tasks", "list", "--limit", "0"), 2, "limit")
    refused(local("tasks", "list", "--offset", "-1"), 2, "offset")
    refused(local("tasks", "list", "--user", ""), 2, "user_id")
    assert ok(local("tasks", "list", "--limit", "5000", "--json"))[0]["id"] == "r"  # clamped
    refused(local("tasks", "get", "\udcff"), 1, "not found")  # a non-UTF-8 argv byte


def test_cancel_reports_each_id_and_exits_1_for_unknown_ones(local: Invoke) -> None:
    created(local)
    mixed = local("tasks", "cancel", "b", "ghost", "--reason", "wrong day", "--json")
    assert mixed.exit_code == 1
    reports = json.loads(mixed.stdout)
    assert [(r["task_id"], r["status"], r["force"]) for r in reports] == [
        ("b", "cancelled", False),
        ("ghost", "not_found", False),
    ]
    assert reports[0]["cancelled_ids"] == ["b", "c"]
    assert ok(local("tasks", "get", "b", "--json"))["error"] == "wrong day"
    again = local("tasks", "cancel", "b", "--force")
    assert again.exit_code == 0
    assert "b: not_cancelable" in again.stdout


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("FLOWLEDGER_DATABASE_URL", "mysql://x/y", "FLOWLEDGER_DATABASE_URL"),
        ("FLOWLEDGER_CONCURRENCY", "many", "FLOWLEDGER_CONCURRENCY"),
        ("FLOWLEDGER_PLUGINS", "no_such_plugin_module", "no_such_plugin_module"),
    ],
)
def test_bad_configuration_exits_2_naming_it(
    local: Invoke, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(variable, value)
    for args in (("tasks", "get", "r"), ("tasks", "list"), ("history", "r")):
        refused(local(*args), 2, reason)
