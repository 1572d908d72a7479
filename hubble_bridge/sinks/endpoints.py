"""HTTP endpoints of the bridge and the sidecar: Prometheus /metrics; /healthz and /readyz for the kubelet.

The probes are plain HTTP GETs the kubelet sends itself, so a probe starts no process in the container.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from hubble_bridge.sinks.http_server import HttpEndpoint
from hubble_bridge.sinks.prometheus import metrics_route
from hubble_bridge.telemetry import MetricsSnapshot

log = logging.getLogger("hubble_bridge")

# (ok, reason): the reason is the body of /readyz (or /healthz)
Readiness = Callable[[], tuple[bool, str]]


def _always_live() -> tuple[bool, str]:
    return True, "ok"


def start_endpoints(
    metrics_listen: str,
    health_listen: str,
    collect: Callable[[], Sequence[MetricsSnapshot]],
    readiness: Readiness,
    liveness: Readiness = _always_live,
) -> list[HttpEndpoint]:
    """Start what is configured (an empty address: not served); the caller stops them.

    /readyz answers `readiness()`, /healthz `liveness()`: 200 when true, 503 when not, the reason as body.
    """
    endpoints: list[HttpEndpoint] = []
    if metrics_listen:
        endpoint = HttpEndpoint(metrics_listen, {"/metrics": metrics_route(collect)})
        host, port = endpoint.start()
        log.info("Prometheus metrics on http://%s:%d/metrics", host, port)
        endpoints.append(endpoint)
    if health_listen:
        endpoint = HttpEndpoint(health_listen, {"/healthz": _probe(liveness), "/readyz": _probe(readiness)})
        host, port = endpoint.start()
        log.info("health endpoints on http://%s:%d/healthz and /readyz", host, port)
        endpoints.append(endpoint)
    return endpoints


def _probe(check: Readiness) -> Callable[[dict[str, str]], tuple[int, str, bytes]]:
    def route(_headers: dict[str, str]) -> tuple[int, str, bytes]:
        ok, reason = check()
        return (200 if ok else 503), "text/plain", reason.encode() + b"\n"

    return route
