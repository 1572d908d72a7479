"""What every scenario needs: the seeded rng, the topology, ids, ports, addresses, flow shells.

A scenario returns `Event`s: an offset in nanoseconds from the scenario's start
and the response. The stream stamps the absolute time when it emits the event,
so scenarios never see the clock.
"""

from __future__ import annotations

import math
import random

from google.protobuf.wrappers_pb2 import BoolValue

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.generator.topology import Node, Peer, Topology

Event = tuple[int, observer_pb2.GetFlowsResponse]

EMITTER = flow_pb2.Emitter(name="Hubble", version="1.19.4")
IS_REPLY = BoolValue(value=True)
NOT_REPLY = BoolValue(value=False)

# monitor message types (pkg/monitor/api)
DROP, TRACE, POLICY_VERDICT, TRACE_SOCK, ACCESS_LOG = 1, 4, 5, 7, 129

P = flow_pb2.TraceObservationPoint
R = flow_pb2.TraceReason
V = flow_pb2.Verdict
D = flow_pb2.TrafficDirection

# TCP flag sets by the names people use, with Hubble's summary (flags in SYN, ACK, RST, FIN, PSH order).
TCP_FLAGS = {
    "SYN": (flow_pb2.TCPFlags(SYN=True), "TCP Flags: SYN"),
    "SYN-ACK": (flow_pb2.TCPFlags(SYN=True, ACK=True), "TCP Flags: SYN, ACK"),
    "ACK": (flow_pb2.TCPFlags(ACK=True), "TCP Flags: ACK"),
    "PSH-ACK": (flow_pb2.TCPFlags(ACK=True, PSH=True), "TCP Flags: ACK, PSH"),
    "FIN-ACK": (flow_pb2.TCPFlags(ACK=True, FIN=True), "TCP Flags: ACK, FIN"),
    "RST": (flow_pb2.TCPFlags(RST=True), "TCP Flags: RST"),
    "RST-ACK": (flow_pb2.TCPFlags(ACK=True, RST=True), "TCP Flags: ACK, RST"),
}

_EVENT_TYPES: dict[tuple[int, int], flow_pb2.CiliumEventType] = {}


def event_type(kind: int, sub_type: int = 0) -> flow_pb2.CiliumEventType:
    key = (kind, sub_type)
    cached = _EVENT_TYPES.get(key)
    if cached is None:
        cached = _EVENT_TYPES[key] = flow_pb2.CiliumEventType(type=kind, sub_type=sub_type)
    return cached


def trace_event_type(point: int) -> flow_pb2.CiliumEventType:
    # The sub_type is the monitor's ObsPoint, where ToLxc is 0; the proto enum calls it TO_ENDPOINT=101.
    return event_type(TRACE, 0 if point == P.TO_ENDPOINT else point)


def ms(value: float) -> int:
    return int(value * 1_000_000)


class Kit:
    """The per-run helpers every scenario shares."""

    def __init__(self, rng: random.Random, topology: Topology) -> None:
        self.rng = rng
        self.topology = topology
        self.nodes = topology.nodes
        self.wl = topology.workloads
        self.world = topology.world

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def port(self) -> int:
        """An ephemeral source port (Linux's default ip_local_port_range)."""
        return self.rng.randint(32768, 60999)

    def pod(self, workload: str) -> Peer:
        return self.rng.choice(self.wl[workload].pods)

    def use_v6(self, a: Peer, b: Peer, share: float = 0.2) -> bool:
        return bool(a.ipv6 and b.ipv6) and self.rng.random() < share

    def latency(self, median_ms: float, spread: float = 0.8, cap_ms: float = 5000.0) -> int:
        """A log-normal duration: mostly near the median, with a long tail."""
        value = self.rng.lognormvariate(math.log(median_ms), spread)
        return ms(min(max(value, median_ms / 20), cap_ms))

    def hop(self, a: Node | None, b: Node | None) -> int:
        """One-way network delay between two nodes (None is the Internet)."""
        if a is None or b is None:
            return ms(self.rng.uniform(4.0, 25.0))
        if a is b:
            return ms(self.rng.uniform(0.02, 0.12))
        return ms(self.rng.uniform(0.15, 0.9))

    def event(self, node: Node, **fields: object) -> observer_pb2.GetFlowsResponse:
        flow = flow_pb2.Flow(
            uuid=self.uuid(), emitter=EMITTER, node_name=node.name, node_labels=node.labels, **fields
        )
        return observer_pb2.GetFlowsResponse(flow=flow, node_name=node.name)


def address(peer: Peer, v6: bool) -> str:
    return peer.ipv6 if v6 else peer.ipv4


def ip(source: str, destination: str, v6: bool, source_xlated: str = "") -> flow_pb2.IP:
    version = flow_pb2.IPv6 if v6 else flow_pb2.IPv4
    return flow_pb2.IP(source=source, destination=destination, ipVersion=version, source_xlated=source_xlated)


def is_endpoint_on(peer: Peer, node: Node) -> bool:
    """True when `peer` is a local Cilium endpoint of `node` (the host itself is not one)."""
    return peer.node is node and peer.local.identity != 1
