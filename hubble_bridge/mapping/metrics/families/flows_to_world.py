"""`flows-to-world`: hubble_flows_to_world_total{protocol, verdict, [port], <context>}.

Flows whose destination carries the reserved:world label (or its per-family
variants). Options: `any-drop` counts every drop, not only policy drops;
`port` adds the destination port; `syn-only` counts only TCP SYNs that are
not replies (one per connection).
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family, bool_flag
from hubble_bridge.mapping.metrics.facts import FlowFacts
from hubble_bridge.mapping.metrics.names import DROPPED, POLICY_DENIED, WORLD_LABELS
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series

_PORTED = frozenset({"TCP", "UDP", "SCTP"})


class FlowsToWorldFamily(Family):
    name = "flows-to-world"
    flags = frozenset({"any-drop", "port", "syn-only"})

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        self.any_drop = bool_flag(self.name, flags, "any-drop", errors)
        self.port = bool_flag(self.name, flags, "port", errors)
        self.syn_only = bool_flag(self.name, flags, "syn-only", errors)
        labels = ("protocol", "verdict", *(("port",) if self.port else ()), *context.label_names)
        help_text = "Total number of flows to reserved:world"
        self.flows = Counter("hubble.flows_to_world", help_text, labels, limit)

    def process(self, facts: FlowFacts) -> None:
        kind = facts.l4_kind
        if kind is None:
            return
        flow = facts.flow
        if WORLD_LABELS.isdisjoint(flow.destination.labels):
            return
        dropped = facts.verdict == DROPPED
        if dropped and not self.any_drop and flow.drop_reason_desc != POLICY_DENIED:
            return
        is_reply = flow.is_reply.value
        if is_reply and not dropped:
            return
        if self.syn_only and (kind != "TCP" or not flow.l4.TCP.flags.SYN or is_reply):
            return
        key: tuple[str, ...] = (facts.protocol, facts.verdict_name)
        if self.port:
            key += (str(getattr(flow.l4, kind).destination_port) if kind in _PORTED else "",)
        if self.has_context:
            key += self.context.values(facts)
        self.flows.inc(key)

    def series(self) -> list[Series]:
        return [self.flows]
