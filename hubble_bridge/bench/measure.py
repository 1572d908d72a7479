"""One function per bench measurement; each returns events per second on the given serialized events."""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from hubble_bridge.api import observer_pb2
from hubble_bridge.bench import naive
from hubble_bridge.bench.otlp_sink import CountingOtlpReceiver
from hubble_bridge.config import load_config
from hubble_bridge.errors import BridgeError
from hubble_bridge.flows.codec import to_json_line
from hubble_bridge.pipeline import BATCH, Bridge
from hubble_bridge.sinks.otlp_encode import encode_metrics
from hubble_bridge.sinks.otlp_wire import logs_bytes, traces_bytes
from hubble_bridge.sources.relay import RelayClient, build_request
from hubble_bridge.telemetry import LogRecord, MetricsSnapshot, SpanRecord

GetFlowsResponse = observer_pb2.GetFlowsResponse
E2E_TIMEOUT_S = 300.0


def _per_s(count: int, seconds: float) -> float:
    return count / max(seconds, 1e-9)


def decode_rate(frames: Sequence[bytes]) -> float:
    """protobuf decode alone: the upper bound of anything that reads these events."""
    decode = GetFlowsResponse.FromString
    started = time.perf_counter()
    for frame in frames:
        decode(frame)
    return _per_s(len(frames), time.perf_counter() - started)


def _read_stream(address: str, count: int, *, raw: bool) -> tuple[int, float, float]:
    """The bridge's own client (RelayClient) reading `count` events and nothing else done with them.

    Returns the events read, and the wall and CPU seconds (every thread of this process, gRPC's
    included) from the stream's opening to its end.
    """
    client = RelayClient(address)
    try:
        stream = client.get_flows(build_request(number=count, first=True), raw=raw)
        started, cpu = time.perf_counter(), time.process_time()
        got = sum(1 for _ in stream)
        return got, time.perf_counter() - started, time.process_time() - cpu
    finally:
        client.close()


def receive_rate(address: str, count: int) -> float:
    """Events per second of the bridge's client, messages decoded by gRPC."""
    got, seconds, _ = _read_stream(address, count, raw=False)
    return _per_s(got, seconds)


def receive_cpu_us(address: str, count: int) -> float:
    """CPU per event of the bridge's gRPC client reading raw bytes, as the reader process reads them.

    Nothing is done with the bytes: this is what grpcio's own iteration costs, the part of
    e2e_cpu_us_per_flow no code of ours can remove.
    """
    got, _, cpu = _read_stream(address, count, raw=True)
    return 1e6 * cpu / max(got, 1)


class FrameSource:
    """Serialized events in batches, as the reader process hands them over; the Bridge decodes them."""

    name = "bench frames"

    def __init__(self, frames: Sequence[bytes]) -> None:
        self.frames = frames
        self.connected = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.frames)

    def batches(self) -> Iterator[list[bytes]]:
        frames = self.frames
        for start in range(0, len(frames), BATCH):
            yield list(frames[start : start + BATCH])

    def close(self) -> None:
        pass


class _EncodingSink:
    """Encodes every export to OTLP protobuf bytes and drops them: the pipeline minus the network."""

    def __init__(self) -> None:
        self.bytes = 0

    def export_traces(self, spans: Sequence[SpanRecord]) -> bool:
        self.bytes += len(traces_bytes(spans))
        return True

    def export_logs(self, logs: Sequence[LogRecord]) -> bool:
        self.bytes += len(logs_bytes(logs))
        return True

    def export_metrics(self, snapshots: Sequence[MetricsSnapshot]) -> bool:
        self.bytes += len(encode_metrics(snapshots).SerializeToString())
        return True

    def shutdown(self) -> None:
        pass


def pipeline_run(frames: Sequence[bytes]) -> tuple[float, float]:
    """The real Bridge (its threads, batches and default config) from decode to encoded OTLP.

    Returns events per second and CPU microseconds per event (every thread of this process).
    """
    config = load_config({}, environ={})
    sink = _EncodingSink()
    bridge = Bridge(config, FrameSource(frames), [sink])
    cpu = time.process_time()
    started = time.perf_counter()
    bridge.run()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    if not sink.bytes:
        raise BridgeError("bench pipeline encoded nothing")
    return _per_s(len(frames), seconds), 1e6 * cpu / max(len(frames), 1)


def naive_rate(frames: Sequence[bytes]) -> float:
    """SDK span + SDK counter per flow, BatchSpanProcessor, OTLP encoding; flushing included."""
    started = time.perf_counter()
    naive.run_frames(frames)
    return _per_s(len(frames), time.perf_counter() - started)


def e2e_run(address: str, count: int) -> dict[str, Any]:
    """Source -> bridge (its own process) -> OTLP gRPC receiver; the bridge's own timing and peak RSS."""
    receiver = CountingOtlpReceiver().start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hubble_bridge.bench.bridge_run", address, receiver.endpoint, str(count)],
            capture_output=True,
            text=True,
            timeout=E2E_TIMEOUT_S,
        )
    finally:
        receiver.stop()
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BridgeError(f"bench bridge process failed: {last}")
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    result["per_s"] = _per_s(result["events"], result["seconds"])
    result["cpu_us_per_flow"] = 1e6 * result["cpu_s"] / max(result["events"], 1)
    result["otlp_requests"] = sum(receiver.requests.values())
    return result


def timed_process(args: Sequence[str], timeout_s: float = 900.0) -> tuple[float, float]:
    """Run `python ARGS` to its end; its wall time and its CPU time (user + system, its children included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout_s)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BridgeError(f"bench: {' '.join(args)} failed: {last}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def convert_vs_naive(flows_path: Path) -> dict[str, float]:
    """`hubble-otlp convert` and the naive convert (json.loads, SDK span + counter per flow) on one file.

    Whole processes, start-up included: wall and CPU seconds of each.
    """
    with tempfile.TemporaryDirectory(prefix="hubble-otlp-convert-") as tmp:
        ours = timed_process(["-m", "hubble_bridge.cli", "convert", str(flows_path), "--output", f"{tmp}/o"])
        naive_run = timed_process(["-m", "hubble_bridge.bench.naive", str(flows_path), f"{tmp}/naive.bin"])
    return {
        "convert_s": ours[0],
        "convert_cpu_s": ours[1],
        "naive_s": naive_run[0],
        "naive_cpu_s": naive_run[1],
    }


def write_jsonl_frames(path: Path, frames: Sequence[bytes]) -> None:
    """The serialized events as JSON lines, as `hubble observe -o json` writes them."""
    with path.open("wb") as fh:
        for start in range(0, len(frames), BATCH):
            chunk = frames[start : start + BATCH]
            fh.write(b"".join(to_json_line(GetFlowsResponse.FromString(f)) + b"\n" for f in chunk))
