"""`policy`: hubble_policy_verdicts_total{direction, match, action, <context>}.

Policy-verdict events give the L3/L4 match type; L7 (access log) flows count
as match "l7/<protocol>". Verdicts for traffic from the host are skipped:
the host may always reach local endpoints.
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import FlowFacts
from hubble_bridge.mapping.metrics.names import (
    DIRECTION_LOWER,
    EVENT_ACCESS_LOG,
    EVENT_POLICY_VERDICT,
    POLICY_MATCH,
    RESERVED_HOST_IDENTITY,
    VERDICT_LOWER,
)
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series


class PolicyFamily(Family):
    name = "policy"

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        labels = ("direction", "match", "action", *context.label_names)
        self.verdicts = Counter(
            "hubble.policy_verdicts", "Total number of Cilium network policy verdicts", labels, limit
        )

    def process(self, facts: FlowFacts) -> None:
        event_type = facts.event_type
        flow = facts.flow
        if event_type == EVENT_POLICY_VERDICT:
            if flow.source.identity == RESERVED_HOST_IDENTITY:
                return
            match = POLICY_MATCH.get(flow.policy_match_type, "unknown")
        elif event_type == EVENT_ACCESS_LOG:
            match = f"l7/{facts.l7_kind or ''}"
        else:
            return
        direction = DIRECTION_LOWER.get(facts.direction) or str(facts.direction)
        action = VERDICT_LOWER.get(facts.verdict) or str(facts.verdict)
        key: tuple[str, ...] = (direction, match, action)
        if self.has_context:
            key += self.context.values(facts)
        self.verdicts.inc(key)

    def series(self) -> list[Series]:
        return [self.verdicts]
