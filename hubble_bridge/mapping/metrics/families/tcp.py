"""`tcp`: hubble_tcp_flags_total{flag, family, <context>} for forwarded TCP packets.

SYN and SYN-ACK are told apart; FIN and RST are counted on their own, so one
packet may count under several flags (as in Hubble).
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import FlowFacts
from hubble_bridge.mapping.metrics.names import FORWARDED, IP_VERSION, REDIRECTED
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series


class TcpFamily(Family):
    name = "tcp"

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        labels = ("flag", "family", *context.label_names)
        self.flags_total = Counter("hubble.tcp_flags", "TCP flag occurrences", labels, limit)

    def process(self, facts: FlowFacts) -> None:
        if facts.l4_kind != "TCP" or (facts.verdict != FORWARDED and facts.verdict != REDIRECTED):
            return
        flow = facts.flow
        tcp = flow.l4.TCP
        if not tcp.HasField("flags") or not flow.HasField("IP"):
            return
        flags = tcp.flags
        ip_version = flow.IP.ipVersion
        family = IP_VERSION.get(ip_version) or str(ip_version)
        context = self.context.values(facts) if self.has_context else ()
        inc = self.flags_total.inc
        if flags.FIN:
            inc(("FIN", family, *context))
        if flags.SYN:
            inc(("SYN-ACK" if flags.ACK else "SYN", family, *context))
        if flags.RST:
            inc(("RST", family, *context))

    def series(self) -> list[Series]:
        return [self.flags_total]
