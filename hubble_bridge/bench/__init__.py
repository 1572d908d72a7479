"""`hubble-otlp bench`: where the bridge's time goes, measured in one run on the same generated flows.

Every rate is events per second on the same deterministic stream (the generator's
realistic mix, about a third L7). The table explains each number; with --json a
last line carries exactly KEYS, for scripts. Method and results: docs/performance.md.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hubble_bridge.api import flow_pb2
from hubble_bridge.bench.source import start_source, write_frames
from hubble_bridge.compiled import describe
from hubble_bridge.errors import ConfigError
from hubble_bridge.generator import generate_responses

__all__ = ["DEFAULT_FLOWS", "KEYS", "run_bench"]

DEFAULT_FLOWS = 100_000
SEED = 1
KEYS = (
    "decode_per_s",
    "receive_limit_per_s",
    "source_per_s",
    "pipeline_per_s",
    "e2e_per_s",
    "naive_per_s",
    "rss_mb",
    "scale_2_streams",
    "receive_cpu_us_per_flow",
    "pipeline_us_per_flow",
    "e2e_cpu_us_per_flow",
    "convert_over_naive",
)
# The convert comparison runs on at most this many of the events (the naive convert takes ~8 s on 60 000).
CONVERT_FLOWS = 60_000
# The source must send this much faster than the bridge's client reads, or it is what was measured.
SOURCE_HEADROOM = 1.5
# (what, the value's key, ">=" or "<=", target); e2e / receive_limit is shown, with no target.
TARGETS = (
    ("pipeline_per_s / naive_per_s", "pipeline_over_naive", ">=", 8.0),
    ("e2e_cpu_us_per_flow", "e2e_cpu_us_per_flow", "<=", 18.0),
    ("convert / naive convert (whole process, wall)", "convert_over_naive", ">=", 3.0),
)


@dataclass
class _Run:
    values: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(KEYS))
    notes: dict[str, str] = field(default_factory=dict)
    flows: int = 0


def run_bench(flows: int, as_json: bool, workers: int) -> int:
    """Measure, print the table (and the JSON line last with --json); returns the exit code."""
    if isinstance(flows, bool) or not isinstance(flows, int) or flows < 1:
        raise ConfigError(f"bench: --flows must be a whole number >= 1, got {flows!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"bench: --workers must be a whole number >= 1, got {workers!r}")
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        # The naive baseline is the one user of the OpenTelemetry SDK: it is an extra, not a dependency.
        raise ConfigError(
            "bench: the naive baseline needs the OpenTelemetry SDK: pip install 'hubble-otlp[bench]'"
        )
    out = sys.stdout
    responses = list(generate_responses(flows, seed=SEED))
    frames = [r.SerializeToString() for r in responses]
    l7 = sum(1 for r in responses if r.flow.Type == flow_pb2.L7)
    del responses
    run = _Run(flows=flows)
    with tempfile.TemporaryDirectory(prefix="hubble-otlp-bench-") as tmp:
        frames_path = Path(tmp) / "frames.bin"
        write_frames(frames_path, frames)
        source = start_source(frames_path)
        try:
            _measure(run, frames, source.address, source.send_rate)
        finally:
            source.close()
        _convert(run, frames[:CONVERT_FLOWS], Path(tmp))
    _judge_source(run, source.kind, source.note)
    _scale(run, workers)
    out.write(_table(run, flows, l7, source.kind))
    if as_json:
        out.write(orjson.dumps({key: _rounded(run.values[key]) for key in KEYS}).decode() + "\n")
    out.flush()
    return 0


def _measure(run: _Run, frames: list[bytes], address: str, send_rate: Any) -> None:
    # Imported here: `python -m hubble_bridge.bench.naive` must not find naive imported by its package.
    from hubble_bridge.bench import measure

    v, notes = run.values, run.notes
    count = len(frames)
    v["decode_per_s"] = measure.decode_rate(frames)
    notes["decode_per_s"] = "protobuf decode alone (upper bound)"
    # The best of two reads: the first also pays for connection and flow-control window warm-up.
    v["receive_limit_per_s"] = max(measure.receive_rate(address, count) for _ in range(2))
    notes["receive_limit_per_s"] = "bridge's gRPC client reading the stream, nothing else (best of 2)"
    v["receive_cpu_us_per_flow"] = min(measure.receive_cpu_us(address, count) for _ in range(2))
    notes["receive_cpu_us_per_flow"] = (
        "CPU of that client reading raw bytes, as the reader process does (best of 2)"
    )
    v["source_per_s"] = send_rate(count)
    v["pipeline_per_s"], v["pipeline_us_per_flow"] = measure.pipeline_run(frames)
    notes["pipeline_per_s"] = "decode, map, aggregate, encode OTLP; in process, no network"
    notes["pipeline_us_per_flow"] = "CPU of the pipeline run above (all its threads) per event"
    e2e = measure.e2e_run(address, count)
    v["e2e_per_s"] = e2e["per_s"]
    v["rss_mb"] = e2e["rss_mb"]
    v["e2e_cpu_us_per_flow"] = e2e["cpu_us_per_flow"]
    notes["e2e_cpu_us_per_flow"] = "CPU of the e2e bridge process (from its run's start) + its reader process"
    notes["e2e_per_s"] = f"source -> bridge process -> OTLP gRPC receiver ({e2e['otlp_requests']} exports)"
    notes["rss_mb"] = f"the e2e bridge's peak RSS, reader process included, after {e2e['events']} events"
    v["naive_per_s"] = measure.naive_rate(frames)
    notes["naive_per_s"] = "SDK span + SDK counter per flow, BatchSpanProcessor, OTLP encoding"


def _convert(run: _Run, frames: list[bytes], tmp: Path) -> None:
    from hubble_bridge.bench import measure

    path = tmp / "flows.jsonl"
    measure.write_jsonl_frames(path, frames)
    timed = measure.convert_vs_naive(path)
    run.values["convert_over_naive"] = timed["naive_s"] / timed["convert_s"]
    run.notes["convert_over_naive"] = (
        f"{len(frames)} JSON lines, whole process: convert {timed['convert_s']:.2f} s wall, "
        f"{timed['convert_cpu_s']:.2f} s CPU; naive (json.loads, SDK span + counter) "
        f"{timed['naive_s']:.2f} s wall, {timed['naive_cpu_s']:.2f} s CPU"
    )


def _judge_source(run: _Run, kind: str, why: str) -> None:
    sent, read = run.values["source_per_s"], run.values["receive_limit_per_s"]
    limited = sent is not None and read is not None and sent < SOURCE_HEADROOM * read
    note = f"{kind} source"
    if why:
        note += f" ({why})"
    if limited:
        note += "; SOURCE-LIMITED: the source does not send well above what the bridge reads"
    run.notes["source_per_s"] = note


def _scale(run: _Run, workers: int) -> None:
    if workers < 2:
        run.notes["scale_2_streams"] = "run with --workers 2 to measure"
        return
    from hubble_bridge.scaleout import measure_scale

    # Scale-out's own measure: merged flows/s with 2 streams in 2 processes over 1 stream in 1 process.
    flows = min(run.flows, 60_000)
    one = measure_scale(flows, 1, 1)
    two = measure_scale(flows, 2, 2)
    run.values["scale_2_streams"] = round(two.per_s / one.per_s, 2)
    run.notes["scale_2_streams"] = f"{one.per_s:.0f}/s with 1 stream, {two.per_s:.0f}/s with 2 streams"


def _rounded(value: float | None) -> float | None:
    if value is None:
        return None
    if value < 10:  # a ratio such as scale_2_streams: 1.55 must not read as 1.6
        return round(value, 2)
    return round(value, 1) if value < 1000 else float(round(value))


def _shown(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key == "rss_mb":
        return f"{value:,.1f} MB"
    if key.endswith("_us_per_flow"):
        return f"{value:.1f} us"
    if key in ("scale_2_streams", "convert_over_naive"):
        return f"{value:.2f}x"
    return f"{value:,.0f}/s"


def _table(run: _Run, flows: int, l7: int, source_kind: str) -> str:
    lines = [
        f"hubble-otlp bench: {flows} generated events ({100 * l7 / flows:.0f}% L7), "
        f"{source_kind} bench source, hot path {describe()}",
        "",
        f"{'measurement':<22}{'value':>12}  note",
    ]
    for key in KEYS:
        lines.append(f"{key:<22}{_shown(key, run.values[key]):>12}  {run.notes.get(key, '')}")
    lines.append("")
    v = run.values
    derived = dict(v)
    if v["pipeline_per_s"] and v["naive_per_s"]:
        derived["pipeline_over_naive"] = v["pipeline_per_s"] / v["naive_per_s"]
    for what, key, sense, target in TARGETS:
        value = derived.get(key)
        if value is not None:
            meets = value >= target if sense == ">=" else value <= target
            verdict = "meets" if meets else "MISSES"
            lines.append(f"{what} = {value:.2f} ({verdict} the target {sense} {target:g})")
    if v["e2e_per_s"] and v["receive_limit_per_s"]:
        lines.append(f"e2e_per_s / receive_limit_per_s = {v['e2e_per_s'] / v['receive_limit_per_s']:.2f}")
    if v["receive_cpu_us_per_flow"] and v["pipeline_us_per_flow"]:
        # Each part measured alone, nothing else running: e2e_cpu_us_per_flow cannot go under their sum.
        floor = v["receive_cpu_us_per_flow"] + v["pipeline_us_per_flow"]
        lines.append(
            f"e2e floor = receive_cpu_us_per_flow + pipeline_us_per_flow = {floor:.1f} us"
            + (
                f"; e2e_cpu_us_per_flow is {v['e2e_cpu_us_per_flow'] / floor:.2f}x it"
                if v["e2e_cpu_us_per_flow"]
                else ""
            )
        )
    return "\n".join(lines) + "\n"
