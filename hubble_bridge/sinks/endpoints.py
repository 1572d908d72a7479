"""The bridge's HTTP endpoints: Prometheus /metrics, and /healthz and /readyz for Kubernetes probes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from hubble_bridge.sinks.http_server import HttpEndpoint
from hubble_bridge.sinks.prometheus import metrics_route
from hubble_bridge.telemetry import MetricsSnapshot

log = logging.getLogger("hubble_bridge")

# (ready, reason): the reason is the body of /readyz
Readiness = Callable[[], tuple[bool, str]]


def start_endpoints(
    metrics_listen: str,
    health_listen: str,
    collect: Callable[[], Sequence[MetricsSnapshot]],
    readiness: Readiness,
) -> list[HttpEndpoint]:
    """Start what is configured (an empty address: not served); the caller stops them."""
    endpoints: list[HttpEndpoint] = []
    if metrics_listen:
        endpoint = HttpEndpoint(metrics_listen, {"/metrics": metrics_route(collect)})
        host, port = endpoint.start()
        log.info("Prometheus metrics on http://%s:%d/metrics", host, port)
        endpoints.append(endpoint)
    if health_listen:

        def healthz(_headers: dict[str, str]) -> tuple[int, str, bytes]:
            return 200, "text/plain", b"ok\n"

        def readyz(_headers: dict[str, str]) -> tuple[int, str, bytes]:
            ready, reason = readiness()
            return (200 if ready else 503), "text/plain", reason.encode() + b"\n"

        endpoint = HttpEndpoint(health_listen, {"/healthz": healthz, "/readyz": readyz})
        host, port = endpoint.start()
        log.info("health endpoints on http://%s:%d/healthz and /readyz", host, port)
        endpoints.append(endpoint)
    return endpoints
