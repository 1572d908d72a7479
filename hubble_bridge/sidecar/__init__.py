"""`hubble-otlp sidecar`: host-level flows from XDP and TCP tracepoints, served over Hubble's Observer API.

run_sidecar(...)     attach, serve GetFlows/ServerStatus/GetNodes until stopped; the exit code
run_probe_check()    print each probe as attached / fallback / unavailable, and why
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from hubble_bridge.errors import BridgeError
from hubble_bridge.k8s.metadata import ClusterMetadata, in_cluster
from hubble_bridge.server.address import serve_until_stopped
from hubble_bridge.server.observer import ObserverServer
from hubble_bridge.sidecar.bccload import SidecarUnavailable
from hubble_bridge.sidecar.features import ProbeState
from hubble_bridge.sidecar.runner import Sidecar, SidecarOptions
from hubble_bridge.sinks.endpoints import start_endpoints
from hubble_bridge.tls import ServerTlsOptions

__all__ = ["Sidecar", "SidecarOptions", "SidecarUnavailable", "run_probe_check", "run_sidecar"]


def run_sidecar(
    interfaces: list[str],
    listen: str,
    interval_s: float,
    *,
    tls: ServerTlsOptions | None,
    map_size: int,
    node_name: str | None,
    metrics_listen: str | None = None,
    health_listen: str | None = None,
    l7: bool = True,
    dns_ports: list[int] | None = None,
    l7_payload_bytes: int = 1024,
    stop: threading.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serves until Ctrl-C, SIGTERM or `stop`; BridgeError (one line) when it cannot start."""
    if not interfaces:
        raise BridgeError("sidecar: name at least one --interface to count flows on (e.g. eth0)")
    options = SidecarOptions(
        list(interfaces), interval_s=interval_s, map_size=map_size, node_name=node_name, l7=l7,
        l7_payload_bytes=l7_payload_bytes,
    )  # fmt: skip
    if dns_ports:
        options.dns_ports = tuple(dict.fromkeys([53, *dns_ports]))
    options.validate()
    metadata = ClusterMetadata.from_cluster(options.resolved_node_name()) if in_cluster() else None
    sidecar = Sidecar(options, metadata=metadata)
    server: ObserverServer | None = None
    serving = threading.Event()

    def liveness() -> tuple[bool, str]:
        if serving.is_set() and not sidecar.capturing:
            return False, "the capture loop has stopped"
        return True, "ok"

    def readiness() -> tuple[bool, str]:
        if not serving.is_set():
            return False, "attaching probes (BCC compiles them first)"
        return liveness()

    # Up before the probes attach, which takes a while (BCC compiles): the kubelet sees "not ready yet".
    endpoints = start_endpoints(
        metrics_listen or "", health_listen or "", sidecar.stats.snapshots, readiness, liveness
    )
    stop = stop or threading.Event()
    try:
        statuses = sidecar.start()
        for status in statuses:
            print(f"hubble-otlp sidecar: {status.line()}", file=sys.stderr)
        if not sidecar.attached:
            raise SidecarUnavailable("sidecar: no probe could be attached (see the lines above)")
        server = ObserverServer(sidecar.store, listen, tls)
        address = server.start()
        serving.set()
        k8s = "with Kubernetes metadata" if metadata else "without Kubernetes metadata"
        print(
            f"hubble-otlp sidecar: node {sidecar.node_name}, {k8s}, flows every {interval_s:g}s on {address}",
            file=sys.stderr,
        )
        serve_until_stopped(address, stop, on_ready)
    finally:
        for endpoint in endpoints:
            endpoint.stop()
        sidecar.stop()
        if server is not None:
            server.stop(grace=1.0)
    return 0


def run_probe_check(interfaces: list[str] | None = None) -> int:
    """Attaches every probe once (XDP on `interfaces`, default lo), prints each, detaches.

    Exit code 0 when every probe is attached or has a working fallback, 1 otherwise.
    """
    sidecar = Sidecar(SidecarOptions(list(interfaces or ["lo"]), map_size=1024))
    try:
        statuses = sidecar.start()
    finally:
        sidecar.stop()
    for status in statuses:
        print(status.line())
    return 1 if any(s.state is ProbeState.UNAVAILABLE for s in statuses) else 0
