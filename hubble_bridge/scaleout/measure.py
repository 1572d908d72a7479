"""Scale-out throughput for the bench: N streams over M worker processes, events/s through the whole Bridge.

Each stream is a GetFlows stream of the same `flows` events (by default from the
bench's Go source, which serves any number of streams from one process). The
clock starts when every worker is up and the streams are handed out, and stops
when the merged `hubble_otlp.flows.received` reaches streams x flows: decode,
stream fan-in, mapping (metrics, spans, logs) and the snapshots to the parent
are in it; OTLP export is not (workers have no exporter here).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hubble_bridge.api import observer_pb2
from hubble_bridge.config import BridgeConfig, ExportConfig, SourceConfig
from hubble_bridge.errors import BridgeError
from hubble_bridge.mapping.merge import family_total
from hubble_bridge.scaleout.config import ScaleOutConfig
from hubble_bridge.scaleout.parent import ScaleOut
from hubble_bridge.sources.peers import StreamSpec

RECEIVED = "hubble_otlp.flows.received"


@dataclass(frozen=True)
class ScaleResult:
    streams: int
    workers: int
    events: int  # read in total, over all streams
    seconds: float
    per_s: float
    source: str  # "go" or "python" (the bench source), or "given"


def measure_scale(
    flows: int | Sequence[observer_pb2.GetFlowsResponse],
    streams: int,
    workers: int | None = None,
    *,
    addresses: Sequence[str] | None = None,
    timeout_s: float = 300.0,
) -> ScaleResult:
    """Events/s with `streams` streams in `workers` processes (default: one per stream).

    `flows` is a count of generated events or the events themselves. `addresses`,
    when given, are Observer servers that send at least that many events per
    GetFlows request with `number` set; otherwise the bench source serves them.
    """
    from hubble_bridge.generator import generate_responses

    events = list(generate_responses(flows, seed=1)) if isinstance(flows, int) else list(flows)
    if not events or streams < 1:
        raise BridgeError("measure_scale: needs at least one event and one stream")
    with tempfile.TemporaryDirectory(prefix="hubble-otlp-scale-") as tmp:
        source = None
        if addresses is None:
            from hubble_bridge.bench.source import start_source, write_frames

            frames = Path(tmp) / "frames.bin"
            write_frames(frames, [event.SerializeToString() for event in events])
            source = start_source(frames)
            addresses, kind = [source.address], source.kind
        else:
            kind = "given"
        try:
            return _run(len(events), streams, workers or streams, list(addresses), kind, timeout_s)
        finally:
            if source is not None:
                source.close()


def _run(
    count: int, streams: int, workers: int, addresses: list[str], kind: str, timeout_s: float
) -> ScaleResult:
    config = BridgeConfig(source=SourceConfig(number=count), export=ExportConfig(otlp=False)).resolved()
    scale = ScaleOut(config, ScaleOutConfig(snapshot_interval_s=0.05), workers)
    # The bench source ends each stream after `number` events; the reconnect warnings are noise here.
    logger = logging.getLogger("hubble_bridge")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        scale.start()
    finally:
        logger.setLevel(level)
    try:
        if not scale.wait_until(lambda: scale.ready, timeout_s):
            raise BridgeError(f"measure_scale: workers not up within {timeout_s:g}s")
        expected = count * streams
        started = time.monotonic()
        scale.set_streams(
            {f"stream-{i}": StreamSpec(f"stream-{i}", addresses[i % len(addresses)]) for i in range(streams)}
        )
        if not scale.wait_until(lambda: family_total(scale.merged(), RECEIVED) >= expected, timeout_s):
            raise BridgeError(f"measure_scale: {expected} events not read within {timeout_s:g}s")
        seconds = time.monotonic() - started
    finally:
        scale.stop()
        scale.wait(60)
    return ScaleResult(streams, workers, expected, seconds, expected / seconds, kind)
