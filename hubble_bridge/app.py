"""Entry points of `bridge` and `convert`: build the source, sinks and endpoints from config, then run."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from hubble_bridge.config import BridgeConfig, SourceConfig
from hubble_bridge.errors import BridgeError
from hubble_bridge.filters import FlowFilterSet, source_filters
from hubble_bridge.pipeline import Bridge, Sink
from hubble_bridge.selfmetrics import SelfMetrics
from hubble_bridge.sources.base import FlowSource

log = logging.getLogger("hubble_bridge")


def build_filters(config: BridgeConfig) -> FlowFilterSet | None:
    return source_filters(config.source.whitelist, config.source.blacklist)


def build_bridge(config: BridgeConfig) -> Bridge:
    """The configured source, mapping and sinks, sharing one set of self-metrics."""
    stats = SelfMetrics(start_time_ns=time.time_ns())
    return Bridge(config, build_source(config, stats.add), build_sinks(config), stats=stats)


def use_reader_process(source: SourceConfig) -> bool:
    """`reader_process`: on, off, or auto (on when this process may run on two or more CPUs)."""
    if source.reader_process == "auto":
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return (usable or 1) >= 2
    return source.reader_process == "on"


def build_source(config: BridgeConfig, count: Callable[[str], None]) -> FlowSource:
    """Relay (filters applied server-side, as `hubble observe` does) or files (filtered here)."""

    def report(problem: object) -> None:
        count("input.invalid")
        log.warning("skipped %s", problem)

    # Files read once (convert, a bridge over files) are parsed in the reader process too: the JSON
    # parse is most of their cost. A followed file stays in process: it is read at the rate it grows.
    if (config.source.relay or not config.source.follow) and use_reader_process(config.source):
        from hubble_bridge.sources.reader_process import ReaderProcessSource

        return ReaderProcessSource(
            config.source, on_reconnect=lambda: count("source.reconnects"), on_problem=report
        )
    if config.source.relay:
        from hubble_bridge.sources.resilient import ResilientRelaySource

        return ResilientRelaySource(config.source, on_reconnect=lambda: count("source.reconnects"))

    from hubble_bridge.sources.files import FileSource

    filters = build_filters(config)
    return FileSource(
        config.source.files,
        follow=config.source.follow,
        accept=filters.matches if filters else None,
        on_problem=report,
    )


def build_sinks(config: BridgeConfig) -> list[Sink]:
    from hubble_bridge.sinks.otlp_export import OtlpExporter
    from hubble_bridge.sinks.otlp_json import OtlpJsonFileSink
    from hubble_bridge.sinks.select import SignalSelect

    export = config.export
    sinks: list[Sink] = []
    if export.otlp:
        exporter: Sink = OtlpExporter(config.otlp)
        if set(export.otlp_signals) != {"traces", "metrics", "logs"}:
            exporter = SignalSelect(exporter, export.otlp_signals)
        sinks.append(exporter)
    if export.output_file:
        sinks.append(OtlpJsonFileSink(export.output_file))
    if export.console:
        sinks.append(SignalSelect(OtlpJsonFileSink("-"), export.console))
    return sinks


def run_bridge(config: BridgeConfig) -> int:
    bridge = build_bridge(config)
    election = _Election(config, bridge) if config.leader_election.enabled else None
    endpoints = _start_endpoints(config, bridge, election)
    stopping = threading.Event()
    _install_signal_handlers(bridge, stopping)
    where = config.source.relay or ", ".join(config.source.files)
    try:
        if election is not None and not election.wait_for_leadership(stopping):
            return 0  # stopped while standing by
        log.info("bridging flows from %s", where)
        code = bridge.run()
    finally:
        if election is not None:
            election.release()  # after the last export, so the next leader starts where this one ended
        for endpoint in endpoints:
            endpoint.stop()
    if election is not None and election.lost:
        log.error("lost the leader lease: exiting so that a standby takes over")
        code = 1
    log.info("stopped: %s", bridge.summary())
    if bridge.error:
        print(f"hubble-otlp: error: {bridge.error}", file=sys.stderr)
    return code


class _Election:
    """Only the holder of a Kubernetes Lease reads Relay and exports; standbys wait, ready."""

    def __init__(self, config: BridgeConfig, bridge: Bridge) -> None:
        from hubble_bridge.k8s.leader import LeaderElector

        self.bridge = bridge
        self.elector = LeaderElector(config.leader_election.resolved(dict(os.environ)))
        self.leading = threading.Event()
        self.lost = False
        self._thread = threading.Thread(
            target=self.elector.run, args=(self.leading.set, self._stopped_leading), daemon=True
        )

    def wait_for_leadership(self, stopping: threading.Event) -> bool:
        self._thread.start()
        log.info("standing by for the leader lease")
        while not self.leading.wait(0.2):
            if stopping.is_set():
                return False
        return True

    def _stopped_leading(self) -> None:
        if not self.bridge.stopping:
            self.lost = True
            self.bridge.stop()

    def release(self) -> None:
        self.elector.stop()
        self._thread.join(10.0)

    @property
    def standby(self) -> bool:
        return not self.leading.is_set()


def _start_endpoints(config: BridgeConfig, bridge: Bridge, election: _Election | None = None) -> list[Any]:
    from hubble_bridge.sinks.endpoints import start_endpoints

    def readiness() -> tuple[bool, str]:
        if election is not None and election.standby:
            return True, "standby: waiting for the leader lease"
        if bridge.ready:
            return True, "ready"
        return False, "not ready: source not connected or export failing"

    return start_endpoints(
        config.metrics_listen, config.health_listen, lambda: [bridge.snapshot()], readiness
    )


def _install_signal_handlers(bridge: Bridge, stopping: threading.Event | None = None) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s: flushing and stopping", signal.Signals(signum).name)
        if stopping is not None:
            stopping.set()
        bridge.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def run_convert(args: argparse.Namespace) -> int:
    """Flow files in, OTLP JSON lines out: the same telemetry the bridge would export."""
    from hubble_bridge.config import load_config

    layer: dict[str, Any] = {
        "source": {"files": list(args.files)},
        "export": {"otlp": False, "output_file": args.output},
    }
    if args.cluster_name:
        layer["cluster_name"] = args.cluster_name
    for name, key in (("allow", "whitelist"), ("deny", "blacklist")):
        values: Sequence[str] | None = getattr(args, name)
        if values:
            from hubble_bridge.cli import _json_arg

            layer["source"][key] = [_json_arg(v, f"--{name}") for v in values]
    config = load_config(layer, args.config, environ={})
    bridge = build_bridge(config)
    progress = _Progress(bridge) if sys.stderr.isatty() else None
    if progress:
        progress.start()
    try:
        code = bridge.run()
    finally:
        if progress:
            progress.stop()
    stats = bridge.stats
    print(
        f"converted {stats.total('flows.received')} events from {len(args.files)} file(s) to {args.output}; "
        f"{stats.total('input.invalid')} invalid line(s) skipped",
        file=sys.stderr,
    )
    if bridge.error:
        raise BridgeError(bridge.error)
    return code


class _Progress:
    """A progress bar on a terminal's stderr: share of the files' bytes read, events, rate."""

    WIDTH = 30

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        sys.stderr.write("\r\033[K")

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(0.2):
            source = self.bridge.source
            total, done = getattr(source, "bytes_total", 0), getattr(source, "bytes_read", 0)
            events = self.bridge.stats.total("flows.received")
            rate = events / max(time.monotonic() - started, 1e-3)
            fraction = min(done / total, 1.0) if total else 0.0
            filled = int(fraction * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            sys.stderr.write(f"\r\033[Kconverting [{bar}] {fraction:4.0%}  {events} events  {rate:,.0f}/s")
            sys.stderr.flush()
