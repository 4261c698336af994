"""Cancelling a task that has ended (a grouping root completes at once) still cancels the
unfinished tasks under it; only a task whose whole subtree has ended is not cancelable."""

from __future__ import annotations

import pytest

from domain.errors import NotCancelable
from domain.specs import parse_tasks
from domain.status import TaskStatus, TreeStatus
from domain.tree import TaskTree


def grouping_tree() -> TaskTree:
    return TaskTree.create(
        parse_tasks(
            [
                {"id": "root", "name": "root"},
                {"id": "a", "name": "a", "parent_id": "root", "schemas": {"method": "echo"}},
                {"id": "b", "name": "b", "parent_id": "root", "dependencies": ["a"]},
                {"id": "c", "name": "c", "parent_id": "b"},
            ]
        )
    )


def test_cancelling_a_completed_root_cancels_what_is_left_under_it() -> None:
    tree = grouping_tree()
    tree.request_run()
    tree.start("root", 1, {})
    tree.complete("root", None)
    tree.start("a", 1, {})
    assert tree.cancel("root") == ["a", "b", "c"]
    assert tree.tasks["root"].status is TaskStatus.COMPLETED
    assert {tree.tasks[i].status for i in "abc"} == {TaskStatus.CANCELLED}
    assert tree.status is TreeStatus.CANCELLED
    assert tree.tasks["b"].error == "cancelled (with ancestor 'root')"


def test_a_task_whose_whole_subtree_ended_is_not_cancelable() -> None:
    tree = grouping_tree()
    tree.cancel("b")
    with pytest.raises(NotCancelable, match="and so is everything under it"):
        tree.cancel("b")
    with pytest.raises(NotCancelable, match=r"'c' is already cancelled$"):
        tree.cancel("c")
