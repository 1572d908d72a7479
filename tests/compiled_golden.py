"""Everything the mapping makes from a fixed set of events, written canonically (run by test_compiled.py).

`python tests/compiled_golden.py OUT FLOWS_FILE...` maps 6000 generated events and the
given recorded flows batch by batch through the Bridge's own mapper (no threads, no
clock: the same input gives the same output), with three configurations, and writes
the OTLP bytes of every span and log record and every metric point to OUT.
test_compiled.py runs it against the pure Python tree and against the compiled one.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

from hubble_bridge.compiled import describe
from hubble_bridge.config import load_config
from hubble_bridge.generator import generate_responses
from hubble_bridge.mapping.spans import SpanMapper
from hubble_bridge.pipeline import BATCH, Bridge
from hubble_bridge.sinks.otlp_wire import logs_bytes, traces_bytes
from hubble_bridge.sources.files import read_events
from hubble_bridge.telemetry import LogRecord, SpanRecord

FAMILIES = [
    "flow:sourceContext=namespace;destinationContext=workload-name",
    "httpV2:exemplars=true",
    "dns:query",
    "drop",
    "tcp",
    "kafka",
    "policy",
    "flows-to-world",
    "port-distribution",
    "service-graph:dimensions=namespace,cluster,protocol",
]
CONFIGS = (
    {},
    {"metrics": {"families": FAMILIES}, "logs": {"all_flows": True}},
    {"spans": {"l3l4_spans": True, "max_pending": 50, "redact": {"enabled": False}}},
)


class _Source:
    name = "golden"

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(())

    def close(self) -> None:
        pass


def _metrics(bridge: Bridge) -> list[str]:
    lines = []
    for family in bridge.metrics.snapshot():
        for point in family.points:
            fields = {k: v for k, v in dataclasses.asdict(point).items() if "time" not in k}
            lines.append(f"{family.name} {sorted(fields.items(), key=lambda kv: kv[0])!r}")
    return sorted(lines)


def main(out: Path, flow_files: list[Path]) -> int:
    events = list(generate_responses(6000, seed=11))
    events += list(read_events(flow_files))
    frames = [event.SerializeToString() for event in events]
    with out.open("w") as dump:
        dump.write(f"# {describe()}\n")
        for overrides in CONFIGS:
            config = load_config(overrides, environ={})
            bridge = Bridge(config, _Source(), [])
            bridge.spans = SpanMapper(config.spans, rng=random.Random(7))  # ids of flows without a uuid
            spans: list[SpanRecord] = []
            logs: list[LogRecord] = []
            for start in range(0, len(frames), BATCH):
                bridge._map_batch(list(frames[start : start + BATCH]), spans, logs)
                spans.extend(bridge.spans.expire(bridge.spans.watermark_ns))
            spans.extend(bridge.spans.drain())
            dump.write(f"## {overrides!r}: {len(spans)} spans, {len(logs)} logs\n")
            for span in spans:
                dump.write(traces_bytes([span]).hex() + "\n")
            for record in logs:
                dump.write(logs_bytes([record]).hex() + "\n")
            dump.writelines(line + "\n" for line in _metrics(bridge))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]))
