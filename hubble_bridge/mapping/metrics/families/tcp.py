"""`tcp`: hubble_tcp_flags_total{flag, family, <context>} for forwarded TCP packets.

SYN and SYN-ACK are told apart; FIN and RST are counted on their own, so one
packet may count under several flags (as in Hubble).
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import L4, FlowFacts, Handler
from hubble_bridge.mapping.metrics.names import FORWARDED, IP_VERSION, REDIRECTED
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series

# IPv4, IPv6 and "unknown" in practice; made-up enum values must not grow the key cache.
MAX_IP_VERSIONS = 16


class TcpFamily(Family):
    name = "tcp"
    reads = frozenset({L4})

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        labels = ("flag", "family", *context.label_names)
        self.flags_total = Counter("hubble.tcp_flags", "TCP flag occurrences", labels, limit)
        # By IP version: the label keys of FIN, SYN, SYN-ACK and RST.
        self._keys: dict[int, tuple[tuple[str, str], ...]] = {}

    def _flag_keys(self, ip_version: int) -> tuple[tuple[str, str], ...]:
        family = IP_VERSION.get(ip_version) or str(ip_version)
        keys = tuple((flag, family) for flag in ("FIN", "SYN", "SYN-ACK", "RST"))
        if len(self._keys) < MAX_IP_VERSIONS:
            self._keys[ip_version] = keys
        return keys

    def handler(self, kind: FlowFacts) -> Handler | None:
        if kind.l4_kind != "TCP" or (kind.verdict != FORWARDED and kind.verdict != REDIRECTED):
            return None
        inc = self.flags_total.inc
        context = self.context if self.has_context else None
        keys = self._keys
        # Proxied (L7) flows rarely carry flags at all: one HasField then spares reading three.
        check_set = kind.l7_kind is not None

        def count(facts: FlowFacts) -> None:
            tcp = facts.l4
            # Absent flags read as all false, which counts nothing: the HasField is only a shortcut.
            if check_set and not tcp.HasField("flags"):
                return
            flags = tcp.flags
            fin = flags.FIN
            syn = flags.SYN
            rst = flags.RST
            if not (fin or syn or rst):
                return
            flow = facts.flow
            ip_version = flow.IP.ipVersion
            if not ip_version and not flow.HasField("IP"):
                return
            fin_key, syn_key, syn_ack_key, rst_key = keys.get(ip_version) or self._flag_keys(ip_version)
            ctx = () if context is None else context.values(facts)
            if fin:
                inc(fin_key + ctx)
            if syn:
                inc((syn_ack_key if flags.ACK else syn_key) + ctx)
            if rst:
                inc(rst_key + ctx)

        return count

    def series(self) -> list[Series]:
        return [self.flags_total]
