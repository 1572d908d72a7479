"""The two bench checks too slow for the default run, for docs/performance.md.

`python -m hubble_bridge.bench.longrun rss [--flows 1000000]`: the e2e bridge on
that many distinct generated flows; its peak RSS and RSS once a second.
`python -m hubble_bridge.bench.longrun convert [--flows 60000]`: whole-process
wall time of `hubble-otlp convert` against the naive design on the same file.
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from hubble_bridge.bench import SEED, measure
from hubble_bridge.bench.source import start_source
from hubble_bridge.generator import generate_responses, write_jsonl


def rss(flows: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="hubble-otlp-rss-") as tmp:
        path = Path(tmp) / "frames.bin"
        with path.open("wb") as fh:  # streamed: a million frames need not sit in this process
            for response in generate_responses(flows, seed=SEED):
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
    }


def convert(flows: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="hubble-otlp-convert-") as tmp:
        flows_path = Path(tmp) / "flows.jsonl"
        with flows_path.open("wb") as fh:
            write_jsonl(fh, flows, seed=SEED)
        output = f"{tmp}/ours.jsonl"
        ours = _timed(["-m", "hubble_bridge.cli", "convert", str(flows_path), "--output", output])
        naive = _timed(["-m", "hubble_bridge.bench.naive", str(flows_path), f"{tmp}/naive.bin"])
    return {"flows": flows, "convert_s": ours, "naive_s": naive, "naive_over_convert": round(naive / ours, 2)}


def _timed(args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return round(seconds, 2)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubble_bridge.bench.longrun")
    parser.add_argument("check", choices=["rss", "convert"])
    parser.add_argument("--flows", type=int)
    args = parser.parse_args(argv)
    result = rss(args.flows or 1_000_000) if args.check == "rss" else convert(args.flows or 60_000)
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
