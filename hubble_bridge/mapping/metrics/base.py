"""The small interface every metric family implements, as Hubble's handlers do.

A family is built once from its parsed options (unknown options fail here, never
per flow). `handler` is asked once per kind of flow (FlowFacts, see its load)
for the step that counts one flow of that kind, or None when no flow of the kind
is the family's; whatever the kind decides (labels from the verdict, the
protocol, the direction) is worked out there, not per flow. `process` is the
straightforward path: every flow through every family. `series` lists its
metrics for snapshots.
"""

from __future__ import annotations

from typing import ClassVar

from hubble_bridge.mapping.metrics.facts import FlowFacts, Handler
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Series


class Family:
    name: ClassVar[str]
    # Family-specific option keys, lower-case (Hubble matches them case-insensitively).
    flags: ClassVar[frozenset[str]] = frozenset()
    # Families that cannot be enabled together with this one.
    conflicts: ClassVar[frozenset[str]] = frozenset()
    # FlowFacts parts the handlers use (facts.L4, facts.HTTP, facts.IS_REPLY): the aggregator reads
    # them once per flow, and only for kinds some family that reads them counts (is_reply, part
    # of the kind, only when some family reads it at all).
    reads: frozenset[str] = frozenset()

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        self.context = context
        # Hot path: skip the context lookup entirely for the common no-context case.
        self.has_context = not context.empty

    def handler(self, kind: FlowFacts) -> Handler | None:
        """The per-flow step for flows of `kind`; it must not read kind.flow, which is just an example."""
        raise NotImplementedError

    def process(self, facts: FlowFacts) -> None:
        handler = self.handler(facts)
        if handler is not None:
            handler(facts)

    def series(self) -> list[Series]:
        raise NotImplementedError


def bool_flag(family: str, flags: dict[str, str], key: str, errors: list[str]) -> bool:
    """A switch: absent is off; `key`, `key=true` are on; `key=false` is off."""
    value = flags.get(key)
    if value is None:
        return False
    if value.lower() in ("", "true", "false"):
        return value.lower() != "false"
    errors.append(f"metrics family {family!r}: option {key} must be true or false, got {value!r}")
    return False
