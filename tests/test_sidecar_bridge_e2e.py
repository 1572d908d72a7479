"""The sidecar and the bridge as users run them: real eBPF flows -> bridge -> a real OTLP receiver.

`hubble-otlp sidecar` counts loopback traffic with XDP and serves it over Hubble's API;
`hubble-otlp bridge --relay <sidecar>` reads it unchanged and maps the sidecar's byte and
packet counters (carried in Flow.extensions) to metrics. Needs root and BCC (CI has both).
"""

from __future__ import annotations

import signal
import socket
import urllib.request

import pytest

from hubble_bridge.sidecar.bccload import missing_prerequisite
from tests.otlp_receiver import OtlpReceiver, attrs, latest_points
from tests.procs import CliProcess, free_port

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
        with OtlpReceiver() as receiver:
            bridge = CliProcess(
                "bridge", "--relay", f"127.0.0.1:{port}", "--otlp-endpoint", receiver.grpc_endpoint,
                "--otlp-insecure", env={"OTEL_METRIC_EXPORT_INTERVAL": "300"},
            )  # fmt: skip
            bridge.wait_for_line("connected to")
            target = ("127.0.0.1", free_port())  # nobody listens: only our datagrams go there
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for _ in range(DATAGRAMS):
                    sock.sendto(b"x" * PAYLOAD, target)
            assert receiver.wait_for(
                lambda: udp_counter(receiver, "hubble_otlp.sidecar.flow.packets") >= DATAGRAMS, timeout=60
            ), bridge.output + sidecar.output
            assert udp_counter(receiver, "hubble_otlp.sidecar.flow.bytes") >= DATAGRAMS * (
                PAYLOAD + IP_UDP_HEADERS
            )
            processed = latest_points(receiver, "hubble.flows_processed")
            assert any(attrs(p.attributes).get("protocol") == "UDP" for p in processed)
            assert bridge.stop() == 0, bridge.output
    finally:
        assert sidecar.stop(signal.SIGTERM) == 0, sidecar.output


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
