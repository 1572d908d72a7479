"""The two bench checks too slow for the default run, for docs/performance.md.

`python -m hubble_bridge.bench.longrun rss [--flows 1000000] [--time-squeeze F]`: the e2e
bridge on that many distinct generated flows; its peak RSS and RSS once a second. The
generator's stream time runs at ~1 950 flows/s; with F its times run F times faster (25: ~49k
flows/s, a busy cluster's), which is what the Relay source's dedupe window holds.
`python -m hubble_bridge.bench.longrun convert [--flows 60000] [--seed 7]`: whole-process
wall and CPU time of `hubble-otlp convert` against the naive design on the same file.
`python -m hubble_bridge.bench.longrun cpu [--flows 200000]`: the e2e bridge's CPU per flow
(reader process included) reading from a relay over TCP and from a node's Hubble server over a
unix socket, and the flows per second one core sustains on each (1 s / CPU per flow).
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from hubble_bridge.api.observer_pb2 import GetFlowsResponse
from hubble_bridge.bench import SEED, measure
from hubble_bridge.bench.source import start_source, write_frames
from hubble_bridge.generator import generate_responses, write_jsonl

# `hubble-otlp generate --count 60000 --seed 7`: the file the convert target is stated on.
CONVERT_SEED = 7


def squeeze_times(responses: Iterable[GetFlowsResponse], factor: float) -> Iterator[GetFlowsResponse]:
    """The events with their times (response and flow) running `factor` times faster from the first."""
    start: int | None = None
    for response in responses:
        stamps = [response.time] if response.HasField("time") else []
        if response.HasField("flow") and response.flow.HasField("time"):
            stamps.append(response.flow.time)
        for stamp in stamps:
            ns = stamp.ToNanoseconds()
            start = ns if start is None else start
            stamp.FromNanoseconds(start + int((ns - start) / factor))
        yield response


def rss(flows: int, time_squeeze: float = 1.0) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="hubble-otlp-rss-") as tmp:
        path = Path(tmp) / "frames.bin"
        with path.open("wb") as fh:  # streamed: a million frames need not sit in this process
            for response in squeeze_times(generate_responses(flows, seed=SEED), time_squeeze):
                frame = response.SerializeToString()
                fh.write(struct.pack(">I", len(frame)) + frame)
        source = start_source(path)
        try:
            result = measure.e2e_run(source.address, flows)
        finally:
            source.close()
    samples = result["rss_samples_mb"]
    return {
        "flows": result["events"],
        "e2e_per_s": round(result["per_s"]),
        "rss_mb": round(result["rss_mb"], 1),
        "rss_first_s_mb": samples[:3],
        "rss_last_s_mb": samples[-3:],
        "source": source.kind,
        "time_squeeze": time_squeeze,
    }


def cpu(flows: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="hubble-otlp-cpu-") as tmp:
        path = Path(tmp) / "frames.bin"
        write_frames(path, [r.SerializeToString() for r in generate_responses(flows, seed=SEED)])
        result: dict[str, object] = {"flows": flows}
        for name, listen in (("relay_tcp", ""), ("node_unix", f"unix://{tmp}/hubble.sock")):
            source = start_source(path, listen)
            try:
                run = measure.e2e_run(source.address, flows)
            finally:
                source.close()
            result[name] = {
                "cpu_us_per_flow": round(run["cpu_us_per_flow"], 1),
                "flows_per_s_per_core": round(1e6 / run["cpu_us_per_flow"]),
                "e2e_per_s": round(run["per_s"]),
            }
    return result


def convert(flows: int, seed: int = CONVERT_SEED) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="hubble-otlp-convert-") as tmp:
        flows_path = Path(tmp) / "flows.jsonl"
        with flows_path.open("wb") as fh:
            write_jsonl(fh, flows, seed=seed)
        timed = measure.convert_vs_naive(flows_path)
    result: dict[str, object] = {"flows": flows, **{k: round(v, 2) for k, v in timed.items()}}
    result["naive_over_convert"] = round(timed["naive_s"] / timed["convert_s"], 2)
    result["naive_over_convert_cpu"] = round(timed["naive_cpu_s"] / timed["convert_cpu_s"], 2)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubble_bridge.bench.longrun")
    parser.add_argument("check", choices=["rss", "convert", "cpu"])
    parser.add_argument("--flows", type=int)
    parser.add_argument("--seed", type=int, default=CONVERT_SEED, help="convert: the generator's seed")
    parser.add_argument(
        "--time-squeeze", type=float, default=1.0, help="rss: event times run this many times faster"
    )
    args = parser.parse_args(argv)
    if args.check == "rss":
        if not args.time_squeeze > 0:  # also refuses NaN
            parser.error("--time-squeeze must be a number above 0")
        result = rss(args.flows or 1_000_000, args.time_squeeze)
    elif args.check == "cpu":
        result = cpu(args.flows or 200_000)
    else:
        result = convert(args.flows or 60_000, args.seed)
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
