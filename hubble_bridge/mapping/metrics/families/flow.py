"""`flow`: hubble_flows_processed_total{protocol, type, subtype, verdict, <context>}."""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import FlowFacts
from hubble_bridge.mapping.metrics.names import (
    EVENT_ACCESS_LOG,
    EVENT_CAPTURE,
    EVENT_DROP,
    EVENT_POLICY_VERDICT,
    EVENT_TRACE,
    L7_PROTOCOL,
    TRACE_OBSERVATION_POINTS,
)
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series

_TYPE_NAMES = {
    EVENT_DROP: "Drop",
    EVENT_CAPTURE: "Capture",
    EVENT_TRACE: "Trace",
    EVENT_POLICY_VERDICT: "PolicyVerdict",
}


class FlowFamily(Family):
    name = "flow"

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        labels = ("protocol", "type", "subtype", "verdict", *context.label_names)
        self.flows = Counter("hubble.flows_processed", "Total number of flows processed", labels, limit)

    def process(self, facts: FlowFacts) -> None:
        event_type = facts.event_type
        if event_type == EVENT_ACCESS_LOG:
            type_name = "L7"
            subtype = L7_PROTOCOL[facts.l7_kind] if facts.l7_kind else ""
        elif event_type == EVENT_TRACE:
            type_name = "Trace"
            subtype = TRACE_OBSERVATION_POINTS.get(facts.sub_type, "")
        else:
            type_name = _TYPE_NAMES.get(event_type, "Unknown")
            subtype = "" if event_type in _TYPE_NAMES else str(event_type)
        key = (facts.protocol, type_name, subtype, facts.verdict_name)
        if self.has_context:
            key += self.context.values(facts)
        self.flows.inc(key)

    def series(self) -> list[Series]:
        return [self.flows]
