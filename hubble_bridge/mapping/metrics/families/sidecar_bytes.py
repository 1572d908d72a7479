"""`sidecar-bytes`: packets, IP bytes and retransmits of flows from `hubble-otlp sidecar`.

Hubble's Flow has no counters; the sidecar carries them in Flow.extensions as
hubble_otlp.sidecar.SidecarFlow (proto/sidecar/sidecar.proto). Direction is the
flow source's view: "sent" went source -> destination, "received" came back.
Flows without that extension are not this family's.
"""

from __future__ import annotations

from hubble_bridge.api import sidecar_pb2
from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import EXTENSIONS, FlowFacts, Handler
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series

TYPE_URL = "type.googleapis.com/" + sidecar_pb2.SidecarFlow.DESCRIPTOR.full_name


class SidecarBytesFamily(Family):
    name = "sidecar-bytes"
    reads = frozenset({EXTENSIONS})

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        labels = ("protocol", "interface", "direction", *context.label_names)
        self.bytes = Counter(
            "hubble_otlp.sidecar.flow.bytes",
            "IP bytes counted by the sidecar's XDP program",
            labels,
            limit,
            unit="By",
        )
        self.packets = Counter(
            "hubble_otlp.sidecar.flow.packets",
            "Packets counted by the sidecar's XDP program",
            labels,
            limit,
            unit="{packet}",
        )
        retransmit_labels = ("protocol", *context.label_names)
        self.retransmits = Counter(
            "hubble_otlp.sidecar.tcp.retransmits", "TCP segments retransmitted", retransmit_labels, limit
        )
        self._ext = sidecar_pb2.SidecarFlow()

    def handler(self, kind: FlowFacts) -> Handler | None:
        if not kind.has_extensions:
            return None
        protocol = kind.protocol
        ext = self._ext
        packets = self.packets.inc
        octets = self.bytes.inc
        retransmits = self.retransmits.inc
        context = self.context if self.has_context else None

        def count(facts: FlowFacts) -> None:
            flow = facts.flow
            if flow.extensions.type_url != TYPE_URL:
                return
            ext.Clear()
            ext.MergeFromString(flow.extensions.value)
            ctx = () if context is None else context.values(facts)
            if ext.event == sidecar_pb2.SidecarFlow.EVENT_TCP_RETRANSMIT:
                retransmits((protocol, *ctx), ext.retransmits)
                return
            if ext.event != sidecar_pb2.SidecarFlow.EVENT_XDP:
                return
            interface = flow.interface.name
            if ext.packets_sent:
                key = (protocol, interface, "sent", *ctx)
                packets(key, ext.packets_sent)
                octets(key, ext.bytes_sent)
            if ext.packets_received:
                key = (protocol, interface, "received", *ctx)
                packets(key, ext.packets_received)
                octets(key, ext.bytes_received)

        return count

    def series(self) -> list[Series]:
        return [self.bytes, self.packets, self.retransmits]
