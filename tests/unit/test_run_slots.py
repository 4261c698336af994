"""application.runner.slots.Slots: the process-wide concurrency limit. A freed slot goes to
the most urgent waiter, first come first served among equals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.runner.slots import Slots
from tests.unit.strategies import FAST


class Waiter:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def slot_granted(self) -> None:
        self.log.append(self.name)


def full(limit: int) -> Slots:
    slots = Slots(limit)
    for _ in range(limit):
        assert slots.try_take()
    assert not slots.try_take()
    return slots


@FAST
@given(
    limit=st.integers(1, 4),
    priorities=st.lists(st.integers(0, 3), max_size=12),
)
def test_freed_slots_go_to_the_most_urgent_waiter_fifo_among_equals(
    limit: int, priorities: list[int]
) -> None:
    slots = full(limit)
    log: list[str] = []
    for i, priority in enumerate(priorities):
        slots.wait(priority, Waiter(f"w{i}", log))
    expected = [f"w{i}" for i, _ in sorted(enumerate(priorities), key=lambda p: (p[1], p[0]))]
    for granted in range(1, len(priorities) + 1):
        slots.release()  # one slot frees; it is handed on at once
        assert log == expected[:granted]
        assert slots.used == limit
    for _ in range(limit):
        slots.release()
    assert slots.used == 0
    assert log == expected  # nobody was granted twice


def test_a_waiter_is_queued_once_and_keeps_its_first_place() -> None:
    slots = full(1)
    log: list[str] = []
    a, b = Waiter("a", log), Waiter("b", log)
    slots.wait(1, a)
    slots.wait(1, b)
    slots.wait(0, a)  # already queued: ignored
    slots.release()
    slots.release()
    slots.release()
    assert log == ["a", "b"]
    assert slots.used == 0


def test_a_released_batch_serves_several_waiters_in_order() -> None:
    slots = full(3)
    log: list[str] = []
    for name, priority in (("low", 5), ("high", 0), ("mid", 2), ("high2", 0)):
        slots.wait(priority, Waiter(name, log))
    slots.release(3)
    assert log == ["high", "high2", "mid"]
    assert slots.used == 3
    slots.release()
    assert log == ["high", "high2", "mid", "low"]


def test_a_forgotten_waiter_is_not_granted() -> None:
    slots = full(1)
    log: list[str] = []
    a, b, c = Waiter("a", log), Waiter("b", log), Waiter("c", log)
    for waiter in (a, b, c):
        slots.wait(0, waiter)
    slots.forget(b)
    slots.forget(Waiter("stranger", log))  # never queued: nothing happens
    slots.release()
    slots.release()
    slots.release()
    assert log == ["a", "c"]
    slots.wait(0, b)  # may queue again after being forgotten
    slots.try_take()
    slots.release()
    assert log == ["a", "c", "b"]


def test_free_slots_are_taken_without_waiting() -> None:
    slots = Slots(2)
    assert slots.try_take()
    assert slots.try_take()
    assert not slots.try_take()
    slots.release()
    assert slots.try_take()
    assert slots.used == 2


def test_limits_and_over_release_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Slots(0)
    slots = Slots(1)
    with pytest.raises(AssertionError):
        slots.release()


def test_a_waiter_moves_up_when_it_needs_a_slot_for_a_more_urgent_task() -> None:
    slots = Slots(1)
    assert slots.try_take()
    granted: list[str] = []

    class Waiter:
        def __init__(self, name: str) -> None:
            self.name = name

        def slot_granted(self) -> None:
            granted.append(self.name)

    late, early = Waiter("late"), Waiter("early")
    slots.wait(5, early)
    slots.wait(3, late)
    slots.wait(1, early)  # a priority-1 task of `early` became ready meanwhile
    slots.wait(9, early)  # asking again for something less urgent changes nothing
    assert slots.most_urgent_waiting() == 1
    slots.release()
    assert granted == ["early"]
    slots.release()
    assert granted == ["early", "late"]
    assert slots.most_urgent_waiting() is None
