"""Task-id claims: one tiny aggregate per task id makes ids unique across the whole store.

A tree is saved together with a TaskIdClaimed for each of its tasks in ONE transaction, so
a supplied id that already exists makes the whole save fail and nothing is persisted.
Removing a task releases its id (TaskIdReleased); a later claim takes the next version.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

import msgspec

NAMESPACE = uuid.UUID("6f1e2c5a-3f0b-4e8e-9a55-0c9d1c6b7e21")


def claim_id(task_id: str) -> UUID:
    return uuid.uuid5(NAMESPACE, task_id)


class TaskIdClaimed(msgspec.Struct, frozen=True, kw_only=True):
    originator_id: UUID
    originator_version: int
    timestamp: datetime
    task_id: str
    tree_id: UUID


class TaskIdReleased(msgspec.Struct, frozen=True, kw_only=True):
    originator_id: UUID
    originator_version: int
    timestamp: datetime
    task_id: str
    tree_id: UUID
