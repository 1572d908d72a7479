"""Kernel records -> Hubble flows, without BPF: orientation, counters, TCP steps, metrics from them."""

from __future__ import annotations

from google.protobuf import json_format

from hubble_bridge.api import flow_pb2, observer_pb2, sidecar_pb2
from hubble_bridge.mapping.metrics.facts import FlowFacts
from hubble_bridge.mapping.metrics.families.sidecar_bytes import SidecarBytesFamily
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.sidecar import records as r
from hubble_bridge.sidecar.convert import FlowBuilder
from hubble_bridge.sidecar.endpoints import EndpointResolver, local_addresses
from hubble_bridge.sidecar.orient import Initiators, pair_samples

CLIENT, SERVER = "192.0.2.10", "192.0.2.20"  # TEST-NET-1: never this host's
T0 = 1_700_000_000_000_000_000


def builder() -> FlowBuilder:
    return FlowBuilder("node-1", EndpointResolver(), lambda index: {7: "veth-test"}.get(index, ""))


def sample(src: str, dst: str, sport: int, dport: int, packets: int, size: int, **kw: object) -> r.XdpSample:
    fields: dict[str, object] = dict(
        ifindex=7,
        ip_version=4,
        protocol=r.IPPROTO_TCP,
        source=src,
        destination=dst,
        source_port=sport,
        destination_port=dport,
        packets=packets,
        bytes=size,
        first_ns=T0,
        last_ns=T0 + 1000,
        tcp_flags=0,
        opened=False,
    )
    fields.update(kw)
    return r.XdpSample(**fields)  # type: ignore[arg-type]


def ext_of(response: observer_pb2.GetFlowsResponse) -> sidecar_pb2.SidecarFlow:
    ext = sidecar_pb2.SidecarFlow()
    assert response.flow.extensions.Unpack(ext)
    return ext


def as_dict(response: observer_pb2.GetFlowsResponse) -> dict:
    flow = json_format.MessageToDict(response.flow, preserving_proto_field_name=True)
    flow.pop("uuid")
    flow.pop("extensions")
    return flow


def test_both_directions_become_one_flow_from_the_side_that_sent_the_syn() -> None:
    # The server's direction comes first in the map: the SYN, not the order, decides.
    reply = sample(SERVER, CLIENT, 443, 40000, 3, 180, tcp_flags=r.TCP_SYN | r.TCP_ACK | r.TCP_FIN)
    request = sample(CLIENT, SERVER, 40000, 443, 4, 300, tcp_flags=r.TCP_SYN | r.TCP_ACK, opened=True)
    [response] = builder().xdp_flows([reply, request])
    assert as_dict(response) == {
        "time": "2023-11-14T22:13:20.000001Z",
        "verdict": "FORWARDED",
        "IP": {"source": CLIENT, "destination": SERVER, "ipVersion": "IPv4"},
        "l4": {
            "TCP": {
                "source_port": 40000,
                "destination_port": 443,
                "flags": {"SYN": True, "FIN": True, "ACK": True},
            }
        },
        "source": {"labels": ["reserved:world"]},
        "destination": {"labels": ["reserved:world"]},
        "Type": "L3_L4",
        "node_name": "node-1",
        "event_type": {"type": 4, "sub_type": 10},
        "trace_observation_point": "FROM_NETWORK",
        "is_reply": False,
        "interface": {"index": 7, "name": "veth-test"},
        "Summary": "TCP Flags: SYN, FIN, ACK (7 packets, 480 bytes)",
    }
    ext = ext_of(response)
    assert (ext.event, ext.packets_sent, ext.bytes_sent, ext.packets_received, ext.bytes_received) == (
        sidecar_pb2.SidecarFlow.EVENT_XDP,
        4,
        300,
        3,
        180,
    )
    assert response.node_name == "node-1" and response.time == response.flow.time


def test_orientation_is_remembered_across_intervals_and_learned_from_connects() -> None:
    flows = builder()
    flows.xdp_flows([sample(CLIENT, SERVER, 40000, 5000, 1, 60, tcp_flags=r.TCP_SYN, opened=True)])
    # Next interval: only the server's packets, no SYN; still oriented client -> server.
    [later] = flows.xdp_flows([sample(SERVER, CLIENT, 5000, 40000, 2, 104, tcp_flags=r.TCP_ACK)])
    assert (later.flow.IP.source, later.flow.l4.TCP.source_port) == (CLIENT, 40000)
    ext = ext_of(later)
    assert (ext.packets_sent, ext.packets_received, ext.bytes_received) == (0, 2, 104)
    assert later.flow.is_reply.value is False and later.flow.HasField("is_reply")
    # A TCP accept teaches the same for a conversation XDP never saw open.
    accept = r.TcpEvent(r.EV_ACCEPT, T0, 4, SERVER, CLIENT, 6000, 50000, 42, "server", r.ROLE_SERVER)
    flows.tcp_event_flow(accept)
    [known] = flows.xdp_flows([sample(SERVER, CLIENT, 6000, 50000, 1, 52)])
    assert (known.flow.IP.source, known.flow.IP.destination) == (CLIENT, SERVER)


def test_unknown_orientation_uses_the_ephemeral_port_and_leaves_is_reply_unset() -> None:
    [response] = builder().xdp_flows([sample(SERVER, CLIENT, 53, 45000, 1, 90, protocol=r.IPPROTO_UDP)])
    assert (response.flow.IP.source, response.flow.l4.UDP.source_port) == (CLIENT, 45000)
    assert not response.flow.HasField("is_reply")
    assert ext_of(response).packets_received == 1 and ext_of(response).packets_sent == 0


def test_icmp_keeps_each_direction_with_type_and_reply_flag() -> None:
    request = sample(CLIENT, SERVER, 8, 0, 2, 168, protocol=r.IPPROTO_ICMP)
    reply = sample(SERVER, CLIENT, 0, 0, 2, 168, protocol=r.IPPROTO_ICMP)
    out = {m.flow.l4.ICMPv4.type: m for m in builder().xdp_flows([request, reply])}
    assert sorted(out) == [0, 8]
    assert out[8].flow.Summary == "ICMPv4 EchoRequest (2 packets, 168 bytes)"
    assert out[8].flow.is_reply.value is False and out[0].flow.is_reply.value is True
    v6 = sample("2001:db8::1", "2001:db8::2", 128, 0, 1, 104, protocol=r.IPPROTO_ICMPV6, ip_version=6)
    [echo6] = builder().xdp_flows([v6])
    assert echo6.flow.l4.ICMPv6.type == 128 and echo6.flow.IP.ipVersion == flow_pb2.IPv6


def test_tcp_steps_become_flows_with_flags_process_and_timings() -> None:
    flows = builder()
    local, remote = CLIENT, SERVER
    connect = r.TcpEvent(
        r.EV_CONNECT, T0, 4, local, remote, 40000, 80, 1234, "curl", r.ROLE_CLIENT, latency_ns=250_000
    )
    close = r.TcpEvent(
        r.EV_CLOSE,
        T0 + 5,
        4,
        local,
        remote,
        40000,
        80,
        1234,
        "curl",
        r.ROLE_CLIENT,
        closed_by=r.CLOSED_BY_REMOTE,
        duration_ns=2_000_000_000,
        retransmits=3,
    )
    refused = r.TcpEvent(
        r.EV_CONNECT_FAILED,
        T0 + 9,
        4,
        local,
        remote,
        40001,
        81,
        1234,
        "curl",
        r.ROLE_CLIENT,
        reset=r.RESET_RECEIVED,
        latency_ns=90_000,
    )
    accepted_reset = r.TcpEvent(
        r.EV_CLOSE,
        T0,
        4,
        local,
        remote,
        8080,
        51000,
        77,
        "nginx",
        r.ROLE_SERVER,
        reset=r.RESET_RECEIVED,
        duration_ns=10,
    )
    out = [flows.tcp_event_flow(e) for e in (connect, close, refused, accepted_reset)]
    assert all(m is not None for m in out)
    c, f, x, a = (m for m in out if m is not None)
    assert c.flow.Summary == "TCP Flags: SYN (connect established in 0.250 ms; curl[1234])"
    assert (c.flow.l4.TCP.flags.SYN, c.flow.traffic_direction) == (True, flow_pb2.EGRESS)
    ext = ext_of(c)
    assert (ext.event, ext.connect_latency_ns, ext.process.pid, ext.process.command, ext.process_side) == (
        sidecar_pb2.SidecarFlow.EVENT_TCP_CONNECT,
        250_000,
        1234,
        "curl",
        sidecar_pb2.SidecarFlow.SIDE_SOURCE,
    )
    assert f.flow.l4.TCP.flags.FIN and not f.flow.l4.TCP.flags.RST
    ext = ext_of(f)
    assert (ext.duration_ns, ext.retransmits, ext.closed_by) == (
        2_000_000_000,
        3,
        sidecar_pb2.SidecarFlow.SIDE_DESTINATION,
    )
    # A refused connect reads as Hubble shows it: the server's RST, a reply.
    assert (x.flow.IP.source, x.flow.l4.TCP.source_port, x.flow.l4.TCP.flags.RST) == (remote, 81, True)
    assert x.flow.is_reply.value is True
    assert ext_of(x).process_side == sidecar_pb2.SidecarFlow.SIDE_DESTINATION
    # On the server side the remote client is the source; the reset was received from it.
    assert (a.flow.IP.source, a.flow.IP.destination, a.flow.l4.TCP.flags.RST) == (remote, local, True)
    assert a.flow.traffic_direction == flow_pb2.INGRESS
    assert ext_of(a).closed_by == sidecar_pb2.SidecarFlow.SIDE_SOURCE


def test_connect_errors_retransmits_and_lost_events() -> None:
    flows = builder()
    error = r.TcpEvent(
        r.EV_CONNECT_ERROR, T0, 4, "0.0.0.0", SERVER, 0, 443, 5, "app", r.ROLE_CLIENT, error=101
    )
    response = flows.tcp_event_flow(error)
    assert response is not None and response.flow.verdict == flow_pb2.ERROR
    assert (ext_of(response).error_number, ext_of(response).error) == (101, "ENETUNREACH")
    retrans = r.RetransmitSample(4, CLIENT, SERVER, 40000, 80, 4, T0, 9, "wget", r.ROLE_CLIENT)
    [flow] = flows.retransmit_flows([retrans])
    assert (
        ext_of(flow).retransmits == 4 and ext_of(flow).event == sidecar_pb2.SidecarFlow.EVENT_TCP_RETRANSMIT
    )
    assert flow.flow.Summary == "TCP (4 retransmitted; wget[9])"
    lost = flows.lost_events(17, flow_pb2.PERF_EVENT_RING_BUFFER, T0)
    assert (lost.lost_events.num_events_lost, lost.lost_events.source) == (
        17,
        flow_pb2.PERF_EVENT_RING_BUFFER,
    )
    assert lost.node_name == "node-1"


def test_pairing_keeps_interfaces_apart() -> None:
    one = sample(CLIENT, SERVER, 40000, 80, 1, 60, ifindex=1)
    other = sample(SERVER, CLIENT, 80, 40000, 1, 60, ifindex=2)
    assert len(pair_samples([one, other], Initiators())) == 2


def test_host_and_loopback_addresses_are_labelled_host() -> None:
    resolver = EndpointResolver()
    assert list(resolver.describe("127.0.0.1").endpoint.labels) == ["reserved:host"]
    assert list(resolver.describe(SERVER).endpoint.labels) == ["reserved:world"]
    assert "127.0.0.1" in local_addresses() and "::1" in local_addresses()


def test_sidecar_bytes_family_counts_both_directions_and_retransmits() -> None:
    errors: list[str] = []
    family = SidecarBytesFamily(ContextOptions({}, errors, "test"), {}, 100, errors)
    flows = builder()
    xdp = flows.xdp_flows(
        [
            sample(CLIENT, SERVER, 40000, 443, 4, 300, opened=True),
            sample(SERVER, CLIENT, 443, 40000, 3, 180),
            sample(CLIENT, SERVER, 40000, 53, 2, 120, protocol=r.IPPROTO_UDP),
        ]
    )
    retrans = flows.retransmit_flows([r.RetransmitSample(4, CLIENT, SERVER, 40000, 443, 2, T0, 1, "a", 1)])
    connect = flows.tcp_event_flow(r.TcpEvent(r.EV_CONNECT, T0, 4, CLIENT, SERVER, 1, 2, 3, "x", 1))
    assert connect is not None
    facts = FlowFacts()
    for response in [*xdp, *retrans, connect]:
        facts.load(response.flow)
        family.process(facts)
    assert errors == []
    by_name = {s.name: s.points for s in family.series()}
    assert by_name["hubble_otlp.sidecar.flow.bytes"] == {
        ("TCP", "veth-test", "sent"): 300,
        ("TCP", "veth-test", "received"): 180,
        ("UDP", "veth-test", "sent"): 120,
    }
    assert by_name["hubble_otlp.sidecar.flow.packets"][("TCP", "veth-test", "received")] == 3
    assert by_name["hubble_otlp.sidecar.tcp.retransmits"] == {("TCP",): 2}
