"""`drop`: hubble_drop_total{<context>, reason, protocol} for DROPPED flows."""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import FlowFacts, Handler
from hubble_bridge.mapping.metrics.names import DROP_REASON, DROPPED
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series


class DropFamily(Family):
    name = "drop"

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        labels = (*context.label_names, "reason", "protocol")
        self.drops = Counter("hubble.drop", "Number of drops", labels, limit)

    def handler(self, kind: FlowFacts) -> Handler | None:
        if kind.verdict != DROPPED:
            return None
        protocol = kind.protocol
        inc = self.drops.inc
        context = self.context if self.has_context else None

        def count(facts: FlowFacts) -> None:
            flow = facts.flow
            # Agents before drop_reason_desc only set the numeric (deprecated) drop_reason.
            code = flow.drop_reason_desc or flow.drop_reason
            key = (DROP_REASON.get(code) or str(code), protocol)
            inc(key if context is None else context.values(facts) + key)

        return count

    def series(self) -> list[Series]:
        return [self.drops]
