"""The sidecar's L7 flows on real eBPF: DNS lookups by glibc's resolver (getent) in a test network namespace
against a real DNS server process (tests/dns_server.py) on the host end of a veth pair, and HTTP/1.x between
real server and client processes on loopback, read back over observer.Observer/GetFlows. Needs root.

`ip netns exec` mounts /etc/netns/<namespace>/resolv.conf over /etc/resolv.conf, which is how getent in
the namespace is pointed at the test's server (port 53, as resolv.conf cannot name another).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hubble_bridge.api import flow_pb2, observer_pb2_grpc, sidecar_pb2
from hubble_bridge.server.observer import ObserverServer
from hubble_bridge.sidecar import Sidecar, SidecarOptions
from tests import test_sidecar_bpf
from tests.conftest import require
from tests.procs import REPO
from tests.test_sidecar_bpf import HOST4, HOST6, MISSING, NS, PEER4, PEER6, ext, flows, follow, in_ns

MISSING = MISSING or (None if shutil.which("getent") else "getent (libc-bin) is not installed")
pytestmark = pytest.mark.prerequisite(MISSING and f"real eBPF tests: {MISSING}")

Ext = sidecar_pb2.SidecarFlow
veth = test_sidecar_bpf.veth  # the same veth pair into a fresh namespace, set up for this module
NODE = "sidecar-l7-node"
RESOLV_DIR = Path("/etc/netns") / NS
L7_TIMEOUT_S = (
    0.5  # getent's own timeout (resolv.conf below) is 1 s: its query is older than this when it gives up
)

# A server whose status comes from the path (/status/404); the body echoes the path. Runs as its own process.
HTTP_SERVER = r"""
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        code = int(self.path.split("/status/")[1].split("?")[0]) if "/status/" in self.path else 200
        body = self.path.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_POST = do_GET
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer((sys.argv[1], 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def alternate_dns_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.77.20.1", 0))
        return int(probe.getsockname()[1])


ALT_PORT = alternate_dns_port()


def start(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


@pytest.fixture(scope="module")
def sidecar(veth: str) -> Iterator[Sidecar]:
    options = SidecarOptions(
        ["lo", veth], interval_s=60, map_size=4096, node_name=NODE, dns_ports=(53, ALT_PORT),
        l7_timeout_s=L7_TIMEOUT_S,
    )  # fmt: skip
    running = Sidecar(options)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def stub(sidecar: Sidecar) -> Iterator[observer_pb2_grpc.ObserverStub]:
    server = ObserverServer(sidecar.store, "127.0.0.1:0")
    channel = grpc.insecure_channel(server.start())
    try:
        yield observer_pb2_grpc.ObserverStub(channel)
    finally:
        channel.close()
        server.stop()


@pytest.fixture(scope="module")
def dns_server(veth: str) -> Iterator[subprocess.Popen[str]]:
    proc, _ = start(sys.executable, "tests/dns_server.py", HOST4, "53")
    RESOLV_DIR.mkdir(parents=True, exist_ok=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(RESOLV_DIR, ignore_errors=True)


def getent(name: str, *options: str) -> subprocess.CompletedProcess[str]:
    """glibc's resolver in the namespace, one attempt with a 1 s timeout, over TCP with `use-vc`."""
    (RESOLV_DIR / "resolv.conf").write_text(
        f"nameserver {HOST4}\noptions timeout:1 attempts:1 {' '.join(options)}\n"
    )
    return subprocess.run(in_ns("getent", "ahostsv4", name), capture_output=True, text=True, timeout=20)


def counters(sidecar: Sidecar) -> dict[str, float]:
    """The sidecar's capture counters (hubble_otlp.sidecar.events) as of its last drain."""
    families = {f.name: f for f in sidecar.stats.snapshots()[0].families}
    return {dict(p.attributes)["counter"]: p.value for p in families["hubble_otlp.sidecar.events"].points}


def dns_flows(found: list[flow_pb2.Flow], query: str) -> tuple[list[flow_pb2.Flow], list[flow_pb2.Flow]]:
    mine = [f for f in found if f.Type == flow_pb2.L7 and f.l7.dns.query == query]
    return [f for f in mine if f.l7.type == flow_pb2.REQUEST], [
        f for f in mine if f.l7.type == flow_pb2.RESPONSE
    ]


def on_port(port: int) -> list[flow_pb2.FlowFilter]:
    """Flows from or to `port` (two filters: GetFlows ORs them)."""
    return [flow_pb2.FlowFilter(source_port=[str(port)]), flow_pb2.FlowFilter(destination_port=[str(port)])]


def test_probe_check_lists_the_socket_filters(sidecar: Sidecar, veth: str) -> None:
    by_name = {s.name: s for s in sidecar.statuses}
    for name in ("lo", veth):
        assert by_name[f"socket filter {name}"].state.value == "attached"
        assert "DNS on ports 53," in by_name[f"socket filter {name}"].detail


def test_getent_lookups_answered_and_nxdomain(sidecar, stub, dns_server) -> None:  # type: ignore[no-untyped-def]
    since = time.time_ns()
    found = getent("alias.test.")
    assert found.returncode == 0 and "192.0.2.10" in found.stdout, found
    assert getent("nope.test.").returncode == 2  # NXDOMAIN: not found

    def complete(seen: list[flow_pb2.Flow]) -> bool:
        return all(len(dns_flows(seen, q)[1]) == 1 for q in ("alias.test.", "nope.test."))

    seen = follow(stub, complete, since, *on_port(53))
    [request], [response] = dns_flows(seen, "alias.test.")
    assert (request.IP.source, request.IP.destination, request.l4.UDP.destination_port) == (PEER4, HOST4, 53)
    assert (request.is_reply.value, request.l7.dns.qtypes, request.traffic_direction) == (
        False, ["A"], flow_pb2.INGRESS,
    )  # fmt: skip
    dns = response.l7.dns
    assert (response.IP.source, response.IP.destination, response.is_reply.value) == (HOST4, PEER4, True)
    assert (list(dns.ips), list(dns.cnames), dns.ttl, dns.rcode) == (
        ["192.0.2.10", "192.0.2.11"], ["www.test."], 60, 0,
    )  # fmt: skip
    assert list(dns.rrtypes) == ["CNAME", "A", "A"] and dns.observation_source == "sidecar"
    # Kernel stamps at the tap on the veth: the server's own time to answer, well above zero.
    assert 0 < response.l7.latency_ns < 1_000_000_000
    assert response.l7.latency_ns == response.time.ToNanoseconds() - request.time.ToNanoseconds()
    assert response.interface.name == sidecar.options.interfaces[1]
    [_], [nx] = dns_flows(seen, "nope.test.")
    assert (nx.l7.dns.rcode, list(nx.l7.dns.ips)) == (3, [])


def test_getent_timeout_leaves_a_request_counted_unanswered(sidecar, stub, dns_server) -> None:  # type: ignore[no-untyped-def]
    since = time.time_ns()
    assert sidecar.flush()
    before = counters(sidecar).get("dns.queries_unanswered", 0)
    assert getent("silent.test.").returncode == 2  # gave up after its 1 s timeout
    seen = follow(stub, lambda s: bool(dns_flows(s, "silent.test.")[0]), since, *on_port(53))
    requests, responses = dns_flows(seen, "silent.test.")
    assert len(requests) == 1 and responses == []
    assert sidecar.flush()  # the query is older than the sidecar's L7 timeout by now
    assert counters(sidecar)["dns.queries_unanswered"] == before + 1


def test_dns_over_tcp_names_the_client_process(sidecar, stub, dns_server) -> None:  # type: ignore[no-untyped-def]
    since = time.time_ns()
    assert getent("www.test.", "use-vc").returncode == 0
    seen = follow(stub, lambda s: bool(dns_flows(s, "www.test.")[1]), since, *on_port(53))
    [request], [response] = dns_flows(seen, "www.test.")
    assert request.l4.TCP.destination_port == 53 and list(response.l7.dns.ips) == ["192.0.2.10", "192.0.2.11"]
    # getent connected (in its namespace: the connect tracepoint sees every namespace on the host), and
    # the client's process is preferred over the server's; it is the response's destination.
    assert (ext(response).process.command, ext(response).process_side) == ("getent", Ext.SIDE_DESTINATION)
    assert ext(response).event == Ext.EVENT_L7


def test_configured_dns_port_on_loopback(sidecar, stub) -> None:  # type: ignore[no-untyped-def]
    since = time.time_ns()
    proc, port = start(sys.executable, "tests/dns_server.py", "127.77.20.1", str(ALT_PORT))
    try:
        assert port == ALT_PORT
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.sendto(_query("v6.test.", 28), ("127.77.20.1", port))
            client.recv(4096)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    follow(stub, lambda s: bool(dns_flows(s, "v6.test.")[1]), since, *on_port(port))
    assert sidecar.flush()  # everything the sockets hold by now is served
    # Loopback passes each packet through the taps twice: exactly one query and one answer, not two.
    [request], [response] = dns_flows(flows(stub, *on_port(port)), "v6.test.")
    assert (list(response.l7.dns.ips), response.l7.dns.qtypes, response.interface.name) == (
        ["2001:db8::10"], ["AAAA"], "lo",
    )  # fmt: skip
    assert response.l7.latency_ns == response.time.ToNanoseconds() - request.time.ToNanoseconds()


def _query(name: str, qtype: int) -> bytes:
    from tests.dns_server import encode_name

    return bytes.fromhex("abcd01000001000000000000") + encode_name(name) + qtype.to_bytes(2, "big") + b"\0\1"


@pytest.fixture(scope="module")
def web() -> Iterator[tuple[subprocess.Popen[str], tuple[str, int]]]:
    proc, port = start(sys.executable, "-c", HTTP_SERVER, "127.77.21.1")
    try:
        yield proc, ("127.77.21.1", port)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def http_flows(found: list[flow_pb2.Flow]) -> tuple[list[flow_pb2.Flow], list[flow_pb2.Flow]]:
    mine = [f for f in found if f.Type == flow_pb2.L7 and f.l7.HasField("http")]
    return [f for f in mine if f.l7.type == flow_pb2.REQUEST], [
        f for f in mine if f.l7.type == flow_pb2.RESPONSE
    ]


def exchange(address: tuple[str, int], *chunks: bytes, responses: int) -> bytes:
    """Sends each chunk as its own segment on one connection; returns once `responses` heads came back."""
    with socket.create_connection(address, timeout=5) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            client.sendall(chunk)
        received = b""
        while not (received.count(b"HTTP/1.1 ") >= responses and _bodies_complete(received)):
            data = client.recv(65536)
            if not data:
                break
            received += data
        return received


def _bodies_complete(received: bytes) -> bool:
    rest = received
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        if not sep:
            return False
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        if len(rest) < length:
            return False
        rest = rest[length:]
    return True


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: web.test\r\nUser-Agent: l7-test/1\r\n{extra}\r\n".encode()


def test_http_keep_alive_and_pipelined_requests_pair_in_order(sidecar, stub, web) -> None:  # type: ignore[no-untyped-def]
    server, address = web
    since = time.time_ns()
    # Keep-alive: three requests one after the other; then three pipelined in one segment.
    with socket.create_connection(address, timeout=5) as client:
        for path in ("/status/200", "/status/404", "/status/500"):
            client.sendall(get(path))
            received = b""
            while not (received and _bodies_complete(received)):
                received += client.recv(65536)
        port = client.getsockname()[1]
    pipelined = get("/status/201") + get("/status/503") + get("/status/202")
    exchange(address, pipelined, responses=3)
    seen = follow(stub, lambda s: len(http_flows(s)[1]) >= 6, since, *on_port(address[1]))
    requests, responses = http_flows(seen)
    pairs = [(r.l7.http.url.rsplit("/", 1)[1], r.l7.http.code) for r in responses]
    assert pairs == [("200", 200), ("404", 404), ("500", 500), ("201", 201), ("503", 503), ("202", 202)]
    assert [r.l7.http.method for r in requests] == ["GET"] * 6
    first = responses[0]
    assert first.l7.http.url == "http://web.test/status/200" and first.l7.http.protocol == "HTTP/1.1"
    assert (first.IP.source, first.l4.TCP.source_port, first.l4.TCP.destination_port) == (
        address[0],
        address[1],
        port,
    )
    assert first.is_reply.value and 0 < first.l7.latency_ns < 1_000_000_000
    # The client connected: the flows name this process; the sidecar read it from the connect tracepoint.
    assert (ext(first).process.pid, ext(first).process_side) == (os.getpid(), Ext.SIDE_DESTINATION)
    assert server.poll() is None


def test_http_redaction_and_bodies_that_look_like_requests(sidecar, stub, web) -> None:  # type: ignore[no-untyped-def]
    _, address = web
    since = time.time_ns()
    body = b"GET /smuggled HTTP/1.1\r\n\r\n"
    head = (
        f"POST /status/200?token=s3cret&page=2 HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer s3cret\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    exchange(address, head, body, responses=1)  # the body travels in its own segment
    seen = follow(stub, lambda s: bool(http_flows(s)[1]), since, *on_port(address[1]))
    requests, responses = http_flows(seen)
    assert [r.l7.http.url for r in requests] == ["http://web.test/status/200?token=REDACTED&page=REDACTED"]
    assert [r.l7.http.code for r in responses] == [200]
    for flow in requests + responses:
        assert "s3cret" not in str(flow) and "smuggled" not in str(flow)
    assert sidecar.flush()
    counted = counters(sidecar)
    assert counted["http.body_segments_skipped"] >= 1 and counted["l7.http_packets"] >= 2


# An HTTPS server through Python's ssl module, which links the system's OpenSSL.
HTTPS_SERVER = r"""
import http.server, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(404 if "missing" in self.path else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def test_https_plaintext_from_openssl_uprobes(sidecar, stub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import http.client
    import ssl

    from tests.certs import make_pki

    statuses = [s for s in sidecar.statuses if s.name.startswith("uprobe ")]
    attached = any(s.state.value == "attached" for s in statuses)
    require(None if attached else f"no uprobe on libssl attached here: {[s.line() for s in statuses]}")
    pki = make_pki(tmp_path)
    since = time.time_ns()
    server, port = start(sys.executable, "-c", HTTPS_SERVER, pki.server_cert, pki.server_key)
    client = http.client.HTTPSConnection(
        "127.0.0.1", port, timeout=5, context=ssl.create_default_context(cafile=pki.ca_file)
    )
    try:
        for path in ("/ok?token=s3cret", "/missing"):
            client.request("GET", path, headers={"User-Agent": "tls-test/1"})
            client.getresponse().read()
        # Client and server each have their own view (EGRESS and INGRESS), as two proxies would.
        seen = follow(stub, lambda s: len(http_flows(s)[1]) >= 4, since, *on_port(port))
    finally:
        client.close()
        server.kill()
        server.wait(timeout=10)
    requests, responses = http_flows(seen)
    assert all(ext(f).event == Ext.EVENT_L7_TLS for f in requests + responses)
    client_view = [f for f in responses if f.traffic_direction == flow_pb2.EGRESS]
    server_view = [f for f in responses if f.traffic_direction == flow_pb2.INGRESS]
    assert [(f.l7.http.url, f.l7.http.code) for f in client_view] == [
        (f"https://127.0.0.1:{port}/ok?token=REDACTED", 200),
        (f"https://127.0.0.1:{port}/missing", 404),
    ]
    assert [f.l7.http.code for f in server_view] == [200, 404]
    assert {ext(f).process.pid for f in client_view} == {os.getpid()}
    assert {ext(f).process.pid for f in server_view} == {server.pid}
    first = client_view[0]
    assert (first.IP.source, first.l4.TCP.source_port, first.IP.destination) == (
        "127.0.0.1",
        port,
        "127.0.0.1",
    )
    assert (
        first.is_reply.value and first.l7.latency_ns > 0 and ext(first).process_side == Ext.SIDE_DESTINATION
    )
    assert [(h.key, h.value) for h in first.l7.http.headers] == [("User-Agent", "tls-test/1")]
    assert "s3cret" not in str(seen)
    assert sidecar.flush()
    families = {f.name: f for f in sidecar.stats.snapshots()[0].families}
    counted = counters(sidecar)
    assert counted["tls.events_sent"] >= 8 and counted["tls.events_lost"] == 0
    capacity = {
        dict(p.attributes)["map"]: p.value for p in families["hubble_otlp.sidecar.bpf.map.max_entries"].points
    }
    assert capacity["tls_calls"] == sidecar.options.l7_pending


def test_payload_read_is_bounded_per_packet(sidecar, stub, web) -> None:  # type: ignore[no-untyped-def]
    _, address = web
    since = time.time_ns()
    padding = "p" * (2 * sidecar.options.l7_payload_bytes)
    request = get("/status/200", f"X-Padding: {padding}\r\nX-Request-Id: after-the-cut\r\n")
    assert request.index(b"X-Request-Id") > sidecar.options.l7_payload_bytes
    exchange(address, request, responses=1)
    seen = follow(stub, lambda s: bool(http_flows(s)[1]), since, *on_port(address[1]))
    [flow] = http_flows(seen)[0]
    # The request line and the headers before the cut are read; nothing after it.
    assert flow.l7.http.url == "http://web.test/status/200"
    assert [h.key for h in flow.l7.http.headers] == ["User-Agent"]
    [response] = http_flows(seen)[1]
    assert response.l7.http.code == 200  # the response still pairs with the cut request


@pytest.mark.prerequisite(None if shutil.which("setpriv") else "setpriv (util-linux) is not installed")
def test_probe_check_without_net_raw_reports_the_socket_filter_and_keeps_the_rest() -> None:
    # Root without CAP_NET_RAW (dropped from the bounding set before exec), as in a container that
    # was not granted it: the packet socket cannot be opened, everything else attaches.
    result = subprocess.run(
        ["setpriv", "--bounding-set=-net_raw", sys.executable, "-m", "hubble_bridge.cli", "sidecar",
         "--probe-check"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert (
        "socket filter lo: unavailable (packet socket: Operation not permitted (needs CAP_NET_RAW))" in lines
    )
    assert any(line.startswith("tracepoint sock:inet_sock_set_state: attached") for line in lines)
    assert any(line.startswith("uprobe ") for line in lines), result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_dns_over_ipv6_to_a_server_in_the_namespace(sidecar, stub, veth) -> None:  # type: ignore[no-untyped-def]
    # This host asks: the query leaves on the veth and the answer arrives on it; both are seen there.
    since = time.time_ns()
    proc, port = start(*in_ns(sys.executable, "tests/dns_server.py", PEER6, str(ALT_PORT)))
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.sendto(_query("www.test.", 1), (PEER6, port))
            client.recv(4096)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    follow(stub, lambda s: bool(dns_flows(s, "www.test.")[1]), since, *on_port(port))
    assert sidecar.flush()
    [request], [response] = dns_flows(flows(stub, *on_port(port)), "www.test.")
    assert (request.IP.source, request.IP.destination, request.IP.ipVersion) == (HOST6, PEER6, flow_pb2.IPv6)
    assert (request.traffic_direction, request.interface.name) == (flow_pb2.EGRESS, veth)
    assert list(response.l7.dns.ips) == ["192.0.2.10", "192.0.2.11"] and response.l7.latency_ns > 0
