"""Bad input to parse_tasks and parse_changes: always a domain error naming the field and why."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec import UNSET

from domain import events as ev
from domain.errors import (
    DomainError,
    DuplicateName,
    InvalidSpec,
    TreeRejected,
    UnknownReference,
)
from domain.specs import (
    MAX_FIELD_ERRORS,
    MAX_NESTING,
    PRIORITY_MAX,
    Dependency,
    TaskChanges,
    parse_changes,
    parse_tasks,
)
from domain.tree import TaskTree
from tests.unit.strategies import FAST, TreeCase, counter_ids, json_values, tree_cases


def payload_with(bad: dict[Any, Any] | Any, at: int = 3) -> list[Any]:
    """A valid four-task array (root a; b, c, d under it) with task `at` replaced by `bad`."""
    tasks: list[Any] = [
        {"id": "a", "name": "root"},
        {"id": "b", "name": "b", "parent_id": "a"},
        {"id": "c", "name": "c", "parent_id": "a"},
        {"id": "d", "name": "d", "parent_id": "a"},
    ]
    tasks[at] = bad
    return tasks


def task(**fields: Any) -> dict[str, Any]:
    return {"id": "d", "name": "d", "parent_id": "a", **fields}


def without(key: str) -> dict[str, Any]:
    item = task()
    del item[key]
    return item


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def refusal(payload: Any) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as caught:
        parse_tasks(payload)
    error = caught.value
    assert type(error) is InvalidSpec
    assert error.code == "invalid_params"
    assert error.fields, "an InvalidSpec must name at least one field"
    for f in error.fields:
        assert f.reason.strip(), f"no reason given for {f.field}"
    assert error.as_dict()["fields"] == [f.as_dict() for f in error.fields]
    return error


BAD_TASKS = [
    # (the bad task at index 3, the field it must be reported on, words the reason must hold)
    pytest.param(task(priority="1"), "tasks[3].priority", "int", id="priority-str"),
    pytest.param(task(priority=1.5), "tasks[3].priority", "int", id="priority-float"),
    pytest.param(task(priority=1.0), "tasks[3].priority", "int", id="priority-whole-float"),
    pytest.param(task(priority=True), "tasks[3].priority", "int", id="priority-bool"),
    pytest.param(task(priority=None), "tasks[3].priority", "int", id="priority-null"),
    pytest.param(task(priority=-1), "tasks[3].priority", ">= 0", id="priority-negative"),
    pytest.param(task(priority=PRIORITY_MAX + 1), "tasks[3].priority", "<=", id="priority-big"),
    pytest.param(task(priority=float("nan")), "tasks[3].priority", "NaN", id="priority-nan"),
    pytest.param(task(name=5), "tasks[3].name", "str", id="name-int"),
    pytest.param(task(name=None), "tasks[3].name", "str", id="name-null"),
    pytest.param(task(name=""), "tasks[3].name", "length", id="name-empty"),
    pytest.param(task(name="  \t"), "tasks[3].name", "blank", id="name-blank"),
    pytest.param(task(name="n" * 1001), "tasks[3].name", "length", id="name-too-long"),
    pytest.param(task(name="\ud800"), "tasks[3].name", "surrogate", id="name-lone-surrogate"),
    pytest.param(without("name"), "tasks[3].name", "name", id="name-missing"),
    pytest.param(task(id=""), "tasks[3].id", "length", id="id-empty"),
    pytest.param(task(id=5), "tasks[3].id", "str", id="id-int"),
    pytest.param(task(id="x" * 256), "tasks[3].id", "length", id="id-too-long"),
    pytest.param(task(parent_id=5), "tasks[3].parent_id", "str", id="parent-int"),
    pytest.param(task(parent_id=""), "tasks[3].parent_id", "length", id="parent-empty"),
    pytest.param(task(user_id=["u"]), "tasks[3].user_id", "str", id="user-list"),
    pytest.param(task(dependencies="b"), "tasks[3].dependencies", "array", id="deps-str"),
    pytest.param(task(dependencies={"id": "b"}), "tasks[3].dependencies", "array", id="deps-obj"),
    pytest.param(task(dependencies=[5]), "tasks[3].dependencies[0]", "int", id="dep-int"),
    pytest.param(task(dependencies=[None]), "tasks[3].dependencies[0]", "null", id="dep-null"),
    pytest.param(
        task(dependencies=["b", {"required": True}]),
        "tasks[3].dependencies[1].id",
        "id",
        id="dep-without-id",
    ),
    pytest.param(
        task(dependencies=[{"id": ""}]), "tasks[3].dependencies[0].id", "length", id="dep-id-empty"
    ),
    pytest.param(
        task(dependencies=[{"id": "b", "required": "yes"}]),
        "tasks[3].dependencies[0].required",
        "bool",
        id="dep-required-str",
    ),
    pytest.param(
        task(dependencies=[{"id": "b", "optional": True}]),
        "tasks[3].dependencies[0].optional",
        "unknown",
        id="dep-unknown-field",
    ),
    pytest.param(
        task(dependencies=["b", {"id": "b", "required": False}]),
        "tasks[3].dependencies[1]",
        "repeats",
        id="dep-repeated",
    ),
    pytest.param(task(inputs=[1, 2]), "tasks[3].inputs", "object", id="inputs-list"),
    pytest.param(task(inputs="x"), "tasks[3].inputs", "object", id="inputs-str"),
    pytest.param(task(params=5), "tasks[3].params", "object", id="params-int"),
    pytest.param(task(schemas=[]), "tasks[3].schemas", "object", id="schemas-list"),
    pytest.param(task(colour="red"), "tasks[3].colour", "unknown", id="unknown-field"),
    pytest.param(task(status="completed"), "tasks[3].status", "unknown", id="status-given"),
    pytest.param(task(inputs={"x": float("nan")}), "tasks[3].inputs.x", "NaN", id="inputs-nan"),
    pytest.param(task(inputs={"x": float("inf")}), "tasks[3].inputs.x", "NaN", id="inputs-inf"),
    pytest.param(
        task(inputs={"x": [1, float("-inf")]}), "tasks[3].inputs.x[1]", "NaN", id="inputs-neg-inf"
    ),
    pytest.param(
        task(params={"retry": {"backoff_s": float("nan")}}),
        "tasks[3].params.retry.backoff_s",
        "NaN",
        id="params-nan",
    ),
    pytest.param(task(schemas={"s": float("nan")}), "tasks[3].schemas.s", "NaN", id="schemas-nan"),
    pytest.param(task(inputs={1: "one"}), "tasks[3].inputs", "not a string", id="inputs-int-key"),
    pytest.param(task(inputs={None: 1}), "tasks[3].inputs", "not a string", id="inputs-null-key"),
    pytest.param(
        task(inputs={"deep": {(1, 2): 1}}),
        "tasks[3].inputs.deep",
        "not a string",
        id="inputs-tuple-key",
    ),
    pytest.param({**task(), 7: "x"}, "tasks[3]", "not a string", id="task-int-key"),
    pytest.param(task(inputs={"big": 2**64}), "tasks[3].inputs.big", "64-bit", id="inputs-big-int"),
    pytest.param(task(inputs={"s": {1, 2}}), "tasks[3].inputs.s", "set", id="inputs-set"),
    pytest.param(task(inputs={"b": b"raw"}), "tasks[3].inputs.b", "bytes", id="inputs-bytes"),
    pytest.param(5, "tasks[3]", "object", id="task-int"),
    pytest.param(["d"], "tasks[3]", "object", id="task-list"),
    pytest.param(None, "tasks[3]", "object", id="task-null"),
]


@pytest.mark.parametrize(("bad", "field", "words"), BAD_TASKS)
def test_a_bad_task_is_refused_naming_its_index_field_and_reason(
    bad: Any, field: str, words: str
) -> None:
    error = refusal(payload_with(bad))
    assert [f.field for f in error.fields] == [field]
    assert words.lower() in error.fields[0].reason.lower()
    assert error.message.startswith(field)


def test_inputs_nested_a_thousand_deep_are_refused_at_the_input() -> None:
    error = refusal(payload_with(task(inputs=nested(1000))))
    assert len(error.fields) == 1
    assert error.fields[0].field.startswith("tasks[3].inputs.a.a")
    assert f"deeper than {MAX_NESTING}" in error.fields[0].reason


def test_moderately_nested_inputs_are_accepted() -> None:
    specs = parse_tasks(payload_with(task(inputs=nested(MAX_NESTING // 2))))
    assert specs[3].inputs == nested(MAX_NESTING // 2)


def test_every_bad_task_is_reported_not_only_the_first() -> None:
    payload = payload_with(task(priority="high"), at=3)
    payload[1] = {"id": "b", "name": "", "parent_id": "a"}
    error = refusal(payload)
    assert [f.field for f in error.fields] == ["tasks[1].name", "tasks[3].priority"]
    assert error.message.endswith("(and 1 more)")


def test_the_list_of_field_errors_is_capped() -> None:
    payload = [{"id": "root", "name": "root"}] + [
        {"id": f"t{i}", "name": f"t{i}", "parent_id": "root", "priority": "urgent"}
        for i in range(1, 500)
    ]
    error = refusal(payload)
    assert error.fields[0].field == "tasks[1].priority"
    assert len(error.fields) <= MAX_FIELD_ERRORS


def test_mixing_tasks_with_and_without_ids_is_refused_naming_those_without() -> None:
    payload = [
        {"id": "a", "name": "a"},
        {"name": "b", "parent_id": "a"},
        {"id": "c", "name": "c", "parent_id": "a"},
        {"id": None, "name": "d", "parent_id": "a"},
    ]
    error = refusal(payload)
    assert [f.field for f in error.fields] == ["tasks[1].id", "tasks[3].id"]


def test_duplicate_names_without_ids_are_refused_naming_the_names() -> None:
    payload = [
        {"name": "root"},
        {"name": "x", "parent_id": "root"},
        {"name": "y", "parent_id": "root"},
        {"name": "x", "parent_id": "root"},
        {"name": "y", "parent_id": "root"},
    ]
    with pytest.raises(DuplicateName) as caught:
        parse_tasks(payload)
    assert caught.value.code == "duplicate_name"
    assert caught.value.ids == ("x", "y")


def test_duplicate_names_with_ids_are_fine() -> None:
    payload = [{"id": "a", "name": "same"}, {"id": "b", "name": "same", "parent_id": "a"}]
    assert [s.id for s in parse_tasks(payload)] == ["a", "b"]


def test_a_reference_to_an_unknown_name_is_refused() -> None:
    with pytest.raises(UnknownReference) as caught:
        parse_tasks([{"name": "root"}, {"name": "x", "parent_id": "root", "dependencies": ["y"]}])
    assert caught.value.ids == ("y",)


# -- payload shapes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [[], {"tasks": []}, "tasks", 5, None, True, {"tasks": "x"}, {"tasks": {"name": "a"}}, b"[]"],
    ids=["empty", "wrapped-empty", "str", "int", "null", "bool", "wrapped-str", "wrapped-obj", "b"],
)
def test_a_payload_that_is_not_a_task_array_is_refused(payload: Any) -> None:
    error = refusal(payload)
    assert [f.field for f in error.fields] == ["tasks"]


def test_the_three_accepted_shapes_give_the_same_specs() -> None:
    one = {"id": "a", "name": "only", "priority": 0, "inputs": {"k": [1, None]}}
    expected = parse_tasks([one])
    assert parse_tasks({"tasks": [one]}) == expected
    assert parse_tasks(one) == expected
    assert expected[0].priority == 0
    assert expected[0].inputs == {"k": [1, None]}


def test_a_single_bad_task_object_is_reported_as_task_zero() -> None:
    error = refusal({"name": "a", "priority": "1"})
    assert [f.field for f in error.fields] == ["tasks[0].priority"]


def test_defaults_and_dependency_forms_are_normalised() -> None:
    specs = parse_tasks(
        [
            {"id": "a", "name": "a"},
            {"id": "b", "name": "b", "parent_id": "a", "inputs": None, "dependencies": None},
            {
                "id": "c",
                "name": "c",
                "parent_id": "a",
                "priority": 0,
                "dependencies": ["a", {"id": "b"}, {"id": "x", "required": False}],
            },
            {"id": "x", "name": "x", "parent_id": "a"},
        ]
    )
    a, b, c, _ = specs
    assert (a.priority, a.dependencies, a.inputs, a.params, a.schemas) == (2, (), {}, {}, {})
    assert (b.inputs, b.dependencies) == ({}, ())
    assert c.priority == 0
    assert c.dependencies == (Dependency("a"), Dependency("b"), Dependency("x", required=False))


# -- big inputs are accepted ------------------------------------------------------------------
def test_one_megabyte_of_inputs_is_accepted() -> None:
    blob = {"text": "x" * 1_000_000, "numbers": list(range(20_000))}
    specs = parse_tasks([{"id": "a", "name": "big", "inputs": blob}])
    tree = TaskTree.create(specs)
    assert tree.tasks["a"].inputs == blob


@pytest.mark.parametrize("with_ids", [True, False], ids=["ids", "names"])
def test_a_ten_thousand_task_tree_is_accepted(with_ids: bool) -> None:
    n = 10_000

    def ref(i: int) -> str:
        return f"t{i}"

    payload: list[dict[str, Any]] = []
    for i in range(n):
        item: dict[str, Any] = {"name": ref(i), "priority": i % 3}
        if with_ids:
            item["id"] = ref(i)
        if i:
            item["parent_id"] = ref((i - 1) // 2)  # a binary heap: about 14 levels
            item["dependencies"] = (
                [ref(i - 1)] if i % 2 else [{"id": ref(i // 3), "required": False}]
            )
        payload.append(item)

    specs = parse_tasks(payload, new_id=counter_ids())
    tree = TaskTree.create(specs)
    (created,) = tree.collect_events()
    assert isinstance(created, ev.Created)
    assert len(created.tasks) == n
    assert len(tree.tasks) == n
    # Every task but the root waits (required or optional) on a pending task.
    assert [t.name for t in tree.ready_tasks()] == ["t0"]


# -- fuzz: one field of a valid task replaced by a value of the wrong type -------------------
WRONG = {
    "name": st.integers() | st.booleans() | st.lists(st.text(), max_size=2) | st.just("   "),
    "priority": st.text(max_size=3)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.integers(max_value=-1)
    | st.integers(min_value=PRIORITY_MAX + 1)
    | st.none(),
    "parent_id": st.integers() | st.booleans() | st.just("") | st.lists(st.text(), max_size=2),
    "user_id": st.integers() | st.booleans() | st.dictionaries(st.text(), st.text(), max_size=2),
    "dependencies": st.text(max_size=3) | st.integers() | st.booleans(),
    "inputs": st.lists(json_values, max_size=2) | st.text(max_size=3) | st.integers(),
    "params": st.lists(json_values, max_size=2) | st.text(max_size=3) | st.floats(),
    "schemas": st.lists(json_values, max_size=2) | st.booleans(),
}


@FAST
@given(tree_cases(max_size=5), st.data())
def test_a_wrongly_typed_field_is_always_named(case: TreeCase, data: st.DataObject) -> None:
    payload = case.payload()
    position = data.draw(st.integers(0, len(payload) - 1), label="position")
    fields = [*WRONG, "id"] if case.with_ids else list(WRONG)
    name = data.draw(st.sampled_from(fields), label="field")
    strategy = st.integers() | st.just("") if name == "id" else WRONG[name]
    payload[position][name] = data.draw(strategy, label="value")

    error = refusal(payload)
    assert error.fields[0].field.startswith(f"tasks[{position}].{name}")


@FAST
@given(
    st.recursive(
        json_values | st.sets(st.integers(), max_size=2) | st.just(float("nan")) | st.binary(),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=3)
            | st.fixed_dictionaries(
                {"name": st.text(max_size=3) | st.integers()},
                optional={
                    "id": st.text(max_size=3) | st.none(),
                    "parent_id": st.text(max_size=3) | st.none(),
                    "priority": st.integers(-2, 3) | st.text(max_size=2),
                    "dependencies": st.lists(st.text(max_size=2) | inner, max_size=3) | inner,
                    "inputs": inner,
                },
            )
        ),
        max_leaves=12,
    )
)
def test_arbitrary_input_only_ever_raises_domain_errors(payload: Any) -> None:
    error: DomainError | None = None
    try:
        TaskTree.create(parse_tasks(payload, new_id=counter_ids()))
    except DomainError as exc:  # anything else fails the test
        error = exc
    if isinstance(error, InvalidSpec):
        assert type(error) is InvalidSpec
        assert error.fields
        assert all(f.field.startswith("tasks") and f.reason for f in error.fields)
    elif error is not None:
        assert isinstance(error, TreeRejected)
        assert error.code not in {"tree_rejected", "domain_error"}
        if isinstance(error, (DuplicateName, UnknownReference)):
            assert error.ids


# -- parse_changes ------------------------------------------------------------------------------
NOT_UPDATABLE = [
    "id",
    "parent_id",
    "user_id",
    "status",
    "result",
    "error",
    "progress",
    "attempts",
    "created_at",
    "started_at",
    "completed_at",
    "original_task_id",
    "has_copy",
    "has_children",
    "tree_id",
]


def changes_refusal(raw: Any) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as caught:
        parse_changes(raw)
    assert type(caught.value) is InvalidSpec
    assert caught.value.fields
    assert all(f.reason for f in caught.value.fields)
    return caught.value


@pytest.mark.parametrize("name", NOT_UPDATABLE)
def test_a_field_that_is_not_updatable_is_refused_by_name(name: str) -> None:
    error = changes_refusal({"priority": 1, name: "x"})
    assert [(f.field, f.reason) for f in error.fields] == [(name, "not updatable")]


def test_every_not_updatable_field_is_named_at_once() -> None:
    error = changes_refusal({"parent_id": "p", "status": "completed", "name": "ok"})
    assert sorted(f.field for f in error.fields) == ["parent_id", "status"]


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"colour": "red"}, "colour", "unknown"),
        ({"priority": "1"}, "priority", "int"),
        ({"priority": 1.5}, "priority", "int"),
        ({"priority": True}, "priority", "int"),
        ({"priority": -1}, "priority", ">= 0"),
        ({"priority": None}, "priority", "int"),
        ({"name": 5}, "name", "str"),
        ({"name": " "}, "name", "blank"),
        ({"name": ""}, "name", "length"),
        ({"dependencies": "x"}, "dependencies", "array"),
        ({"dependencies": [{"required": False}]}, "dependencies[0].id", "id"),
        ({"dependencies": [{"id": "b", "why": 1}]}, "dependencies[0].why", "unknown"),
        ({"dependencies": ["b", "b"]}, "dependencies[1]", "repeats"),
        ({"inputs": [1]}, "inputs", "object"),
        ({"inputs": {"v": float("nan")}}, "inputs.v", "NaN"),
        ({"params": {1: 2}}, "params", "not a string"),
    ],
    ids=[
        "unknown-field",
        "priority-str",
        "priority-float",
        "priority-bool",
        "priority-negative",
        "priority-null",
        "name-int",
        "name-blank",
        "name-empty",
        "deps-str",
        "dep-without-id",
        "dep-unknown-field",
        "dep-repeated",
        "inputs-list",
        "inputs-nan",
        "params-int-key",
    ],
)
def test_bad_changes_are_refused_naming_the_field(raw: dict[str, Any], field: str, words: str):
    error = changes_refusal(raw)
    assert [f.field for f in error.fields] == [field]
    assert words.lower() in error.fields[0].reason.lower()


@pytest.mark.parametrize("raw", [[], "x", None, 5])
def test_changes_that_are_not_an_object_are_refused(raw: Any) -> None:
    changes_refusal(raw)


def test_valid_changes_are_normalised() -> None:
    assert parse_changes({}) == TaskChanges()
    changes = parse_changes(
        {"priority": 0, "inputs": None, "dependencies": ["a", {"id": "b", "required": False}]}
    )
    assert changes.priority == 0
    assert changes.inputs == {}
    assert changes.params is UNSET
    assert changes.name is UNSET
    assert changes.dependencies == (Dependency("a"), Dependency("b", required=False))
    assert parse_changes({"dependencies": None}).dependencies == ()


def test_domain_errors_serialise_with_code_ids_and_fields() -> None:
    error = refusal(payload_with(task(priority="1")))
    data = error.as_dict()
    assert data["code"] == "invalid_params"
    assert data["fields"] == [{"field": "tasks[3].priority", "reason": "Expected `int`, got `str`"}]
    assert isinstance(error, DomainError)
