"""Secret inputs: a task names {"$secret": "NAME"}; the executor gets the value; the event
log, history, read models and logs never hold it (results, errors and progress are scrubbed).
Both stores, the real runner."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from application.executors import current_task, executor
from application.ledger import Ledger
from application.runner import Runner
from application.views import event_json, tree_json
from domain.errors import InvalidSpec
from domain.specs import TaskChanges
from projections.projector import Projector
from projections.queries import ReadModel
from projections.schema import create_read_engine

VALUE = "s3cr3t-Value-42"
SECRETS = {"API_TOKEN": VALUE, "OTHER": "another-secret-0"}
MARKED = {"input_schema": {"properties": {"token": {"type": "string", "secret": True}}}}


@executor("test.uses_secret", description="Checks it got the secret, then leaks it back.")
async def uses_secret(inputs: dict[str, Any]) -> dict[str, Any]:
    assert inputs["token"] == VALUE, "the executor must get the secret's value"
    current_task().report_progress(0.5, f"calling with {inputs['token']}")
    if inputs.get("fail"):
        raise RuntimeError(f"the API refused token {inputs['token']}")
    return {"echo": inputs["token"], VALUE: "as a key", "nested": [inputs]}


def secret_task(task_id: str, **inputs: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "name": task_id,
        "parent_id": "sec-root",
        "params": {"executor_id": "test.uses_secret"},
        "inputs": {"token": {"$secret": "API_TOKEN"}, **inputs},
        "schemas": MARKED,
    }


def stored_bytes(ledger: Ledger) -> bytes:
    """Every record of the event log, as stored."""
    found = ledger.recorder.select_notifications(start=1, limit=1_000_000)
    return b"".join(n.state for n in found)


def run_tree(ledger: Ledger, tree_id: Any) -> Any:
    async def run() -> Any:
        async with Runner(ledger, secrets=SECRETS.get) as runner:
            return await runner.run(tree_id)

    return asyncio.run(run())


def test_secrets_reach_the_executor_and_nothing_else(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    tree = ledger.create_tree(
        [
            {"id": "sec-root", "name": "root"},
            secret_task("sec-ok"),
            secret_task("sec-fail", fail=True),
        ]
    )
    with caplog.at_level(logging.DEBUG):
        done = run_tree(ledger, tree.id)
    ok, failed = done.tasks["sec-ok"], done.tasks["sec-fail"]
    assert ok.status.value == "completed"
    assert ok.result["echo"] == "[secret API_TOKEN]"
    assert ok.result["[secret API_TOKEN]"] == "as a key"
    assert ok.result["nested"][0]["token"] == "[secret API_TOKEN]"
    assert failed.status.value == "failed"
    assert failed.error == "RuntimeError: the API refused token [secret API_TOKEN]"
    # what the tree holds, its history, the raw event log, the read models, the logs
    assert VALUE not in repr(tree_json(done))
    assert VALUE not in repr([event_json(e) for e in ledger.history("sec-root")])
    assert VALUE.encode() not in stored_bytes(ledger)
    engine = create_read_engine(ledger.settings)
    try:
        Projector(ledger, engine).catch_up()
        assert VALUE not in repr(ReadModel(engine).tree("sec-root"))
    finally:
        engine.dispose()
    assert VALUE not in caplog.text
    [started] = [
        e
        for e in ledger.history("sec-ok")
        if getattr(e, "task_id", None) == "sec-ok" and type(e).__name__ == "Started"
    ]
    assert started.inputs["token"] == {"$secret": "API_TOKEN"}  # the reference is kept


def test_an_unknown_secret_fails_the_task_without_retrying(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            {"id": "sec-root", "name": "root"},
            {
                **secret_task("sec-missing"),
                "inputs": {"token": {"$secret": "NOT_SET"}},
                "params": {"executor_id": "test.uses_secret", "retry": {"max_attempts": 3}},
            },
        ]
    )
    done = run_tree(ledger, tree.id)
    missing = done.tasks["sec-missing"]
    assert missing.status.value == "failed"
    assert missing.attempts == 1
    assert missing.error == "SecretMissing: secret NOT_SET is not set (FLOWLEDGER_SECRET_NOT_SET)"


def test_the_default_source_is_the_environment(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWLEDGER_SECRET_API_TOKEN", VALUE)
    tree = ledger.create_tree([{"id": "sec-root", "name": "root"}, secret_task("sec-env")])

    async def run() -> Any:
        async with Runner(ledger) as runner:
            return await runner.run(tree.id)

    done = asyncio.run(run())
    assert done.tasks["sec-env"].result["echo"] == "[secret API_TOKEN]"


@pytest.mark.parametrize(
    ("inputs", "field", "reason"),
    [
        ({"token": VALUE}, "tasks[1].inputs.token", "is marked secret"),
        ({"token": {"$secret": "bad name"}}, "tasks[1].inputs.token", "a secret reference is"),
        ({"token": {"$secret": "A", "x": 1}}, "tasks[1].inputs.token", "a secret reference is"),
        ({"deep": [{"$secret": 5}]}, "tasks[1].inputs.deep[0]", "a secret reference is"),
    ],
)
def test_a_secret_value_or_a_bad_reference_is_refused_before_anything_is_stored(
    ledger: Ledger, inputs: dict[str, Any], field: str, reason: str
) -> None:
    task = {**secret_task("sec-bad"), "inputs": inputs}
    with pytest.raises(InvalidSpec) as refused:
        ledger.create_tree([{"id": "sec-root", "name": "root"}, task])
    assert [f.field for f in refused.value.fields] == [field]
    assert reason in refused.value.fields[0].reason
    assert VALUE.encode() not in stored_bytes(ledger)


def test_an_update_cannot_put_a_secret_value_in_the_log(ledger: Ledger) -> None:
    ledger.create_tree([{"id": "sec-root", "name": "root"}, secret_task("sec-upd")])
    with pytest.raises(InvalidSpec, match=r"inputs\.token: is marked secret"):
        ledger.update_task("sec-upd", TaskChanges(inputs={"token": VALUE}))
    plain = {"id": "sec-plain", "name": "plain", "parent_id": "sec-root"}
    ledger.create_tree([{"id": "sec-root2", "name": "root2"}, plain | {"parent_id": "sec-root2"}])
    with pytest.raises(InvalidSpec, match=r"inputs\.token: is marked secret"):
        ledger.update_task("sec-plain", TaskChanges(inputs={"token": VALUE}, schemas=MARKED))
    assert VALUE.encode() not in stored_bytes(ledger)
