"""The sidecar on real eBPF: probes attached, traffic driven on loopback and a veth pair into a test
network namespace, and what it serves read back over real gRPC. Needs root; skips saying what is missing.

Addresses: 127.77.x.y on loopback; on the veth pair this module creates, a /30 and a /126 from the
documentation ranges that overlap no address or route of this machine (checked first: a machine's own
network may well use them). Ports are the kernel's, so filters never match other traffic.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from hubble_bridge.api import flow_pb2, observer_pb2, observer_pb2_grpc, sidecar_pb2
from hubble_bridge.flows.codec import timestamp_from_ns
from hubble_bridge.server.observer import ObserverServer
from hubble_bridge.sidecar import Sidecar, SidecarOptions
from hubble_bridge.sidecar.bccload import missing_prerequisite, tracefs_dir
from hubble_bridge.sidecar.features import ProbeState, kprobes_missing
from hubble_bridge.sources.relay import RelayClient

MISSING = missing_prerequisite() or (None if shutil.which("ip") else "iproute2 (ip) is not installed")

Ext = sidecar_pb2.SidecarFlow
NS = f"hbsc{os.getpid()}"
HOST_IF, NS_IF = f"hbsc{os.getpid() % 100000}h", f"hbsc{os.getpid() % 100000}n"


def free_subnet(candidates: list[str]) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The first candidate overlapping none of this machine's addresses and routes."""
    used = []
    for args in (["-j", "addr"], ["-j", "route"], ["-j", "-6", "route"]):
        result = subprocess.run(["ip", *args], capture_output=True, text=True) if shutil.which("ip") else None
        for entry in json.loads(result.stdout or "[]") if result and result.returncode == 0 else []:
            for info in entry.get("addr_info", []):
                used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
            destination = entry.get("dst", "")
            if destination and destination != "default":
                used.append(ipaddress.ip_network(destination, strict=False))
    for candidate in candidates:
        net = ipaddress.ip_network(candidate)
        if not any(net.version == other.version and net.overlaps(other) for other in used):
            return net
    return None


NET4 = free_subnet(["198.51.100.252/30", "203.0.113.252/30", "192.0.2.252/30"])
NET6 = free_subnet(["2001:db8:5c::/126", "2001:db8:7e::/126"])
if NET4 is None or NET6 is None:
    MISSING = MISSING or "no documentation-range subnet is free of this machine's addresses and routes"
HOST4, PEER4 = (str(NET4[1]), str(NET4[2])) if NET4 else ("", "")
HOST6, PEER6 = (str(NET6[1]), str(NET6[2])) if NET6 else ("", "")
NODE = "sidecar-test-node"
pytestmark = pytest.mark.prerequisite(MISSING and f"real eBPF tests: {MISSING}")

# Runs inside the namespace: a one-connection TCP echo server, or a UDP sender.
PEER_SCRIPT = r"""
import socket, sys
mode = sys.argv[1]
if mode == "tcp-echo":
    server = socket.socket(); server.bind((sys.argv[2], 0)); server.listen()
    print(server.getsockname()[1], flush=True)
    conn, _ = server.accept()
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.close()
elif mode == "udp-send":
    family = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
    sender = socket.socket(family, socket.SOCK_DGRAM)
    for _ in range(int(sys.argv[4])):
        sender.sendto(b"u" * int(sys.argv[5]), (sys.argv[2], int(sys.argv[3])))
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def in_ns(*args: str) -> list[str]:
    return ["ip", "netns", "exec", NS, *args]


def remove_stale_namespaces() -> None:
    """Namespaces of earlier runs that were killed before their cleanup (their pid is gone)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for pid in re.findall(r"^hbsc(\d+)", listing, re.M):
        if not Path(f"/proc/{pid}").exists():
            subprocess.run(["ip", "netns", "del", f"hbsc{pid}"], capture_output=True, timeout=20)


@pytest.fixture(scope="module")
def veth() -> Iterator[str]:
    """A veth pair into a fresh namespace; deleted (with its nft rules) even when a test fails."""
    remove_stale_namespaces()
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF, "netns", NS)
        sh("ip", "addr", "add", f"{HOST4}/30", "dev", HOST_IF)
        sh("ip", "addr", "add", f"{HOST6}/126", "dev", HOST_IF, "nodad")
        sh("ip", "link", "set", HOST_IF, "up")
        sh(*in_ns("ip", "addr", "add", f"{PEER4}/30", "dev", NS_IF))
        sh(*in_ns("ip", "addr", "add", f"{PEER6}/126", "dev", NS_IF, "nodad"))
        sh(*in_ns("ip", "link", "set", NS_IF, "up"))
        sh(*in_ns("ip", "link", "set", "lo", "up"))
        yield HOST_IF
    finally:
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=20)


@pytest.fixture(scope="module")
def sidecar(veth: str) -> Iterator[Sidecar]:
    # A long interval: tests drain with flush(), so nothing depends on timing.
    running = Sidecar(SidecarOptions(["lo", veth], interval_s=60, map_size=4096, node_name=NODE))
    try:
        running.start()
        yield running
    finally:
        running.stop()  # detaches XDP from both interfaces


@pytest.fixture(scope="module")
def stub(sidecar: Sidecar) -> Iterator[observer_pb2_grpc.ObserverStub]:
    server = ObserverServer(sidecar.store, "127.0.0.1:0")
    address = server.start()
    channel = grpc.insecure_channel(address)
    try:
        yield observer_pb2_grpc.ObserverStub(channel)
    finally:
        channel.close()
        server.stop()


def flows(stub: observer_pb2_grpc.ObserverStub, *filters: flow_pb2.FlowFilter) -> list[flow_pb2.Flow]:
    request = observer_pb2.GetFlowsRequest(whitelist=list(filters))
    return [r.flow for r in stub.GetFlows(request, timeout=10) if r.HasField("flow")]


def follow(
    stub: observer_pb2_grpc.ObserverStub,
    done: Callable[[list[flow_pb2.Flow]], bool],
    since_ns: int,
    *filters: flow_pb2.FlowFilter,
) -> list[flow_pb2.Flow]:
    """Flows matching `filters` since `since_ns`, followed until `done(flows)` (or a 10 s deadline)."""
    request = observer_pb2.GetFlowsRequest(whitelist=list(filters), follow=True)
    request.since.CopyFrom(timestamp_from_ns(since_ns))
    seen: list[flow_pb2.Flow] = []
    call = stub.GetFlows(request, timeout=10)
    try:
        for response in call:
            if response.HasField("flow"):
                seen.append(response.flow)
                if done(seen):
                    break
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    finally:
        call.cancel()
    return seen


def ext(flow: flow_pb2.Flow) -> sidecar_pb2.SidecarFlow:
    out = sidecar_pb2.SidecarFlow()
    assert flow.extensions.Unpack(out)
    return out


def of_event(found: list[flow_pb2.Flow], event: int) -> list[flow_pb2.Flow]:
    return [f for f in found if ext(f).event == event]


def port_filter(port: int, **extra: object) -> flow_pb2.FlowFilter:
    return flow_pb2.FlowFilter(destination_port=[str(port)], **extra)  # type: ignore[arg-type]


def my_command() -> str:
    return Path("/proc/self/comm").read_text().strip()


def test_probes_report_how_they_attached(sidecar: Sidecar) -> None:
    by_name = {s.name: s for s in sidecar.statuses}
    assert by_name["xdp lo"].state is ProbeState.FALLBACK  # loopback has no native XDP
    assert "generic mode" in by_name["xdp lo"].detail
    assert by_name[f"xdp {HOST_IF}"].state in (ProbeState.ATTACHED, ProbeState.FALLBACK)
    for name in ("sock:inet_sock_set_state", "tcp:tcp_retransmit_skb"):
        assert by_name[f"tracepoint {name}"].state is ProbeState.ATTACHED
    expected = ProbeState.FALLBACK if kprobes_missing(tracefs_dir()) else ProbeState.ATTACHED
    assert by_name["kprobe tcp_v4_connect"].state is expected


def test_udp_on_loopback_exact_packets_and_bytes_per_direction(sidecar, stub) -> None:  # type: ignore[no-untyped-def]
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with server, client:
        server.settimeout(5)
        client.settimeout(5)
        server.bind(("127.77.1.1", 0))
        client.bind(("127.77.1.2", 0))
        for _ in range(5):
            client.sendto(b"q" * 100, server.getsockname())
        for _ in range(5):
            server.recvfrom(2048)  # received: XDP counted them on the way in
        for _ in range(2):
            server.sendto(b"r" * 30, client.getsockname())
            client.recvfrom(2048)
        ports = (client.getsockname()[1], server.getsockname()[1])
    assert sidecar.flush()
    [flow] = flows(stub, port_filter(ports[1], source_ip=["127.77.1.2"]))
    assert (flow.l4.UDP.source_port, flow.l4.UDP.destination_port) == ports
    assert (flow.interface.name, flow.Type, flow.node_name) == ("lo", flow_pb2.L3_L4, NODE)
    counters = ext(flow)
    # 20 bytes IPv4 + 8 UDP + payload
    assert (counters.packets_sent, counters.bytes_sent) == (5, 5 * 128)
    assert (counters.packets_received, counters.bytes_received) == (2, 2 * 58)


def icmp_echo(ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    total = sum(struct.unpack(f"!{len(header + payload) // 2}H", header + payload))
    total = (total >> 16) + (total & 0xFFFF)
    checksum = ~(total + (total >> 16)) & 0xFFFF
    return struct.pack("!BBHHH", 8, 0, checksum, ident, seq) + payload


def ping(target: str, count: int, payload: bytes) -> None:
    """Echo requests on a raw socket; returns once every reply has arrived."""
    ident = os.getpid() & 0xFFFF
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as raw:
        raw.settimeout(5)
        for seq in range(count):
            raw.sendto(icmp_echo(ident, seq, payload), (target, 0))
        replies = 0
        while replies < count:
            packet, (sender, _) = raw.recvfrom(2048)
            icmp = packet[(packet[0] & 0x0F) * 4 :]
            if sender == target and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                replies += 1


def test_icmp_echo_on_loopback_counts_requests_and_replies(sidecar, stub) -> None:  # type: ignore[no-untyped-def]
    ping("127.77.2.1", 3, b"p" * 56)
    assert sidecar.flush()
    found = flows(
        stub,
        flow_pb2.FlowFilter(source_ip=["127.77.2.1"]),
        flow_pb2.FlowFilter(destination_ip=["127.77.2.1"]),
    )
    by_type = {f.l4.ICMPv4.type: f for f in found if f.l4.HasField("ICMPv4")}
    assert sorted(by_type) == [0, 8]
    for flow in by_type.values():
        assert (ext(flow).packets_sent, ext(flow).bytes_sent) == (3, 3 * (20 + 8 + 56))
    assert by_type[8].is_reply.value is False and by_type[0].is_reply.value is True
    assert by_type[8].Summary == "ICMPv4 EchoRequest (3 packets, 252 bytes)"


def test_udp_and_icmp_over_veth_from_the_namespace(sidecar, stub) -> None:  # type: ignore[no-untyped-def]
    receivers = {}
    for family, address, count, size in ((socket.AF_INET, HOST4, 4, 200), (socket.AF_INET6, HOST6, 3, 100)):
        receiver = socket.socket(family, socket.SOCK_DGRAM)
        receiver.settimeout(5)
        receiver.bind((address, 0))
        receivers[address] = (receiver, count, size)
        port = receiver.getsockname()[1]
        subprocess.run(
            in_ns(sys.executable, "-c", PEER_SCRIPT, "udp-send", address, str(port), str(count), str(size)),
            check=True,
            timeout=20,
        )
        for _ in range(count):
            receiver.recvfrom(2048)
    ping(PEER4, 2, b"v" * 40)  # requests leave on the veth, replies arrive on it
    assert sidecar.flush()
    for address, (receiver, count, size) in receivers.items():
        with receiver:
            [flow] = flows(stub, port_filter(receiver.getsockname()[1]))
        header = 20 if address == HOST4 else 40
        assert (flow.interface.name, flow.IP.destination) == (HOST_IF, address)
        assert (ext(flow).packets_sent, ext(flow).bytes_sent) == (count, count * (header + 8 + size))
    [reply] = flows(stub, flow_pb2.FlowFilter(source_ip=[PEER4], protocol=["icmp"]))
    assert (reply.l4.ICMPv4.type, ext(reply).packets_sent, ext(reply).bytes_sent) == (0, 2, 2 * 68)
    assert reply.interface.name == HOST_IF


def start_echo_server() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        in_ns(sys.executable, "-c", PEER_SCRIPT, "tcp-echo", PEER4), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def test_tcp_lifecycle_over_veth_flags_processes_and_latency(sidecar, stub) -> None:  # type: ignore[no-untyped-def]
    since = time.time_ns()
    server, port = start_echo_server()
    try:
        with socket.create_connection((PEER4, port), timeout=5) as client:
            client.sendall(b"hello sidecar")
            assert client.recv(100) == b"hello sidecar"
        server.wait(timeout=10)  # the server saw EOF and closed: both sides are done
    finally:
        server.kill()

    def complete(found: list[flow_pb2.Flow]) -> bool:
        return (
            len(of_event(found, Ext.EVENT_TCP_CLOSE)) == 2 and len(of_event(found, Ext.EVENT_TCP_ACCEPT)) == 1
        )

    found = follow(stub, complete, since, port_filter(port))
    [connect] = of_event(found, Ext.EVENT_TCP_CONNECT)
    [accept] = of_event(found, Ext.EVENT_TCP_ACCEPT)
    closes = of_event(found, Ext.EVENT_TCP_CLOSE)
    assert (connect.IP.source, connect.IP.destination, connect.l4.TCP.destination_port) == (
        HOST4,
        PEER4,
        port,
    )
    assert connect.l4.TCP.flags.SYN and not connect.l4.TCP.flags.FIN
    assert (ext(connect).process.pid, ext(connect).process.command) == (os.getpid(), my_command())
    assert ext(connect).connect_latency_ns > 0
    # Accepted in softirq context, attributed to the process that listens.
    assert (ext(accept).process.pid, accept.traffic_direction) == (server.pid, flow_pb2.INGRESS)
    assert {ext(c).process.pid for c in closes} == {os.getpid(), server.pid}
    for close in closes:
        assert close.l4.TCP.flags.FIN and not close.l4.TCP.flags.RST
        assert (close.IP.source, close.l4.TCP.source_port) == (HOST4, connect.l4.TCP.source_port)
        assert ext(close).closed_by == Ext.SIDE_SOURCE  # the client closed first
    # XDP on the host end saw the server's packets: one conversation, oriented by the connect.
    assert sidecar.flush()
    [xdp] = [f for f in flows(stub, port_filter(port)) if ext(f).event == Ext.EVENT_XDP]
    assert (xdp.IP.source, xdp.IP.destination, xdp.is_reply.value) == (HOST4, PEER4, False)
    assert xdp.l4.TCP.flags.SYN and xdp.l4.TCP.flags.ACK and xdp.l4.TCP.flags.FIN
    assert ext(xdp).packets_sent == 0 and ext(xdp).packets_received >= 3
    assert ext(xdp).bytes_received >= 3 * 40 + len(b"hello sidecar")


def test_refused_connect_is_a_reset_reply(sidecar, stub) -> None:  # type: ignore[no-untyped-def]
    since = time.time_ns()
    with socket.socket() as closed:
        closed.bind(("127.77.3.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: the kernel answers RST
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.77.3.1", port), timeout=5):
        pass
    [failed] = follow(stub, lambda found: bool(found), since, flow_pb2.FlowFilter(source_port=[str(port)]))
    assert ext(failed).event == Ext.EVENT_TCP_CONNECT_FAILED
    assert (failed.l4.TCP.flags.RST, failed.is_reply.value, failed.IP.source) == (True, True, "127.77.3.1")
    assert (ext(failed).process.pid, ext(failed).process_side) == (os.getpid(), Ext.SIDE_DESTINATION)


def test_retransmits_when_the_namespace_drops_packets(sidecar, stub) -> None:  # type: ignore[no-untyped-def]
    since = time.time_ns()
    server, port = start_echo_server()
    table = f"hbsc{port}"
    try:
        client = socket.create_connection((PEER4, port), timeout=5)
        client.sendall(b"before")
        assert client.recv(100) == b"before"
        sh(*in_ns("nft", "add", "table", "inet", table))
        sh(*in_ns("nft", "add", "chain", "inet", table, "input", "{ type filter hook input priority 0; }"))
        sh(*in_ns("nft", "add", "rule", "inet", table, "input", "tcp", "dport", str(port), "drop"))
        client.sendall(b"lost")  # dropped: the client retransmits after its RTO (>= 200 ms)
        deadline = time.monotonic() + 8
        retransmits: list[flow_pb2.Flow] = []
        while not retransmits and time.monotonic() < deadline:
            assert sidecar.flush()  # blocks until the loop drained: no sleeping here
            retransmits = of_event(flows(stub, port_filter(port)), Ext.EVENT_TCP_RETRANSMIT)
        # Abort: RST instead of FIN behind the unacknowledged data.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
    finally:
        subprocess.run(in_ns("nft", "delete", "table", "inet", table), capture_output=True, timeout=20)
        server.kill()
        server.wait(timeout=10)
    assert retransmits, "no retransmit flow within 8 s"
    retransmit = retransmits[0]
    assert (retransmit.IP.source, retransmit.l4.TCP.destination_port) == (HOST4, port)
    assert ext(retransmit).retransmits >= 1 and ext(retransmit).process.pid == os.getpid()
    found = follow(
        stub, lambda f: bool(of_event(f, Ext.EVENT_TCP_CLOSE)), since, port_filter(port, source_ip=[HOST4])
    )
    mine = [c for c in of_event(found, Ext.EVENT_TCP_CLOSE) if ext(c).process.pid == os.getpid()]
    assert mine and mine[0].l4.TCP.flags.RST and ext(mine[0]).retransmits >= 1


def test_server_status_and_nodes_answer_for_the_sidecar(sidecar, stub) -> None:  # type: ignore[no-untyped-def]
    status = stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
    assert status.num_connected_nodes.value == 1 and status.max_flows == sidecar.options.max_flows
    assert status.seen_flows >= status.num_flows > 0
    nodes = stub.GetNodes(observer_pb2.GetNodesRequest(), timeout=5).nodes
    assert [n.name for n in nodes] == [NODE]
    families = {f.name: f for f in sidecar.stats.snapshots()[0].families}
    runs = {p.attributes: p.value for p in families["hubble_otlp.sidecar.bpf.program.runs"].points}
    assert runs[(("program", "xdp_count_flows"),)] > 0
    assert runs[(("program", "tracepoint__sock__inet_sock_set_state"),)] > 0


def test_relay_client_reads_the_sidecar_like_a_relay(sidecar, stub) -> None:  # type: ignore[no-untyped-def]
    server = ObserverServer(sidecar.store, "127.0.0.1:0")
    client = RelayClient(server.start())
    try:
        request = observer_pb2.GetFlowsRequest(number=5, whitelist=[flow_pb2.FlowFilter(node_name=[NODE])])
        got = [r.flow for r in client.get_flows(request) if r.HasField("flow")]
        assert len(got) == 5 and all(f.node_name == NODE and f.HasField("extensions") for f in got)
    finally:
        client.close()
        server.stop()


def test_without_root_the_sidecar_says_what_is_missing_in_one_line() -> None:
    # Privileges are dropped after the imports: the interpreter itself may live under /root.
    code = (
        "import os\n"
        "from hubble_bridge.sidecar import run_sidecar\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        "    run_sidecar(['lo'], '127.0.0.1:0', 1.0, tls=None, map_size=1024, node_name=None)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=repo
    )
    assert result.stdout.splitlines() == [
        "SidecarUnavailable sidecar: the sidecar needs root (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON) "
        "to load BPF programs"
    ], result.stderr
