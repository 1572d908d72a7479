"""The measured bridge, in its own process so that its peak RSS is its own.

`python -m hubble_bridge.bench.bridge_run RELAY OTLP_ENDPOINT COUNT` runs the real
Bridge with the bridge command's relay source (first COUNT flows) and OtlpExporter
over gRPC, and prints one JSON line: events, seconds (from the stream's opening to
the last export done), rss_mb (VmHWM, plus the reader process's peak) and
rss_samples_mb (VmRSS of both, once a second), cpu_s (user + system CPU of the
bridge process from the run's start, and all of the reader process's).
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from hubble_bridge.app import build_source
from hubble_bridge.config import load_config
from hubble_bridge.pipeline import Bridge
from hubble_bridge.selfmetrics import SelfMetrics
from hubble_bridge.sinks.otlp_export import OtlpExporter

E2E_CONNECT_S = 60.0


def peak_rss_mb() -> float:
    """The process's peak resident set: VmHWM on Linux, else ru_maxrss."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def children_peak_rss_mb() -> float:
    """The peak RSS of the largest child that has ended (the reader process, after the run)."""
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def tree_rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """VmRSS and VmHWM of a process and all its descendants (the reader process), added up.

    (0, 0) off Linux. A peak added up this way bounds the tree's peak from above.
    """
    rss = peak = 0.0
    for proc in [pid, *_descendants(pid)]:
        try:
            lines = Path(f"/proc/{proc}/status").read_text().splitlines()
        except OSError:  # not Linux, or a child that just ended
            continue
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        rss += int(fields["VmRSS"].split()[0]) / 1024
        peak += int(fields["VmHWM"].split()[0]) / 1024
    return rss, peak


def _descendants(pid: int | str) -> list[str]:
    found: list[str] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            found += [child, *_descendants(child)]
    return found


def current_rss_mb() -> float:
    """This process and its children (the reader process), added up."""
    return tree_rss_mb()[0] or peak_rss_mb()


class _RssSampler(threading.Thread):
    """RSS every `every_s`, to show whether memory stays flat over a long run."""

    def __init__(self, every_s: float = 1.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.every_s = every_s
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            self.samples.append(round(current_rss_mb(), 1))


def run(relay: str, otlp_endpoint: str, count: int) -> dict[str, Any]:
    config = load_config(
        {
            "source": {"relay": relay, "first": count},
            "otlp": {"endpoint": otlp_endpoint, "insecure": True, "protocol": "grpc"},
        },
        environ={},
    )
    exporter = OtlpExporter(config.otlp)
    stats = SelfMetrics(start_time_ns=time.time_ns())
    # The source the bridge command builds: with 2+ CPUs, the stream is read in a child process.
    bridge = Bridge(config, build_source(config, stats.add), [exporter], stats=stats)
    sampler = _RssSampler()
    sampler.start()
    opened: list[float] = []

    def note_open() -> None:
        # Timed from the stream's opening, as receive_limit is: starting a reader process is not throughput.
        if bridge.connected.wait(E2E_CONNECT_S):
            opened.append(time.perf_counter())

    watcher = threading.Thread(target=note_open, daemon=True)
    watcher.start()
    cpu_before = _cpu_s(resource.RUSAGE_SELF) + _cpu_s(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    code = bridge.run()
    seconds = time.perf_counter() - (opened[0] if opened else started)
    # The reader process has been joined by now, so RUSAGE_CHILDREN holds all of its CPU.
    cpu = _cpu_s(resource.RUSAGE_SELF) + _cpu_s(resource.RUSAGE_CHILDREN) - cpu_before
    sampler.done.set()
    if code != 0 or bridge.error:
        raise SystemExit(f"bench bridge failed: {bridge.error}")
    stats = exporter.stats()
    return {
        "events": bridge.stats.total("flows.received"),
        "seconds": seconds,
        # the bridge's peak plus the reader process's: an upper bound of the two together
        "rss_mb": peak_rss_mb() + children_peak_rss_mb(),
        "spans_sent": stats["traces"].items_sent,
        "export_failures": sum(s.batches_failed for s in stats.values()),
        "rss_samples_mb": sampler.samples,
        "cpu_s": cpu,
    }


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[2].isdigit():
        print("usage: python -m hubble_bridge.bench.bridge_run RELAY OTLP_ENDPOINT COUNT", file=sys.stderr)
        return 2
    result = run(argv[0], argv[1], int(argv[2]))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
