"""What the capture costs: the kernel's run count and run time per BPF program, map fill levels.

The kernel counts program runs only while BPF statistics are on. BPF_ENABLE_STATS
turns them on for as long as the returned descriptor is open, so they go off by
themselves when the sidecar exits, even killed; kernels without it fall back to
the kernel.bpf_stats_enabled sysctl, restored on close.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from hubble_bridge.sidecar.bpfsys import enable_run_time_stats
from hubble_bridge.telemetry import MetricFamily, MetricKind, MetricsSnapshot, NumberPoint, make_resource

PREFIX = "hubble_otlp.sidecar."
SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


class BpfStatsSwitch:
    """Turns the kernel's BPF run-time statistics on for this process's lifetime."""

    def __init__(self) -> None:
        self._fd = -1
        self._restore: str | None = None
        self.how = "off"

    def enable(self) -> str:
        try:
            self._fd, self.how = enable_run_time_stats(), "BPF_ENABLE_STATS"
            return self.how
        except OSError:
            pass
        try:
            previous = SYSCTL.read_text().strip()
            if previous != "1":
                SYSCTL.write_text("1")
                self._restore = previous
            self.how = "kernel.bpf_stats_enabled"
        except OSError as exc:
            self.how = f"unavailable ({exc.strerror})"
        return self.how

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._restore is not None:
            with contextlib.suppress(OSError):
                SYSCTL.write_text(self._restore)
            self._restore = None


def program_stats(fd: int) -> tuple[int, int]:
    """(run count, run time in ns) of the BPF program behind `fd`, from its fdinfo."""
    runs = run_time = 0
    try:
        for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "run_cnt":
                runs = int(value)
            elif key == "run_time_ns":
                run_time = int(value)
    except (OSError, ValueError):
        pass
    return runs, run_time


class SelfStats:
    """The latest self-metrics as MetricFamily records, rebuilt by the run loop every interval."""

    def __init__(self, node_name: str) -> None:
        self.start_ns = time.time_ns()
        self.resource = make_resource({"service.name": "hubble-otlp-sidecar", "host.name": node_name})
        self._families: list[MetricFamily] = []
        self.counters: dict[str, int] = {}  # cumulative user-space counts, e.g. flows served

    def update(
        self,
        programs: dict[str, int],
        maps: dict[str, tuple[int, int]],
        kernel_counters: dict[str, int],
    ) -> None:
        """programs: name -> fd; maps: name -> (entries, max entries); kernel counters by name."""
        runs, run_time = [], []
        for name, fd in sorted(programs.items()):
            count, nanos = program_stats(fd)
            attributes = (("program", name),)
            runs.append(NumberPoint(attributes, count))
            run_time.append(NumberPoint(attributes, nanos / 1e9))
        entries = [NumberPoint((("map", name),), used) for name, (used, _) in sorted(maps.items())]
        capacity = [NumberPoint((("map", name),), size) for name, (_, size) in sorted(maps.items())]
        counted = {**kernel_counters, **self.counters}
        events = [NumberPoint((("counter", name),), value) for name, value in sorted(counted.items())]
        start = self.start_ns
        self._families = [
            MetricFamily(
                PREFIX + "bpf.program.runs", "Runs of each BPF program", "1", MetricKind.COUNTER, runs, start
            ),
            MetricFamily(
                PREFIX + "bpf.program.run_time",
                "CPU time spent in each BPF program",
                "s",
                MetricKind.COUNTER,
                run_time,
                start,
            ),
            MetricFamily(
                PREFIX + "bpf.map.entries",
                "Entries in each BPF map at the last drain",
                "1",
                MetricKind.GAUGE,
                entries,
                start,
            ),
            MetricFamily(
                PREFIX + "bpf.map.max_entries",
                "Capacity of each BPF map",
                "1",
                MetricKind.GAUGE,
                capacity,
                start,
            ),
            MetricFamily(
                PREFIX + "events",
                "Capture counters: packets, flows, events sent and lost",
                "1",
                MetricKind.COUNTER,
                events,
                start,
            ),
        ]

    def snapshots(self) -> list[MetricsSnapshot]:
        return [MetricsSnapshot(self.resource, time.time_ns(), list(self._families))]
