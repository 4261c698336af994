"""TaskTree.ready_tasks(limit), which the runner asks for one task at a time, agrees with the
full ready list after any sequence of commands (its ready heap is kept incrementally)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.specs import Dependency, TaskChanges, parse_tasks
from domain.status import TERMINAL, TaskStatus
from domain.tree import TaskTree
from tests.unit.oracles import expected_ready
from tests.unit.strategies import FAST, TreeCase, ids_by_seq, tree_cases

MOVES = [
    "look",
    "look",
    "run",
    "start",
    "start",
    "complete",
    "fail",
    "retry",
    "cancel",
    "priority",
    "depend",
    "undepend",
    "remove",
]


def check(tree: TaskTree, order: list[str], limit: int | None) -> None:
    everything = expected_ready(tree, order)
    got = [t.id for t in tree.ready_tasks(limit)]
    assert got == (everything if limit is None else everything[:limit])


@FAST
@given(case=tree_cases(min_size=1, max_size=8, with_ids=True), data=st.data())
def test_ready_tasks_with_a_limit_is_a_prefix_of_the_full_sorted_list(
    case: TreeCase, data: st.DataObject
) -> None:
    tree = TaskTree.create(parse_tasks(case.payload()))
    order = [t.id for t in sorted(tree.tasks.values(), key=lambda t: t.seq)]
    n = len(order)
    check(tree, order, data.draw(st.integers(0, n + 1)))  # the heap is built early
    for _ in range(data.draw(st.integers(0, 30))):
        move = data.draw(st.sampled_from(MOVES))
        ready = [t.id for t in tree.ready_tasks()] if move == "start" else []
        running = ids_by_seq(tree, lambda t: t.status is TaskStatus.IN_PROGRESS)
        pending = ids_by_seq(tree, lambda t: t.status is TaskStatus.PENDING)
        live = ids_by_seq(tree, lambda t: t.status not in TERMINAL)
        try:
            if move == "look":
                check(tree, order, data.draw(st.none() | st.integers(0, n + 1)))
            elif move == "run":
                tree.request_run()
            elif move == "start" and ready:
                task = tree.tasks[data.draw(st.sampled_from(ready))]
                tree.start(task.id, task.attempts + 1, {})
            elif move == "complete" and running:
                tree.complete(data.draw(st.sampled_from(running)), None)
            elif move == "fail" and running:
                tree.fail(data.draw(st.sampled_from(running)), "RuntimeError: no")
            elif move == "retry" and running:
                task = tree.tasks[data.draw(st.sampled_from(running))]
                tree.fail_attempt(task.id, "RuntimeError: again", 0.0)
                tree.start(task.id, task.attempts + 1, {})
            elif move == "cancel" and live:
                tree.cancel(data.draw(st.sampled_from(live)))
            elif move == "priority" and pending:
                priority = data.draw(st.integers(0, 4))
                tree.update_task(
                    data.draw(st.sampled_from(pending)), TaskChanges(priority=priority)
                )
            elif move == "depend" and pending:
                dependent = data.draw(st.sampled_from(pending))
                target = data.draw(st.sampled_from(sorted(tree.tasks)))
                tree.add_dependency(dependent, Dependency(target, data.draw(st.booleans())))
            elif move == "undepend" and pending:
                tree.update_task(data.draw(st.sampled_from(pending)), TaskChanges(dependencies=()))
            elif move == "remove" and pending:
                tree.remove_task(data.draw(st.sampled_from(pending)))
        except DomainError:
            pass  # a refused command changes nothing; the checks below still hold
        if tree.is_empty:
            return
        tree.collect_events()
        check(tree, order, data.draw(st.integers(0, n + 1)))
    check(tree, order, None)


def test_ready_tasks_limit_examples() -> None:
    tree = TaskTree.create(
        parse_tasks(
            [
                {"id": "r", "name": "r", "priority": 3},
                {"id": "a", "name": "a", "parent_id": "r", "priority": 0},
                {"id": "b", "name": "b", "parent_id": "r", "priority": 0},
                {"id": "c", "name": "c", "parent_id": "r", "priority": 1, "dependencies": ["a"]},
            ]
        )
    )
    assert [t.id for t in tree.ready_tasks(1)] == ["a"]
    assert [t.id for t in tree.ready_tasks(0)] == []
    tree.start("a", 1, {})
    assert [t.id for t in tree.ready_tasks(1)] == ["b"]
    tree.complete("a", 1)
    assert [t.id for t in tree.ready_tasks(2)] == ["b", "c"]
    assert [t.id for t in tree.ready_tasks()] == ["b", "c", "r"]
    tree.update_task("r", TaskChanges(priority=0))
    assert [t.id for t in tree.ready_tasks(1)] == ["r"]
