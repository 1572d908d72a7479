"""`policy`: hubble_policy_verdicts_total{direction, match, action, <context>}.

Policy-verdict events give the L3/L4 match type; L7 (access log) flows count
as match "l7/<protocol>". Verdicts for traffic from the host are skipped:
the host may always reach local endpoints.
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import FlowFacts, Handler
from hubble_bridge.mapping.metrics.names import (
    DIRECTION_LOWER,
    EVENT_ACCESS_LOG,
    EVENT_POLICY_VERDICT,
    POLICY_MATCH,
    RESERVED_HOST_IDENTITY,
    VERDICT_LOWER,
)
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Count, Counter, Series


class PolicyFamily(Family):
    name = "policy"

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        labels = ("direction", "match", "action", *context.label_names)
        self.verdicts = Counter(
            "hubble.policy_verdicts", "Total number of Cilium network policy verdicts", labels, limit
        )

    def handler(self, kind: FlowFacts) -> Handler | None:
        direction = DIRECTION_LOWER.get(kind.direction) or str(kind.direction)
        action = VERDICT_LOWER.get(kind.verdict) or str(kind.verdict)
        inc = self.verdicts.inc
        context = self.context if self.has_context else None
        event_type = kind.event_type
        if event_type == EVENT_ACCESS_LOG:
            key: tuple[str, ...] = (direction, f"l7/{kind.l7_kind or ''}", action)
            if context is None:
                return Count(self.verdicts, key)
            return lambda facts: inc(key + context.values(facts))
        if event_type != EVENT_POLICY_VERDICT:
            return None

        def count(facts: FlowFacts) -> None:
            flow = facts.flow
            if flow.source.identity == RESERVED_HOST_IDENTITY:
                return
            key = (direction, POLICY_MATCH.get(flow.policy_match_type, "unknown"), action)
            inc(key if context is None else key + context.values(facts))

        return count

    def series(self) -> list[Series]:
        return [self.verdicts]
