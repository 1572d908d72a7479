"""The garbage collector's young-generation threshold, raised while flows are being mapped.

Mapping allocates tens of container objects per flow (message wrappers, tuples, records),
and nearly all of them die young, freed by reference counting. CPython's default threshold
runs a young collection every 700 container allocations: about every 20 flows. Each one
walks whatever survived, including the bridge's long-lived state (caches, pending
requests, the join table).

Raising only the first threshold, to 100,000, made the threaded pipeline 7 to 10 % faster
here (docs/performance.md). The older generations keep their thresholds. Objects without
reference cycles are still freed at once; at most 100,000 objects caught in cycles wait
for a collection.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 100_000

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def young_threshold_raised() -> Iterator[None]:
    """While any holder is inside, the first threshold is YOUNG_THRESHOLD; the last one out restores it."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            _saved = gc.get_threshold()
            first, second, third = _saved
            if first:  # 0: collection is disabled, and stays so
                gc.set_threshold(max(first, YOUNG_THRESHOLD), second, third)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
