"""Generated trees through the real store: valid ones are stored whole; a tree broken in one
way is refused with the right code and NOTHING reaches the store."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.ledger import Ledger
from application.views import tree_json
from domain.errors import DomainError
from tests.integration.support import head, ids_renamed
from tests.unit.strategies import DepCase, TreeCase, tree_cases

BREAKAGES = ("duplicate", "unknown_reference", "cycle", "no_root", "multiple_roots", "unreachable")
EXPECTED_CODE = {
    "unknown_reference": "unknown_reference",
    "cycle": "cycle",
    "no_root": "no_root",
    "multiple_roots": "multiple_roots",
    "unreachable": "unreachable",
}
STORE_EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_example = itertools.count()


def scoped(payload: list[dict[str, Any]], with_ids: bool) -> list[dict[str, Any]]:
    """The payload with every id made unique to this example (keys never contain '>')."""
    if not with_ids:
        return payload
    prefix = f"ex{next(_example)}>"

    def ref(value: Any) -> Any:
        return prefix + value if isinstance(value, str) else value

    return ids_renamed(payload, ref)


def descendants(case: TreeCase, top: int) -> set[int]:
    found = {top}
    for i, node in enumerate(case.nodes):  # parents come before children
        if node.parent in found:
            found.add(i)
    return found


def break_tree(case: TreeCase, how: str, data: st.DataObject) -> str:
    """Break `case` in exactly one way; return the error code it must get."""
    nodes = case.nodes
    if how == "duplicate":
        key = nodes[data.draw(st.integers(0, len(nodes) - 1))].key
        twin: dict[str, Any] = {"name": key, "parent_id": nodes[0].key}
        if case.with_ids:
            twin = {"id": key, "name": "twin", "parent_id": nodes[0].key}
        case.extra.append(twin)
        return "duplicate_id" if case.with_ids else "duplicate_name"
    if how == "unknown_reference":
        target = nodes[data.draw(st.integers(0, len(nodes) - 1))]
        case.extra.append(
            {"id": "fresh>", "name": "fresh>", "parent_id": target.key, "dependencies": ["ghost>"]}
            if case.with_ids
            else {"name": "fresh>", "parent_id": target.key, "dependencies": ["ghost>"]}
        )
    elif how == "cycle":
        u = data.draw(st.integers(0, len(nodes) - 1))
        nodes[u].deps.append(DepCase(target=u, required=True, form="object"))
    elif how == "no_root":
        nodes[0].parent = data.draw(st.integers(0, len(nodes) - 1))
    elif how == "multiple_roots":
        nodes[data.draw(st.integers(1, len(nodes) - 1))].parent = None
    else:
        x = data.draw(st.integers(1, len(nodes) - 1))
        nodes[x].parent = data.draw(st.sampled_from(sorted(descendants(case, x))))
    return EXPECTED_CODE[how]


@STORE_EXAMPLES
@given(case=tree_cases(min_size=2, max_size=8), data=st.data())
def test_a_broken_tree_is_refused_and_nothing_is_stored(
    ledger: Ledger, case: TreeCase, data: st.DataObject
) -> None:
    how = data.draw(st.sampled_from(BREAKAGES), label="breakage")
    code = break_tree(case, how, data)
    before = head(ledger)
    with pytest.raises(DomainError) as raised:
        ledger.create_tree(scoped(case.payload(), case.with_ids))
    assert raised.value.code == code, (how, raised.value)
    assert head(ledger) == before


@STORE_EXAMPLES
@given(case=tree_cases(max_size=8))
def test_a_valid_tree_is_stored_whole(ledger: Ledger, case: TreeCase) -> None:
    before = head(ledger)
    tree = ledger.create_tree(scoped(case.payload(), case.with_ids))
    # one Created plus one id claim per task, in one transaction
    assert head(ledger) >= before + 1 + len(case.nodes)
    assert tree_json(ledger.load(tree.id)) == tree_json(tree)
    for task_id in tree.tasks:
        assert ledger.tree_id_of(task_id) == tree.id
