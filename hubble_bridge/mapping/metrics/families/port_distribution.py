"""`port-distribution`: hubble_port_distribution_total{protocol, port, <context>}.

Only forwarded flows known not to be replies count, so ephemeral client ports
stay out of the metric (a flow without is_reply is skipped, as in Hubble).
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import FlowFacts
from hubble_bridge.mapping.metrics.names import FORWARDED, REDIRECTED
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series

_PORTED = frozenset({"TCP", "UDP", "SCTP"})
_ICMP = frozenset({"ICMPv4", "ICMPv6"})


class PortDistributionFamily(Family):
    name = "port-distribution"

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        labels = ("protocol", "port", *context.label_names)
        self.ports = Counter(
            "hubble.port_distribution", "Numbers of packets distributed by destination port", labels, limit
        )

    def process(self, facts: FlowFacts) -> None:
        kind = facts.l4_kind
        if kind is None or (facts.verdict != FORWARDED and facts.verdict != REDIRECTED):
            return
        flow = facts.flow
        if not flow.HasField("is_reply") or flow.is_reply.value:
            return
        if kind in _PORTED:
            port = str(getattr(flow.l4, kind).destination_port)
        elif kind in _ICMP:
            port = "0"
        else:
            return
        key = (kind, port)
        if self.has_context:
            key += self.context.values(facts)
        self.ports.inc(key)

    def series(self) -> list[Series]:
        return [self.ports]
