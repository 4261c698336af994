"""A rejected tree or command persists nothing: right error class and code, log unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from application.config import Settings
from application.ledger import Ledger
from domain.errors import (
    DependencyCycle,
    DomainError,
    DuplicateId,
    DuplicateName,
    InvalidSpec,
    MultipleRoots,
    NoRoot,
    NotPending,
    TooDeep,
    UnknownReference,
    Unreachable,
)
from domain.specs import Dependency, TaskChanges
from tests.integration.support import claims_of, head, notifications, run_task, task


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(depth):
        value = {"k": value}
    return value


CHAIN = [task("n0")] + [task(f"n{i}", f"n{i - 1}") for i in range(1, 300)]

# (payload, error class, stable code, ids the error must name)
BROKEN: dict[str, tuple[Any, type[DomainError], str, set[str]]] = {
    "duplicate id inside the tree": (
        [task("r"), task("a", "r"), task("a", "r", name="again")],
        DuplicateId,
        "duplicate_id",
        {"a"},
    ),
    "unknown parent": (
        [task("r"), task("a", "ghost")],
        UnknownReference,
        "unknown_reference",
        {"a", "ghost"},
    ),
    "unknown dependency": (
        [task("r"), task("a", "r", dependencies=["ghost"])],
        UnknownReference,
        "unknown_reference",
        {"a", "ghost"},
    ),
    "dependency cycle": (
        [task("r"), task("a", "r", dependencies=["b"]), task("b", "r", dependencies=["a"])],
        DependencyCycle,
        "cycle",
        {"a", "b"},
    ),
    "self dependency": (
        [task("r"), task("a", "r", dependencies=[{"id": "a", "required": False}])],
        DependencyCycle,
        "cycle",
        {"a"},
    ),
    "no root": ([task("a", "b"), task("b", "a")], NoRoot, "no_root", set()),
    "multiple roots": (
        [task("r1"), task("r2"), task("a", "r1")],
        MultipleRoots,
        "multiple_roots",
        {"r1", "r2"},
    ),
    "unreachable": (
        [task("r"), task("a", "b"), task("b", "a")],
        Unreachable,
        "unreachable",
        {"a", "b"},
    ),
    "too deep": (CHAIN, TooDeep, "too_deep", set()),
    "negative priority": ([task("r", priority=-1)], InvalidSpec, "invalid_params", set()),
    "unknown field": ([task("r", colour="red")], InvalidSpec, "invalid_params", set()),
    "blank name": ([task("r", name="   ")], InvalidSpec, "invalid_params", set()),
    "integer beyond 64 bits": (
        [task("r", inputs={"n": 2**63})],
        InvalidSpec,
        "invalid_params",
        set(),
    ),
    "NaN": ([task("r", inputs={"x": float("nan")})], InvalidSpec, "invalid_params", set()),
    "nested too deep": ([task("r", inputs=nested(120))], InvalidSpec, "invalid_params", set()),
    "ids on some tasks only": (
        [task("r"), {"name": "a", "parent_id": "r"}],
        InvalidSpec,
        "invalid_params",
        set(),
    ),
    "not an array": ("not a task list", InvalidSpec, "invalid_params", set()),
    "empty array": ([], InvalidSpec, "invalid_params", set()),
    "duplicate names without ids": (
        [{"name": "r"}, {"name": "a", "parent_id": "r"}, {"name": "a", "parent_id": "r"}],
        DuplicateName,
        "duplicate_name",
        {"a"},
    ),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_rejected_tree_persists_nothing(ledger: Ledger, kind: str) -> None:
    payload, error, code, ids = BROKEN[kind]
    ledger.create_tree([task("other-root")])  # the store is not empty
    before = head(ledger)

    with pytest.raises(error) as raised:
        ledger.create_tree(payload)

    assert raised.value.code == code
    assert ids <= set(raised.value.ids), raised.value.ids
    assert head(ledger) == before
    # Nothing of the rejected tree was claimed: a valid tree may use its ids afterwards.
    supplied = {t["id"] for t in payload if isinstance(t, dict) and "id" in t}
    for task_id in supplied:
        assert claims_of(ledger, task_id) == []
    if supplied:
        ledger.create_tree([task("fresh")] + [task(i, "fresh") for i in sorted(supplied)])


def test_cycle_error_names_the_path(ledger: Ledger) -> None:
    payload = [
        task("r"),
        task("a", "r", dependencies=["b"]),
        task("b", "r", dependencies=["c"]),
        task("c", "r", dependencies=["a"]),
    ]
    with pytest.raises(DependencyCycle) as raised:
        ledger.create_tree(payload)
    path = raised.value.path
    assert path is not None
    hops = path.split(" -> ")
    assert hops[0] == hops[-1]
    assert set(hops) == {"a", "b", "c"}
    assert head(ledger) == 0


def test_errors_name_tasks_by_name_when_no_ids_were_given(ledger: Ledger) -> None:
    payload = [
        {"name": "root"},
        {"name": "load", "parent_id": "root", "dependencies": ["save"]},
        {"name": "save", "parent_id": "root", "dependencies": ["load"]},
    ]
    with pytest.raises(DependencyCycle) as raised:
        ledger.create_tree(payload)
    assert set(raised.value.ids) == {"load", "save"}
    assert raised.value.path in ("load -> save -> load", "save -> load -> save")
    assert head(ledger) == 0

    with pytest.raises(UnknownReference) as unknown:
        ledger.create_tree([{"name": "root"}, {"name": "a", "parent_id": "nobody"}])
    assert unknown.value.ids == ("nobody",)
    assert head(ledger) == 0


def test_lone_surrogate_is_refused_as_invalid_input(ledger: Ledger) -> None:
    """Bad input gets a clear domain error naming the field; not a codec crash at save."""
    before = head(ledger)
    with pytest.raises(InvalidSpec) as raised:
        ledger.create_tree([task("r", inputs={"text": "broken \ud800 surrogate"})])
    assert any("inputs" in f.field for f in raised.value.fields)
    assert head(ledger) == before


def test_id_taken_by_another_tree_is_refused_all_or_nothing(ledger: Ledger) -> None:
    first = ledger.create_tree([task("r1"), task("shared", "r1"), task("other", "r1")])
    before = head(ledger)
    ids = ["r2", "x", "y", "z", "shared"]

    with pytest.raises(DuplicateId) as raised:
        ledger.create_tree([task("r2")] + [task(i, "r2") for i in ids[1:]])

    assert raised.value.code == "duplicate_id"
    assert raised.value.ids == ("shared",)
    assert "shared" in str(raised.value)
    assert head(ledger) == before
    for task_id in ids[:-1]:
        assert claims_of(ledger, task_id) == []
    # The first tree still owns the id, and the free ids are usable later.
    assert ledger.tree_id_of("shared") == first.id
    second = ledger.create_tree([task("r2"), task("x", "r2"), task("y", "r2"), task("z", "r2")])
    assert set(second.tasks) == {"r2", "x", "y", "z"}
    assert ledger.tree_id_of("x") == second.id


def test_every_colliding_id_is_named(ledger: Ledger) -> None:
    ledger.create_tree([task("r1"), task("a", "r1"), task("b", "r1")])
    before = head(ledger)
    with pytest.raises(DuplicateId) as raised:
        ledger.create_tree([task("r1"), task("fresh", "r1"), task("b", "r1")])
    assert set(raised.value.ids) == {"r1", "b"}
    assert head(ledger) == before
    assert claims_of(ledger, "fresh") == []


def test_second_ledger_on_the_same_store_sees_the_claims(store_settings: Settings) -> None:
    one, two = Ledger(store_settings), Ledger(store_settings)
    try:
        one.create_tree([task("r"), task("a", "r")])
        before = head(two)
        with pytest.raises(DuplicateId) as raised:
            two.create_tree([task("q"), task("a", "q")])
        assert raised.value.ids == ("a",)
        assert head(two) == before
    finally:
        one.close()
        two.close()


def test_refused_commands_persist_nothing(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [task("r"), task("a", "r"), task("b", "r", dependencies=["a"]), task("c", "r")]
    )
    run_task(ledger, "c", {"ok": True})
    before, recorded = head(ledger), len(notifications(ledger))
    version = ledger.load(tree.id).version

    refusals = [
        (lambda: ledger.add_dependency("a", Dependency("b")), DependencyCycle),
        (lambda: ledger.add_dependency("a", Dependency("ghost")), UnknownReference),
        (lambda: ledger.update_task("c", TaskChanges(name="renamed")), NotPending),
        (
            lambda: ledger.update_task("a", TaskChanges(dependencies=(Dependency("b"),))),
            DependencyCycle,
        ),
        (lambda: ledger.remove_task("c"), NotPending),
        (lambda: ledger.remove_task("r"), NotPending),
    ]
    for command, error in refusals:
        with pytest.raises(error):
            command()
        assert head(ledger) == before
    assert ledger.load(tree.id).version == version
    assert len(notifications(ledger)) == recorded


def test_a_large_tree_with_some_taken_ids_stores_none_of_its_tasks(ledger: Ledger) -> None:
    taken = [f"t{i}" for i in range(0, 1500, 100)]  # 15 ids
    ledger.create_tree([task("old-root")] + [task(i, "old-root") for i in taken])
    before = head(ledger)
    ids = [f"t{i}" for i in range(1500)]
    with pytest.raises(DuplicateId) as raised:
        ledger.create_tree([task("new-root")] + [task(i, "new-root") for i in ids])
    assert set(raised.value.ids) == set(taken)
    assert str(raised.value).endswith(" ...")  # the message lists the first ten
    assert head(ledger) == before
    free = [i for i in ids if i not in taken]
    assert all(claims_of(ledger, i) == [] for i in free[:50])
    tree = ledger.create_tree([task("new-root")] + [task(i, "new-root") for i in free])
    assert len(tree.tasks) == len(free) + 1
    assert ledger.tree_id_of(free[-1]) == tree.id
