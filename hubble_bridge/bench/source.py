"""The bench's flow source: a Go gRPC server sending pre-serialized frames, else a slower Python one.

The Go server (flowsource.go) is built once per source version into the user's
cache with Debian's golang-go and golang-google-grpc-dev, offline. Where Go or
those sources are missing, a grpc.aio server streaming the same bytes stands in;
it is several times slower, so the bench then reports itself source-limited.
HUBBLE_OTLP_BENCH_SOURCE=python forces the fallback.
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.experimental

from hubble_bridge.api import observer_pb2
from hubble_bridge.errors import BridgeError

GO_SOURCE = Path(__file__).with_name("flowsource.go")
DEBIAN_GOPATH = Path("/usr/share/gocode")
START_TIMEOUT_S = 60.0  # the first Go build of grpc takes a while on 2 cores


def write_frames(path: Path, frames: Sequence[bytes]) -> None:
    """The source's input: each serialized GetFlowsResponse behind a 4-byte big-endian length."""
    with path.open("wb") as fh:
        for frame in frames:
            fh.write(struct.pack(">I", len(frame)))
            fh.write(frame)


def read_frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    frames, at = [], 0
    while at + 4 <= len(data):
        (size,) = struct.unpack_from(">I", data, at)
        frames.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return frames


def go_binary() -> tuple[Path | None, str]:
    """The built Go source, building it when needed; (None, why) when it cannot be had."""
    go = shutil.which("go")
    if go is None:
        return None, "no Go toolchain (apt-get install golang-go golang-google-grpc-dev)"
    gopath = os.environ.get("HUBBLE_OTLP_BENCH_GOPATH", str(DEBIAN_GOPATH))
    if not (Path(gopath) / "src/google.golang.org/grpc").is_dir():
        return None, f"no gRPC Go sources under {gopath} (apt-get install golang-google-grpc-dev)"
    digest = hashlib.sha256(GO_SOURCE.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hubble-otlp"
    binary = cache / f"flowsource-{digest}"
    if binary.exists():
        return binary, ""
    partial = cache / f".flowsource-{digest}.{os.getpid()}"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": gopath, "GOFLAGS": ""}
    env.setdefault("GOCACHE", str(cache / "go-build"))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [go, "build", "-o", str(partial), str(GO_SOURCE)], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            reason = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
            return None, f"go build failed: {reason}"
        partial.replace(binary)  # atomic: a concurrent bench never runs a half-written binary
    except OSError as exc:
        return None, f"cannot build the Go source in {cache}: {exc.strerror or exc}"
    return binary, ""


@dataclass
class RunningSource:
    address: str
    kind: str  # "go" or "python"
    note: str  # why the fallback was used, if it was
    process: subprocess.Popen[bytes]
    binary: Path | None

    def send_rate(self, count: int) -> float:
        """Messages/s the source sends to a reader that is not the limit (Go), else to a raw Python one."""
        if self.binary is not None:
            done = subprocess.run(
                [str(self.binary), "-drain", self.address, "-n", str(count)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode != 0:
                raise BridgeError(f"bench source drain failed: {done.stderr.strip()}")
            got, seconds = done.stdout.split()
            return int(got) / max(float(seconds), 1e-9)
        return raw_read_rate(self.address, count)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_source(frames_path: Path, listen: str = "") -> RunningSource:
    """The bench source serving the frames; `listen` (the Go source only) e.g. unix:///path."""
    note = ""
    binary: Path | None = None
    if os.environ.get("HUBBLE_OTLP_BENCH_SOURCE", "") == "python":
        note = "Python source forced by HUBBLE_OTLP_BENCH_SOURCE"
    else:
        binary, note = go_binary()
    if listen and binary is None:
        raise BridgeError(f"bench: serving on {listen} needs the Go bench source ({note})")
    if binary is not None:
        command = [str(binary), "-frames", str(frames_path)] + (["-listen", listen] if listen else [])
    else:
        command = [sys.executable, "-m", "hubble_bridge.bench.pysource", str(frames_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    address = _first_line(process, START_TIMEOUT_S)
    return RunningSource(address, "go" if binary else "python", note, process, binary)


def _first_line(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The address the server prints once it listens."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(remaining, 0))
        if not ready:
            process.kill()
            raise BridgeError(f"bench source did not start within {timeout_s:g}s")
        chunk = os.read(process.stdout.fileno(), 256)
        if not chunk:
            err = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
            raise BridgeError(f"bench source exited: {err or process.wait()}")
        line += chunk
    return line.decode().strip()


def raw_read_rate(address: str, count: int) -> float:
    """Messages/s a Python client reads as bytes (no decoding), with the bridge's fast stream option."""
    options = [(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]
    with grpc.insecure_channel(address, options) as channel:
        call = channel.unary_stream("/observer.Observer/GetFlows")
        request = observer_pb2.GetFlowsRequest(number=count, first=True).SerializeToString()
        started = time.perf_counter()
        got = sum(1 for _ in call(request))
        return got / max(time.perf_counter() - started, 1e-9)
