"""`icmp`: hubble_icmp_total{family, type, <context>}, type named as gopacket prints it.

Hubble labels ICMPv6 messages family="IPv4" (a copy-paste slip upstream); this
bridge says "IPv6".
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import FlowFacts
from hubble_bridge.mapping.metrics.names import icmpv4_type, icmpv6_type
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series


class IcmpFamily(Family):
    name = "icmp"

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        labels = ("family", "type", *context.label_names)
        self.icmp = Counter("hubble.icmp", "Number of ICMP messages", labels, limit)

    def process(self, facts: FlowFacts) -> None:
        kind = facts.l4_kind
        if kind == "ICMPv4":
            icmp = facts.flow.l4.ICMPv4
            key = ("IPv4", icmpv4_type(icmp.type, icmp.code))
        elif kind == "ICMPv6":
            icmp = facts.flow.l4.ICMPv6
            key = ("IPv6", icmpv6_type(icmp.type, icmp.code))
        else:
            return
        if self.has_context:
            key += self.context.values(facts)
        self.icmp.inc(key)

    def series(self) -> list[Series]:
        return [self.icmp]
