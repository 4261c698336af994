"""Snapshots of a TaskTree's state, and when to take them.

A snapshot is taken when a save crosses a multiple of max(every, task count) events, so a
reload replays at most that many events after decoding one snapshot, and the cost of taking
snapshots stays proportional to the events written, whatever the tree's size.
Bump SCHEMA when TreeState changes shape: older snapshots are then ignored (full replay).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from domain.tree import TaskTree, TreeState, utcnow

SCHEMA = 2  # 2: Task.retry_at
SNAPSHOT_TOPIC = f"tree.Snapshot/s{SCHEMA}"


class TreeSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    originator_id: UUID
    originator_version: int
    timestamp: datetime
    state: TreeState

    @classmethod
    def of(cls, tree: TaskTree) -> TreeSnapshot:
        return cls(
            originator_id=tree.id,
            originator_version=tree.version,
            timestamp=utcnow(),
            state=tree.state,
        )


def should_snapshot(before: int, after: int, task_count: int, every: int) -> bool:
    interval = max(every, task_count)
    return before // interval != after // interval
