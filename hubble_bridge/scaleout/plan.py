"""Which worker reads which stream: balanced, sticky, and the same in every process."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping


def _weight(*parts: object) -> int:
    # Stable across processes and runs, unlike hash().
    return int.from_bytes(hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def plan_assignment(keys: list[str], workers: int, current: Mapping[str, int]) -> dict[str, int]:
    """Stream key -> worker, loads differing by at most one; a stream stays where it is while it may.

    Streams without a place go, in a stable order, to their highest-weight worker
    with room (rendezvous hashing on the key), so the plan depends on names only.
    """
    base, extra = divmod(len(keys), workers)
    load = [0] * workers

    def has_room(worker: int) -> bool:
        # Every worker may take `base` streams; `extra` of them one more.
        full = sum(1 for n in load if n > base)
        return load[worker] < base or (load[worker] == base and full < extra)

    plan: dict[str, int] = {}
    for key in sorted(keys):
        owner = current.get(key)
        if owner is not None and 0 <= owner < workers and has_room(owner):
            plan[key] = owner
            load[owner] += 1
    for key in sorted((k for k in keys if k not in plan), key=lambda k: (_weight(k), k)):
        ranked = sorted(range(workers), key=lambda w: _weight(key, w), reverse=True)
        owner = next(w for w in ranked if has_room(w))
        plan[key] = owner
        load[owner] += 1
    return plan
