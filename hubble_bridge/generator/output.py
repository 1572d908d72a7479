"""`hubble-otlp generate`: the generated stream as `hubble observe -o json` lines."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO

from hubble_bridge.errors import BridgeError
from hubble_bridge.flows.codec import to_json_line
from hubble_bridge.generator.stream import generate_responses

_BATCH = 256


def write_jsonl(
    out: BinaryIO,
    count: int,
    seed: int = 0,
    start_ns: int | None = None,
    flows_per_second: float = 2000.0,
) -> int:
    """Write `count` events, one JSON object per line; returns the number written."""
    written = 0
    batch: list[bytes] = []
    for response in generate_responses(count, seed, start_ns, flows_per_second):
        batch.append(to_json_line(response))
        if len(batch) == _BATCH:
            out.write(b"\n".join(batch) + b"\n")
            written += len(batch)
            batch.clear()
    if batch:
        out.write(b"\n".join(batch) + b"\n")
        written += len(batch)
    return written


def run_generate(count: int, seed: int, output: Path | None) -> int:
    """Write the events to `output`, or to stdout when it is None; returns the exit code."""
    if output is None:
        stdout = sys.stdout.buffer
        try:
            write_jsonl(stdout, count, seed)
            stdout.flush()
        except BrokenPipeError:
            # The reader left early (`generate | head`): that is not an error, and Python
            # must not complain again when it flushes stdout at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    try:
        with output.open("wb") as fh:
            write_jsonl(fh, count, seed)
    except OSError as exc:
        raise BridgeError(f"generate: cannot write {output}: {exc.strerror or exc}") from None
    return 0
