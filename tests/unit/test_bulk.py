"""fewer_collections: the collector's first threshold is raised while bulk work runs, and
what was there before is put back when the outermost use ends, whatever the nesting, the
threads or the exceptions."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from application.bulk import BULK_GEN0, fewer_collections


@pytest.fixture(autouse=True)
def threshold() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield gc.get_threshold()
    finally:
        gc.set_threshold(*before)


def test_raised_inside_and_put_back_after(threshold: tuple[int, int, int]) -> None:
    with fewer_collections():
        assert gc.get_threshold() == (BULK_GEN0, 10, 10)
    assert gc.get_threshold() == threshold


def test_as_a_decorator_and_through_an_exception(threshold: tuple[int, int, int]) -> None:
    @fewer_collections(gen0=12_345)
    def bulk() -> None:
        assert gc.get_threshold()[0] == 12_345
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        bulk()
    assert gc.get_threshold() == threshold
    with pytest.raises(RuntimeError, match="boom"):
        bulk()  # a decorator's context is made anew for each call
    assert gc.get_threshold() == threshold


def test_nested_uses_put_it_back_once_the_outermost_ends(
    threshold: tuple[int, int, int],
) -> None:
    with fewer_collections():
        with fewer_collections(gen0=10):  # lower than the outer: not lowered
            assert gc.get_threshold()[0] == BULK_GEN0
        with fewer_collections(gen0=BULK_GEN0 * 2):  # higher: raised further
            assert gc.get_threshold()[0] == BULK_GEN0 * 2
        assert gc.get_threshold()[0] >= BULK_GEN0  # the outer still runs
    assert gc.get_threshold() == threshold


def test_overlapping_threads_put_it_back_when_the_last_ends(
    threshold: tuple[int, int, int],
) -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def first() -> None:
        with fewer_collections():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with fewer_collections():
            second_in.set()
            first_out.wait(10)
            seen["after the first ended"] = gc.get_threshold()[0]

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"after the first ended": BULK_GEN0}
    assert gc.get_threshold() == threshold


@pytest.mark.parametrize("gen0", [0, 1_000_000], ids=["collection off", "already higher"])
def test_a_threshold_of_zero_or_above_is_left_alone(gen0: int) -> None:
    gc.set_threshold(gen0, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (gen0, 10, 10)
    assert gc.get_threshold() == (gen0, 10, 10)
