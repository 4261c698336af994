"""Commands refuse values their events could not hold: the log never gets an unreadable event."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from domain.copying import CopyMode, plan_copy
from domain.errors import DomainError, InvalidSpec
from domain.specs import TaskChanges, parse_tasks, read_tasks
from domain.tree import TaskTree


def running_tree() -> TaskTree:
    tree = TaskTree.create(
        parse_tasks(
            [
                {"id": "r", "name": "r"},
                {"id": "a", "name": "a", "parent_id": "r"},
                {"id": "b", "name": "b", "parent_id": "r", "dependencies": ["a"]},
            ]
        )
    )
    tree.start("r", 1, {})
    tree.collect_events()
    return tree


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("cancel", ("a", None)),
        ("cancel", ("a", "\ud800")),
        ("start", ("a", True, {})),
        ("start", ("a", 1.5, {})),
        ("start", ("a", 1, [1])),
        ("fail", ("r", 5)),
        ("fail", ("r", "bad \udfff text")),
        ("record_progress", ("r", True)),
        ("record_progress", ("r", 0.5, 7)),
        ("fail_attempt", ("r", "boom", True)),
        ("fail_attempt", ("r", "boom", float("nan"))),
        ("fail_attempt", ("r", "boom", -1.0)),
    ],
)
def test_a_bad_value_is_refused_and_nothing_is_emitted(command: str, args: tuple[Any, ...]) -> None:
    tree = running_tree()
    before = msgspec.to_builtins(tree.state)
    with pytest.raises(InvalidSpec):
        getattr(tree, command)(*args)
    assert tree.collect_events() == []
    assert msgspec.to_builtins(tree.state) == before


def test_every_accepted_event_round_trips_through_json() -> None:
    tree = running_tree()
    tree.record_progress("r", 0.5, "half")
    tree.fail_attempt("r", "ValueError: once", 0.25)
    tree.complete("r", {"ok": [1, 2.5, None, "é"]})
    tree.cancel("a", "no longer needed")
    for event in tree.collect_events():
        raw = msgspec.json.encode(event)
        assert msgspec.json.decode(raw, type=type(event)) == event


def test_an_update_with_unchanged_values_emits_nothing() -> None:
    tree = running_tree()
    tree.update_task("b", TaskChanges(name="b", priority=2, inputs={}))
    assert tree.collect_events() == []
    tree.update_task("b", TaskChanges(name="b", priority=0))
    (event,) = tree.collect_events()
    assert event.changes == TaskChanges(priority=0)  # type: ignore[attr-defined]


def test_copy_modes_given_as_strings_and_bad_modes() -> None:
    tree = running_tree()
    assert set(plan_copy(tree, "a", "full").source_ids) == {"r", "a", "b"}  # type: ignore[arg-type]
    assert set(plan_copy(tree, "a", "minimal").source_ids) == {"r", "a", "b"}  # type: ignore[arg-type]
    custom = plan_copy(tree, "a", "custom", ["a"])  # type: ignore[arg-type]
    assert set(custom.source_ids) == {"r", "a"}  # a and, for structure, its parent
    for bad in ("bogus", 3, None):
        with pytest.raises(InvalidSpec) as raised:
            plan_copy(tree, "b", bad)  # type: ignore[arg-type]
        assert raised.value.fields[0].field == "copy_mode"
    for ids in ([1], [["x"]], "ab"):
        with pytest.raises(InvalidSpec) as raised:
            plan_copy(tree, "b", CopyMode.CUSTOM, ids)  # type: ignore[arg-type]
        assert raised.value.fields[0].field.startswith("custom_task_ids")


def test_carried_tasks_are_recorded_apart_from_rerun_ones() -> None:
    tree = running_tree()
    tree.complete("r", None)
    tree.start("a", 1, {})
    tree.complete("a", 1)
    plan = plan_copy(tree, "b", CopyMode.MINIMAL)
    assert set(plan.rerun_ids) == {"b"}
    assert set(plan.carried_ids) == {"r", "a"}
    copy = TaskTree.create(plan.specs, carried=plan.carried)
    tree.record_copy(plan.rerun_ids, copy.id, plan.root_id, plan.carried_ids)
    assert [t.id for t in tree.tasks.values() if t.has_copy] == ["b"]
    copied = tree.collect_events()[-1]
    assert copied.task_ids == ("b",)  # type: ignore[attr-defined]
    assert set(copied.carried_ids) == {"r", "a"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", ["x\ny", "back`tick", "a` - at `$.b"])
def test_odd_field_names_are_named_exactly(key: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        parse_tasks([{"name": "a", key: 1}])
    assert raised.value.fields[0].field == f"tasks[0].{key}"
    assert raised.value.fields[0].reason == "unknown field"


def test_names_replace_generated_ids_in_errors_even_with_null_ids() -> None:
    payload = [
        {"id": None, "name": "a", "dependencies": ["b"]},
        {"id": None, "name": "b", "parent_id": "a", "dependencies": ["a"]},
    ]
    submitted = read_tasks(payload)
    assert submitted.names is not None
    with pytest.raises(DomainError) as raised:
        TaskTree.create(submitted.specs)
    named = raised.value.relabelled(submitted.names)
    assert named.path == "a -> b -> a"
    assert "a -> b -> a" in named.message
