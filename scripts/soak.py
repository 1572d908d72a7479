"""Soak: run the bridge at a steady rate for a set time through Relay restarts and backend outages.

    python scripts/soak.py --duration 600 --rate 2000 [--restart-every 120] [--outage-every 150 --outage 20]

Starts a relay (a generator feeding an Observer server, with event times of now, as a live Relay has), the
bridge (`hubble-otlp bridge`, a real subprocess) and a real OTLP receiver; kills the relay with SIGKILL and
starts a new one every --restart-every seconds, and makes the receiver answer UNAVAILABLE for --outage seconds
every --outage-every seconds. Every 10 s it samples the bridge's RSS and its self-metrics from /metrics, and
at the end prints a table and one JSON line: flows generated, received, exported, dropped (by reason), RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubble_bridge.bench.bridge_run import tree_rss_mb  # noqa: E402
from tests.otlp_receiver import OtlpReceiver  # noqa: E402  (a real OTLP receiver, shared with the tests)
from tests.procs import free_port  # noqa: E402


def serve_relay(port: int, rate: float, seed: int) -> None:
    """The relay process: generated flows at `rate` with times of now; keeps its count in a file."""
    from hubble_bridge.generator import generate_responses
    from hubble_bridge.server.observer import ObserverServer
    from hubble_bridge.server.store import EventStore

    store = EventStore(max_flows=65535)
    server = ObserverServer(store, f"127.0.0.1:{port}")
    server.start()
    flows = generate_responses(10**12, seed=seed, start_ns=time.time_ns(), flows_per_second=rate)
    count_file = Path(os.environ["SOAK_COUNT_FILE"])
    print("relay ready", flush=True)
    started, sent = time.monotonic(), 0
    stop = threading.Event()
    while not stop.wait(0.05):
        due = int((time.monotonic() - started) * rate) - sent
        if due > 0:
            store.extend(next(flows) for _ in range(due))
            sent += due
            count_file.write_text(str(sent))


class Relay:
    def __init__(self, port: int, rate: float, seed: int, workdir: Path) -> None:
        self.count_file = workdir / f"relay-{seed}.count"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-relay", str(port), "--rate", str(rate), "--seed", str(seed)],
            env={**os.environ, "SOAK_COUNT_FILE": str(self.count_file)},
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "relay ready"

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        return self.generated

    @property
    def generated(self) -> int:
        try:
            return int(self.count_file.read_text() or 0)
        except (OSError, ValueError):
            return 0


def scrape(port: int) -> dict[str, float]:
    values: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            m = re.match(r"^(hubble_otlp_[a-z_]+)(\{[^}]*\})? ([0-9.e+]+)$", line)
            if m:
                key = m.group(1) + (m.group(2) or "")
                values[key] = float(m.group(3))
    return values


def total(values: dict[str, float], name: str, **labels: str) -> float:
    out = 0.0
    for key, value in values.items():
        if key.split("{")[0] == name and all(f'{k}="{v}"' in key for k, v in labels.items()):
            out += value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--restart-every", type=float, default=120)
    parser.add_argument("--outage-every", type=float, default=150)
    parser.add_argument("--outage", type=float, default=20)
    parser.add_argument("--serve-relay", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_relay:
        serve_relay(args.serve_relay, args.rate, args.seed)
        return 0

    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"hubble-otlp-soak-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    relay_port, metrics_port = free_port(), free_port()
    seed = 1
    relay = Relay(relay_port, args.rate, seed, workdir)
    generated_before = 0
    receiver = OtlpReceiver().start()
    bridge = subprocess.Popen(
        [sys.executable, "-m", "hubble_bridge.cli", "bridge", "--relay", f"127.0.0.1:{relay_port}",
         "--otlp-endpoint", receiver.grpc_endpoint, "--otlp-insecure", "--metrics-listen",
         f"127.0.0.1:{metrics_port}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(workdir / "bridge.log", "w"),  # noqa: SIM115
        env={**os.environ, "OTEL_METRIC_EXPORT_INTERVAL": "5000", "OTEL_EXPORTER_OTLP_TIMEOUT": "2000"},
    )  # fmt: skip
    samples: list[dict[str, float]] = []
    events: list[str] = []
    started = time.monotonic()
    next_restart = started + args.restart_every
    next_outage = started + args.outage_every
    outage_until = 0.0
    tick = threading.Event()
    try:
        while (now := time.monotonic()) < started + args.duration:
            if now >= next_restart:
                generated_before += relay.kill()
                seed += 1
                relay = Relay(relay_port, args.rate, seed, workdir)
                events.append(f"{now - started:6.0f}s relay killed (SIGKILL) and restarted")
                next_restart += args.restart_every
            if now >= next_outage:
                receiver.start_outage()
                outage_until = now + args.outage
                events.append(f"{now - started:6.0f}s backend outage for {args.outage:.0f}s (UNAVAILABLE)")
                next_outage += args.outage_every
            if outage_until and now >= outage_until:
                receiver.end_outage()
                outage_until = 0.0
            last_round = now + 1.0 >= started + args.duration
            if not samples or now - started >= samples[-1]["t"] + 10 or last_round:
                try:
                    values = scrape(metrics_port)
                except OSError:
                    values = {}
                rss, peak = tree_rss_mb(bridge.pid)  # the bridge and its reader process
                samples.append({
                    "t": round(now - started), "rss_mb": round(rss, 1), "peak_rss_mb": round(peak, 1),
                    "received": total(values, "hubble_otlp_flows_received_total"),
                    "dropped": total(values, "hubble_otlp_flows_dropped_total"),
                    "spans_ok": total(values, "hubble_otlp_export_items_total", signal="traces", result="ok"),
                    "spans_dropped": total(values, "hubble_otlp_export_items_total", signal="traces",
                                           result="dropped"),
                })  # fmt: skip
                print(json.dumps(samples[-1]), flush=True)
            tick.wait(1.0)
    finally:
        generated = generated_before + relay.kill()
        bridge.send_signal(signal.SIGTERM)
        code = bridge.wait(60)
        receiver.stop()
    final = samples[-1] if samples else {}
    print("\nevents:\n" + "\n".join(events))
    print(f"\n{'t (s)':>6} {'RSS MB':>8} {'peak MB':>8} {'received':>10} {'spans ok':>10} {'dropped':>8}")
    for s in samples:
        print(
            f"{s['t']:>6} {s['rss_mb']:>8} {s['peak_rss_mb']:>8} {s['received']:>10.0f}"
            f" {s['spans_ok']:>10.0f} {s['spans_dropped'] + s['dropped']:>8.0f}"
        )
    summary = {
        "duration_s": args.duration, "rate": args.rate, "generated": generated,
        "received": final.get("received", 0), "spans_exported_by_receiver": len(receiver.spans()),
        "bridge_exit_code": code, "peak_rss_mb": max((s["peak_rss_mb"] for s in samples), default=0),
        "restarts": sum("restarted" in e for e in events), "outages": sum("outage" in e for e in events),
    }  # fmt: skip
    print(json.dumps(summary))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
