"""Fewer garbage collections during bulk work.

CPython's cyclic collector runs whenever 700 more container objects (dicts, lists, Structs)
were allocated than freed; every tenth of those runs also scans the older generation, and
so on. Bulk work (a rebuild of the read models, creating or loading a tree of 100,000 tasks)
allocates millions of objects that live until the work ends, so the collector runs
thousands of times and scans ever more of them for nothing: measured on a 1M-entry rebuild,
9.3 s of 23 s went to it (docs/adr/0015-bulk-work-and-the-collector.md).

`fewer_collections()` raises the first threshold for the duration (to at least BULK_GEN0,
or the `gen0` asked for), and puts back what was there when the outermost use ends (a
change the application made meanwhile is lost). It nests and may be used by several threads
at once (the setting is the process's: it is raised while any bulk work runs). The
collector still runs (every BULK_GEN0 allocations), so garbage cycles are still freed; a
threshold of 0 (collection switched off) is left alone.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BULK_GEN0 = 50_000

_lock = threading.RLock()  # re-entrant: a collection run inside may call a bulk method
_depth = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections(gen0: int = BULK_GEN0) -> Iterator[None]:
    """Run the block (or, as a decorator, the function) with the collector's first
    threshold at least `gen0`."""
    global _depth, _saved
    with _lock:
        now = gc.get_threshold()
        if _depth == 0:
            _saved = now
        if 0 < now[0] < gen0:
            gc.set_threshold(gen0, *now[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
