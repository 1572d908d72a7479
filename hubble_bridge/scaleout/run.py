"""`hubble-otlp bridge` in scale-out mode: the parent's metric export, /metrics, health and signals."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from hubble_bridge.config import BridgeConfig
from hubble_bridge.mapping.merge import WORKER_ATTRIBUTE
from hubble_bridge.scaleout.config import ScaleOutConfig
from hubble_bridge.scaleout.parent import ScaleOut
from hubble_bridge.telemetry import MetricFamily, MetricKind, MetricsSnapshot, NumberPoint

log = logging.getLogger("hubble_bridge.scaleout")


def run_scaleout(config: BridgeConfig, streams: ScaleOutConfig, workers: int) -> int:
    """`hubble-otlp bridge` over several streams in `workers` processes; blocks until SIGTERM or Ctrl-C."""
    from hubble_bridge.app import build_sinks

    streams.validate()
    scale = ScaleOut(config, streams, workers)
    sinks = build_sinks(config) if config.export.metrics else []
    endpoints = _start_endpoints(config, scale)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: scale.stop())
    where = (streams.peers and f"the nodes of peer service {streams.peers}") or ", ".join(streams.relays)
    log.info("bridging flows from %s in %d worker processes", where, workers)
    scale.start()
    try:
        while not scale.wait(config.export.metric_interval_s):
            _export_metrics(sinks, scale)
        _export_metrics(sinks, scale)  # the final totals, with every worker's last snapshot
    finally:
        for sink in sinks:
            sink.shutdown()
        for endpoint in endpoints:
            endpoint.stop()
    if scale.error:
        print(f"hubble-otlp: error: {scale.error}", file=sys.stderr)
        return 1
    return 0


def _export_metrics(sinks: list[Any], scale: ScaleOut) -> None:
    if not sinks:
        return
    snapshot = collect(scale)
    for sink in sinks:
        try:
            sink.export_metrics([snapshot])
        except Exception as exc:  # a sink must not stop the bridge
            log.error("metrics export failed: %s", exc)


def _start_endpoints(config: BridgeConfig, scale: ScaleOut) -> list[Any]:
    from hubble_bridge.sinks.endpoints import start_endpoints

    def readiness() -> tuple[bool, str]:
        if scale.ready:
            return True, "ready"
        return False, "not ready: peer service not connected or a worker not running"

    return start_endpoints(config.metrics_listen, config.health_listen, lambda: [collect(scale)], readiness)


def collect(scale: ScaleOut) -> MetricsSnapshot:
    """The merged worker metrics plus the parent's own: streams per worker, worker restarts."""
    snapshot = scale.merged()
    per_worker = dict.fromkeys(range(scale.workers), 0)
    for owner in scale.assignment().values():
        per_worker[owner] += 1
    streams = [NumberPoint(((WORKER_ATTRIBUTE, str(w)),), n) for w, n in per_worker.items()]
    start = scale.start_time_ns
    snapshot.families += [
        MetricFamily("hubble_otlp.scaleout.streams", "Flow streams each worker reads.", "1",
                     MetricKind.GAUGE, streams, start),
        MetricFamily("hubble_otlp.scaleout.worker_restarts", "Worker processes restarted after they died.",
                     "1", MetricKind.COUNTER, [NumberPoint((), scale.restarts)], start, observed=True),
    ]  # fmt: skip
    return snapshot
