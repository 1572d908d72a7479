"""`hubble-otlp demo`: the whole pipeline on one machine, no cluster needed.

A generator produces realistic flows at --rate into an in-process Observer
server (the replay relay), the bridge reads them over real gRPC exactly as it
reads Hubble Relay, and writes OTLP JSON lines plus a Prometheus endpoint.
A live summary line says what is flowing and where to look.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

from hubble_bridge.config import load_config
from hubble_bridge.generator import generate_responses
from hubble_bridge.pipeline import Bridge
from hubble_bridge.server.observer import ObserverServer
from hubble_bridge.server.store import EventStore

log = logging.getLogger("hubble_bridge.demo")
TICK_S = 0.05


class _FlowFeeder(threading.Thread):
    """Appends generated flows to the store at a steady rate, with event times close to now."""

    def __init__(self, store: EventStore, rate: float, seed: int) -> None:
        super().__init__(name="demo-feeder", daemon=True)
        self.store = store
        self.rate = rate
        self.stop_event = threading.Event()
        self._flows = generate_responses(10**12, seed=seed, start_ns=time.time_ns(), flows_per_second=rate)

    def run(self) -> None:
        started = time.monotonic()
        sent = 0
        while not self.stop_event.wait(TICK_S):
            due = int((time.monotonic() - started) * self.rate) - sent
            if due > 0:
                self.store.extend(next(self._flows) for _ in range(due))
                sent += due


def run_demo(args: argparse.Namespace) -> int:
    out_dir = Path(args.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / "telemetry.otlp.jsonl"
    output.unlink(missing_ok=True)

    store = EventStore(max_flows=65535)
    server = ObserverServer(store, "127.0.0.1:0")
    address = server.start()
    feeder = _FlowFeeder(store, args.rate, args.seed)
    feeder.start()

    config = load_config(
        {
            "source": {"relay": address},
            "export": {
                "otlp": False,
                "output_file": str(output),
                "flush_interval_s": 1.0,
                "metric_interval_s": 5.0,
            },
            "metrics_listen": args.metrics_listen,
        },
        environ={},
    )
    from hubble_bridge.app import _install_signal_handlers, _start_endpoints, build_bridge

    bridge = build_bridge(config)
    endpoints = _start_endpoints(config, bridge)
    _install_signal_handlers(bridge)
    from hubble_bridge.compiled import describe

    print(
        f"hubble-otlp demo: replay relay on {address} generating {args.rate:.0f} flows/s\n"
        f"  hot path:                         {describe()}\n"
        f"  OTLP JSON (spans, metrics, logs): {output}\n"
        f"  Prometheus metrics:               http://{args.metrics_listen}/metrics\n"
        f"  try: hubble-otlp check --relay {address}\n"
        + (f"  stopping after {args.duration:.0f}s" if args.duration else "  Ctrl-C to stop"),
        file=sys.stderr,
    )
    summary = threading.Thread(target=_summarise, args=(bridge, feeder.stop_event), daemon=True)
    summary.start()
    if args.duration:
        timer = threading.Timer(args.duration, bridge.stop)
        timer.daemon = True
        timer.start()
    try:
        code = bridge.run()
    finally:
        feeder.stop_event.set()
        server.stop(grace=0.5)
        for endpoint in endpoints:
            endpoint.stop()
    stats = bridge.stats
    print(
        f"\ndone: {stats.total('flows.received')} events, "
        f"{stats.sum_where('export.items', signal='traces', result='ok'):.0f} spans, "
        f"{stats.sum_where('export.items', signal='logs', result='ok'):.0f} log records written to {output}",
        file=sys.stderr,
    )
    return code


def _summarise(bridge: Bridge, stop: threading.Event) -> None:
    last_n, last_t = 0, time.monotonic()
    while not stop.wait(2.0):
        n = bridge.stats.total("flows.received")
        now = time.monotonic()
        rate = (n - last_n) / (now - last_t)
        last_n, last_t = n, now
        snapshot = bridge.snapshot()
        series = sum(len(f.points) for f in snapshot.families if f.name.startswith("hubble."))
        stats = bridge.stats
        line = (
            f"{rate:8.0f} flows/s | {n} flows | "
            f"{stats.sum_where('export.items', signal='traces', result='ok'):.0f} spans | "
            f"{stats.sum_where('export.items', signal='logs', result='ok'):.0f} logs | "
            f"{series} series | {stats.total('flows.dropped')} dropped"
        )
        # one live line on a terminal, a line per report otherwise
        sys.stderr.write(f"\r{line}  " if sys.stderr.isatty() else f"{line}\n")
        sys.stderr.flush()
