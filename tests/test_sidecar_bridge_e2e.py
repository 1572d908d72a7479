"""The sidecar and the bridge as users run them: real eBPF flows -> bridge -> a real OTLP receiver.

`hubble-otlp sidecar` counts loopback traffic with XDP and serves it over Hubble's API;
`hubble-otlp bridge --relay <sidecar>` reads it unchanged and maps the sidecar's byte and
packet counters (carried in Flow.extensions) to metrics. Needs root and BCC (CI has both).
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from hubble_bridge.sidecar.bccload import missing_prerequisite
from tests.dns_server import encode_name
from tests.otlp_receiver import OtlpReceiver, attrs, latest_points
from tests.procs import REPO, CliProcess, free_port

MISSING = missing_prerequisite()
pytestmark = pytest.mark.prerequisite(MISSING and f"real eBPF: {MISSING}")

DATAGRAMS, PAYLOAD = 25, 100
IP_UDP_HEADERS = 28


def udp_counter(receiver: OtlpReceiver, name: str) -> int:
    return sum(
        p.as_int
        for p in latest_points(receiver, name)
        if attrs(p.attributes).get("protocol") == "UDP" and attrs(p.attributes).get("interface") == "lo"
    )


def test_bridge_maps_sidecar_flows_with_byte_and_packet_counters() -> None:
    port = free_port()
    sidecar = CliProcess("sidecar", "--interface", "lo", "--listen", f"127.0.0.1:{port}", "--interval", "0.5")
    try:
        sidecar.wait_for_line(r"flows every .* on 127\.0\.0\.1")
        # The bridge is killed on the way out if an assertion fails first.
        with OtlpReceiver() as receiver, CliProcess(
            "bridge", "--relay", f"127.0.0.1:{port}", "--otlp-endpoint", receiver.grpc_endpoint,
            "--otlp-insecure", env={"OTEL_METRIC_EXPORT_INTERVAL": "300"},
        ) as bridge:  # fmt: skip
            bridge.wait_for_line("connected to")
            target = ("127.0.0.1", free_port())  # nobody listens: only our datagrams go there
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for _ in range(DATAGRAMS):
                    sock.sendto(b"x" * PAYLOAD, target)
            counted = receiver.wait_for(
                lambda: udp_counter(receiver, "hubble_otlp.sidecar.flow.packets") >= DATAGRAMS, timeout=60
            )
            seen = [  # what the receiver holds, for a failure to say
                (attrs(p.attributes), p.as_int)
                for p in latest_points(receiver, "hubble_otlp.sidecar.flow.packets")
            ]
            assert counted, f"{seen}\n{bridge.output}\n{sidecar.output}"
            assert udp_counter(receiver, "hubble_otlp.sidecar.flow.bytes") >= DATAGRAMS * (
                PAYLOAD + IP_UDP_HEADERS
            )
            processed = latest_points(receiver, "hubble.flows_processed")
            assert any(attrs(p.attributes).get("protocol") == "UDP" for p in processed)
            assert bridge.stop() == 0, bridge.output
    finally:
        assert sidecar.stop(signal.SIGTERM) == 0, sidecar.output


# A one-shot HTTP server process: the status comes from the path (/status/503).
HTTP_SERVER = r"""
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(int(self.path.split("?")[0].rsplit("/", 1)[1]))
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer((sys.argv[1], 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def started(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def dns_query(name: str, address: tuple[str, int]) -> bytes:
    query = bytes.fromhex("0a0b01000001000000000000") + encode_name(name) + b"\0\1\0\1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(query, address)
        return client.recv(4096)


def test_bridge_maps_sidecar_dns_and_http_flows_to_spans_and_metrics() -> None:
    dns_port = free_udp_port("127.77.23.1")
    dns, _ = started(sys.executable, "tests/dns_server.py", "127.77.23.1", str(dns_port))
    web, web_port = started(sys.executable, "-c", HTTP_SERVER, "127.77.23.2")
    port = free_port()
    bridge: CliProcess | None = None
    sidecar = CliProcess(
        "sidecar", "--interface", "lo", "--listen", f"127.0.0.1:{port}", "--interval", "0.5",
        "--dns-port", str(dns_port),
    )  # fmt: skip
    try:
        sidecar.wait_for_line(r"flows every .* on 127\.0\.0\.1")
        with OtlpReceiver() as receiver:
            bridge = CliProcess(
                # From the start of the sidecar's buffer: nothing sent before GetFlows began is missed.
                "bridge", "--relay", f"127.0.0.1:{port}", "--since", "2000-01-01T00:00:00Z",
                "--otlp-endpoint", receiver.grpc_endpoint, "--otlp-insecure",
                env={"OTEL_METRIC_EXPORT_INTERVAL": "300", "OTEL_BSP_SCHEDULE_DELAY": "200"},
            )  # fmt: skip
            bridge.wait_for_line("connected to")
            dns_query("www.test.", ("127.77.23.1", dns_port))
            dns_query("nope.test.", ("127.77.23.1", dns_port))
            connection = http.client.HTTPConnection("127.77.23.2", web_port, timeout=5)
            for status in (200, 503):
                connection.request("GET", f"/status/{status}?key=s3cret")
                connection.getresponse().read()
            connection.close()

            def mine() -> list:
                return [
                    s for s in receiver.spans()
                    if attrs(s.attributes).get("dns.question.name") in ("www.test", "nope.test")
                    or "127.77.23.2" in str(attrs(s.attributes).get("url.full", ""))
                ]  # fmt: skip

            assert receiver.wait_for(lambda: len(mine()) >= 4, timeout=60), bridge.output + sidecar.output
            spans = {(s.name, attrs(s.attributes).get("http.response.status_code", 0)): s for s in mine()}
            dns_span = next(s for s in mine() if attrs(s.attributes)["dns.question.name"] == "www.test")
            assert dns_span.name == "DNS A" and attrs(dns_span.attributes)["dns.answers"] == [
                "192.0.2.10", "192.0.2.11",
            ]  # fmt: skip
            nx = next(s for s in mine() if attrs(s.attributes).get("dns.question.name") == "nope.test")
            assert nx.status.code == 2  # NXDOMAIN is an error
            ok, failed = spans[("GET", 200)], spans[("GET", 503)]
            assert failed.status.code == 2 and "s3cret" not in str(failed)
            assert (
                attrs(ok.attributes)["url.full"] == f"http://127.77.23.2:{web_port}/status/200?key=REDACTED"
            )
            # The sidecar's latency: from the request's packet to the answer's.
            for span in (dns_span, ok, failed):
                assert span.end_time_unix_nano > span.start_time_unix_nano
            assert receiver.wait_for(
                lambda: (
                    bool(latest_points(receiver, "hubble.dns_responses"))
                    and bool(latest_points(receiver, "hubble.http_requests"))
                ),
                timeout=60,
            ), bridge.output
            rcodes = {attrs(p.attributes)["rcode"] for p in latest_points(receiver, "hubble.dns_responses")}
            assert {"No Error", "Non-Existent Domain"} <= rcodes
            statuses = {
                attrs(p.attributes)["status"] for p in latest_points(receiver, "hubble.http_requests")
            }
            assert {"200", "503"} <= statuses
            assert bridge.stop() == 0, bridge.output
    finally:
        if bridge is not None and bridge.proc.poll() is None:
            bridge.proc.kill()
        for proc in (dns, web):
            proc.kill()
            proc.wait(timeout=10)
        assert sidecar.stop(signal.SIGTERM) == 0, sidecar.output


def free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def test_sidecar_answers_the_kubelets_http_probes_while_it_serves() -> None:
    """The chart probes the sidecar over HTTP (helm/hubble-otlp/templates/_sidecar.tpl), not by exec."""
    port, health = free_port(), free_port()
    sidecar = CliProcess(
        "sidecar",
        "--interface",
        "lo",
        "--listen",
        f"127.0.0.1:{port}",
        "--health-listen",
        f"127.0.0.1:{health}",
    )
    try:
        sidecar.wait_for_line(r"flows every .* on 127\.0\.0\.1")
        for path in ("/readyz", "/healthz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{health}{path}", timeout=10) as response:
                assert (response.status, response.read()) == (200, b"ok\n"), path
    finally:
        assert sidecar.stop(signal.SIGTERM) == 0, sidecar.output
    with pytest.raises(OSError):  # stopped with the sidecar
        urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=10)
