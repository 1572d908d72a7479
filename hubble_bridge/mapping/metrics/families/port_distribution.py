"""`port-distribution`: hubble_port_distribution_total{protocol, port, <context>}.

Only forwarded flows known not to be replies count, so ephemeral client ports
stay out of the metric (a flow without is_reply is skipped, as in Hubble).
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import IS_REPLY, L4, FlowFacts, Handler
from hubble_bridge.mapping.metrics.names import FORWARDED, REDIRECTED
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Count, Counter, Series

_PORTED = frozenset({"TCP", "UDP", "SCTP"})
_ICMP = frozenset({"ICMPv4", "ICMPv6"})
# Label keys kept per kind: the ports a cluster serves are few, a port scan must not grow the cache.
MAX_PORT_KEYS = 1024


class PortDistributionFamily(Family):
    name = "port-distribution"
    reads = frozenset({L4, IS_REPLY})

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        labels = ("protocol", "port", *context.label_names)
        self.ports = Counter(
            "hubble.port_distribution", "Numbers of packets distributed by destination port", labels, limit
        )

    def handler(self, kind: FlowFacts) -> Handler | None:
        l4_kind = kind.l4_kind
        if l4_kind is None or (kind.verdict != FORWARDED and kind.verdict != REDIRECTED):
            return None
        if (l4_kind not in _PORTED and l4_kind not in _ICMP) or kind.is_reply is not False:
            return None
        inc = self.ports.inc
        context = self.context if self.has_context else None
        if l4_kind in _ICMP:
            key = (l4_kind, "0")
            if context is None:
                return Count(self.ports, key)
            return lambda facts: inc(key + context.values(facts))
        keys: dict[int, tuple[str, str]] = {}  # by destination port

        def count(facts: FlowFacts) -> None:
            port = facts.l4.destination_port
            key = keys.get(port)
            if key is None:
                key = (l4_kind, str(port))
                if len(keys) < MAX_PORT_KEYS:
                    keys[port] = key
            inc(key if context is None else key + context.values(facts))

        return count

    def series(self) -> list[Series]:
        return [self.ports]
