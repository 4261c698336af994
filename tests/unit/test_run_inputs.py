"""domain.inputs: what an executor sees, the task's inputs plus its dependencies' results."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from domain.inputs import dependency_results, resolve_inputs, schema_properties, unwrap
from domain.specs import parse_tasks
from domain.tree import TaskTree
from tests.unit.strategies import FAST, json_objects, json_values

OUTCOMES = ("completed", "failed", "cancelled", "pending", "running")


def build(
    static: dict[str, Any],
    deps: list[tuple[str, Any, bool]],
    schemas: dict[str, Any] | None = None,
) -> TaskTree:
    """root; d0..dn (children of root) ending as `deps` say (outcome, result, required);
    t depends on every d_i."""
    items: list[dict[str, Any]] = [{"id": "root", "name": "root"}]
    for i, (_, _, _) in enumerate(deps):
        items.append({"id": f"d{i}", "name": f"d{i}", "parent_id": "root"})
    items.append(
        {
            "id": "t",
            "name": "t",
            "parent_id": "root",
            "inputs": static,
            "schemas": schemas or {},
            "dependencies": [
                {"id": f"d{i}", "required": required} for i, (_, _, required) in enumerate(deps)
            ],
        }
    )
    tree = TaskTree.create(parse_tasks(items))
    for i, (outcome, result, _) in enumerate(deps):
        dep = f"d{i}"
        if outcome == "pending":
            continue
        if outcome == "cancelled":
            tree.cancel(dep)
            continue
        tree.start(dep, 1, {})
        if outcome == "completed":
            tree.complete(dep, result)
        elif outcome == "failed":
            tree.fail(dep, "RuntimeError: no")
    return tree


dep_lists = st.lists(st.tuples(st.sampled_from(OUTCOMES), json_values, st.booleans()), max_size=4)


# -- unwrap -------------------------------------------------------------------------------------
@FAST
@given(json_values)
def test_unwrap_takes_the_value_out_of_a_result_wrapper(value: Any) -> None:
    assert unwrap({"result": value}) == value


@FAST
@given(json_values)
def test_unwrap_leaves_anything_else_alone(value: Any) -> None:
    if isinstance(value, dict) and list(value) == ["result"]:
        return
    assert unwrap(value) is value


def test_unwrap_examples() -> None:
    assert unwrap({"result": None}) is None
    assert unwrap({"result": {"result": 1}}) == {"result": 1}  # one level only
    assert unwrap({"result": 1, "other": 2}) == {"result": 1, "other": 2}
    assert unwrap(["result"]) == ["result"]
    assert unwrap("result") == "result"


# -- without input_schema --------------------------------------------------------------------
@FAST
@given(static=json_objects, deps=dep_lists)
def test_without_a_schema_each_completed_result_goes_under_its_dependency_id(
    static: dict[str, Any], deps: list[tuple[str, Any, bool]]
) -> None:
    tree = build(static, deps)
    task = tree.tasks["t"]
    before = copy.deepcopy(task.inputs)

    resolved = resolve_inputs(task, tree.tasks)

    expected = dict(static)
    for i, (outcome, result, _) in enumerate(deps):
        if outcome == "completed":
            expected[f"d{i}"] = unwrap(result)
    assert resolved == expected
    assert task.inputs == before == static  # the definition is not touched
    assert resolved is not task.inputs
    completed = {f"d{i}" for i, (o, _, _) in enumerate(deps) if o == "completed"}
    assert list(dependency_results(task, tree.tasks)) == [
        f"d{i}" for i in range(len(deps)) if f"d{i}" in completed
    ]


def test_without_a_schema_examples() -> None:
    tree = build(
        {"static": 1, "d0": "replaced"},
        [("completed", {"result": [1]}, True), ("failed", None, False), ("completed", None, True)],
    )
    assert resolve_inputs(tree.tasks["t"], tree.tasks) == {"static": 1, "d0": [1], "d2": None}


# -- with input_schema properties ------------------------------------------------------------
small_ints = st.integers(-1000, 1000)
property_names = st.lists(st.sampled_from(["p", "q", "r"]), unique=True, max_size=3)
mapped_results = st.one_of(
    st.dictionaries(st.sampled_from(["p", "q", "x"]), json_values, max_size=3),
    st.dictionaries(st.just("result"), st.dictionaries(st.sampled_from(["p", "q"]), small_ints)),
    json_values,
)


@FAST
@given(
    static=st.dictionaries(st.sampled_from(["p", "s", "d0"]), small_ints, max_size=3),
    names=property_names,
    deps=st.lists(st.tuples(st.sampled_from(OUTCOMES), mapped_results, st.booleans()), max_size=4),
)
def test_with_a_schema_matching_keys_are_mapped_by_name(
    static: dict[str, Any], names: list[str], deps: list[tuple[str, Any, bool]]
) -> None:
    schemas: dict[str, Any] = {"input_schema": {"properties": {n: {} for n in names}}}
    tree = build(static, deps, schemas)
    task = tree.tasks["t"]
    assert schema_properties(task) == tuple(names)

    resolved = resolve_inputs(task, tree.tasks)

    results = [
        (f"d{i}", unwrap(result))
        for i, (outcome, result, _) in enumerate(deps)
        if outcome == "completed"
    ]
    touched: set[str] = set()
    for name in names:  # each property holds the last dependency result that has it
        givers = [r[name] for _, r in results if isinstance(r, dict) and name in r]
        if givers:
            assert resolved[name] == givers[-1]
            touched.add(name)
    for dep_id, result in results:  # a result that fills no property is kept whole
        fills = isinstance(result, dict) and any(n in result for n in names)
        if not fills:
            assert resolved[dep_id] == result
            touched.add(dep_id)
        elif dep_id not in static:
            assert dep_id not in resolved
    for key, value in static.items():  # the rest of the static inputs stay
        if key not in touched:
            assert resolved[key] == value
    assert set(resolved) == set(static) | touched
    assert task.inputs == static


def test_with_a_schema_examples() -> None:
    schemas: dict[str, Any] = {"input_schema": {"type": "object", "properties": {"n": {}, "m": {}}}}
    tree = build(
        {"static": True},
        [
            ("completed", {"n": 1, "extra": 2}, True),
            ("completed", {"result": {"m": 3, "n": 4}}, True),
            ("completed", "scalar", True),
            ("completed", {"unrelated": 0}, True),
            ("failed", {"n": 99}, False),
        ],
        schemas,
    )
    assert resolve_inputs(tree.tasks["t"], tree.tasks) == {
        "static": True,
        "n": 4,  # later dependencies win
        "m": 3,
        "d2": "scalar",
        "d3": {"unrelated": 0},
    }


def test_a_schema_without_usable_properties_maps_nothing() -> None:
    variants: list[dict[str, Any]] = [
        {"input_schema": {"type": "object"}},
        {"input_schema": {}},
        {},
    ]
    for schemas in variants:
        tree = build({}, [("completed", {"n": 1}, True)], schemas)
        assert schema_properties(tree.tasks["t"]) == ()
        assert resolve_inputs(tree.tasks["t"], tree.tasks) == {"d0": {"n": 1}}
