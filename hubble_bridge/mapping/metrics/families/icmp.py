"""`icmp`: hubble_icmp_total{family, type, <context>}, type named as gopacket prints it.

Hubble labels ICMPv6 messages family="IPv4" too (a copy-paste slip in cilium
pkg/hubble/metrics/icmp/handler.go); so does this bridge, so that queries written
against Hubble's series select the same points. The `type` label tells v4 from v6.
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import L4, FlowFacts, Handler
from hubble_bridge.mapping.metrics.names import icmpv4_type, icmpv6_type
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series


class IcmpFamily(Family):
    name = "icmp"
    reads = frozenset({L4})

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        labels = ("family", "type", *context.label_names)
        self.icmp = Counter("hubble.icmp", "Number of ICMP messages", labels, limit)

    def handler(self, kind: FlowFacts) -> Handler | None:
        l4_kind = kind.l4_kind
        if l4_kind == "ICMPv4":
            family, type_name = "IPv4", icmpv4_type
        elif l4_kind == "ICMPv6":
            family, type_name = "IPv4", icmpv6_type  # sic, as Hubble
        else:
            return None
        inc = self.icmp.inc
        context = self.context if self.has_context else None

        def count(facts: FlowFacts) -> None:
            icmp = facts.l4
            key = (family, type_name(icmp.type, icmp.code))
            inc(key if context is None else key + context.values(facts))

        return count

    def series(self) -> list[Series]:
        return [self.icmp]
