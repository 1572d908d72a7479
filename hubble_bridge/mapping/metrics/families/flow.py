"""`flow`: hubble_flows_processed_total{protocol, type, subtype, verdict, <context>}."""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import FlowFacts, Handler
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
from hubble_bridge.mapping.metrics.series import Count, Counter, Series

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

    def handler(self, kind: FlowFacts) -> Handler:
        event_type = kind.event_type
        if event_type == EVENT_ACCESS_LOG:
            type_name = "L7"
            subtype = L7_PROTOCOL[kind.l7_kind] if kind.l7_kind else ""
        elif event_type == EVENT_TRACE:
            type_name = "Trace"
            subtype = TRACE_OBSERVATION_POINTS.get(kind.sub_type, "")
        else:
            type_name = _TYPE_NAMES.get(event_type, "Unknown")
            subtype = "" if event_type in _TYPE_NAMES else str(event_type)
        key = (kind.protocol, type_name, subtype, kind.verdict_name)
        inc = self.flows.inc
        if not self.has_context:
            return Count(self.flows, key)
        values = self.context.values
        return lambda facts: inc(key + values(facts))

    def series(self) -> list[Series]:
        return [self.flows]
