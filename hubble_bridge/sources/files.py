"""Hubble events from files: exporter logs, `hubble observe -o json` output, gzip backups, `tail -F`.

Files are read in binary and split into lines here, so a line is decoded once
(by orjson, inside `parse_json_line`) and never copied into a `str` first.
"""

from __future__ import annotations

import gzip
import io
import os
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hubble_bridge.api import observer_pb2
from hubble_bridge.errors import BridgeError, ConfigError, FlowDecodeError
from hubble_bridge.flows.codec import parse_json_line

GetFlowsResponse = observer_pb2.GetFlowsResponse

_CHUNK_BYTES = 1 << 20
# A Hubble event is a few KiB; anything this long is a corrupt file, and holding it would grow without bound.
_MAX_LINE_BYTES = 16 << 20
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class FileProblem:
    """A line that was skipped, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class _Lines:
    """Splits chunks into numbered lines, holding a partial last line until its newline arrives.

    A line over _MAX_LINE_BYTES comes out as None (once), and its bytes are dropped.
    """

    def __init__(self) -> None:
        self.lineno = 0  # lines handed out so far
        self._parts: list[bytes] = []
        self._size = 0
        self._overlong = False

    def feed(self, chunk: bytes, *, final: bool = False) -> list[bytes | None]:
        """Complete lines in chunk; with final=True (end of the file for good) the partial line too."""
        pieces = chunk.split(b"\n")
        rest = pieces.pop()
        lines: list[bytes | None] = list(pieces)
        if pieces:
            first = pieces[0]
            if self._overlong or self._size + len(first) > _MAX_LINE_BYTES:
                lines[0] = None
            elif self._parts:
                lines[0] = b"".join((*self._parts, first))
            self._parts, self._size, self._overlong = [], 0, False
        if rest and not self._overlong:
            self._parts.append(rest)
            self._size += len(rest)
            if self._size > _MAX_LINE_BYTES:
                self._parts, self._size, self._overlong = [], 0, True
        if final and (self._parts or self._overlong):
            lines.append(None if self._overlong else b"".join(self._parts))
            self._parts, self._size, self._overlong = [], 0, False
        self.lineno += len(lines)
        return lines


class FileSource:
    """Events from files in the order given; with follow=True the last file is tailed like `tail -F`.

    Counters (read by self-metrics from another thread): `events` served, `filtered` by `accept`,
    `non_flow_events` (exporter agent/debug events, skipped), `invalid_lines` (every problem reported).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        follow: bool = False,
        accept: Callable[[GetFlowsResponse], bool] | None = None,
        on_problem: Callable[[FileProblem], None] | None = None,
        poll_interval_s: float = 0.2,
    ) -> None:
        if not paths:
            raise ConfigError("no flow files given")
        if poll_interval_s <= 0:
            raise ConfigError(f"poll interval must be positive, got {poll_interval_s}")
        self._paths = [str(p) for p in paths]
        if follow and self._paths[-1].endswith(".gz"):
            raise ConfigError(
                f"cannot follow {self._paths[-1]}: a gzip file is complete; follow the live log"
            )
        self._follow = follow
        self._accept = accept
        self._on_problem = on_problem
        self._poll_s = poll_interval_s
        self._closed = threading.Event()
        self.name = "file:" + ",".join(self._paths)
        self.invalid_lines = 0
        self.non_flow_events = 0
        self.filtered = 0
        self.events = 0
        self.bytes_total = 0  # on-disk size of the files read once (progress)
        self.bytes_read = 0  # of those, bytes consumed so far (compressed bytes for gzip)

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[GetFlowsResponse]:
        once = self._paths[:-1] if self._follow else self._paths
        for path in once:  # fail before serving anything when a named file is missing
            _open(path).close()
        self.bytes_total = sum(_size(path) for path in once)
        for path in once:
            yield from self._read_once(path)
        if self._follow:
            yield from self._read_following(self._paths[-1])

    def _read_once(self, path: str) -> Iterator[GetFlowsResponse]:
        lines = _Lines()
        done = self.bytes_read
        with _open(path) as handle:
            while not self._closed.is_set():
                try:
                    # read1: at most one decompression step, so the lines decoded before a truncated
                    # or corrupt gzip stream are served (read() would drop its partial chunk with the error).
                    chunk = handle.read1(_CHUNK_BYTES)
                except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                    # Lines served so far are complete; the held partial line is the one cut off.
                    self._problem(path, lines.lineno + 1, f"corrupt gzip data, rest of file skipped: {exc}")
                    return
                except OSError as exc:
                    raise _read_error(path, exc) from None
                self.bytes_read = done + _position(handle)
                yield from self._serve(path, lines, chunk, final=not chunk)
                if not chunk:
                    return

    def _read_following(self, path: str) -> Iterator[GetFlowsResponse]:
        handle: io.FileIO | None = None
        lines, identity = _Lines(), (0, 0)
        try:
            while not self._closed.is_set():
                if handle is None:
                    handle = _open_if_present(path)
                    if handle is None:
                        self._closed.wait(self._poll_s)
                        continue
                    stat = os.fstat(handle.fileno())
                    lines, identity = _Lines(), (stat.st_dev, stat.st_ino)
                chunk = _read(handle, path)
                if chunk:
                    yield from self._serve(path, lines, chunk)
                elif _replaced(path, identity):
                    # The writer may have appended to the old file between our EOF and its rename.
                    while chunk := _read(handle, path):
                        yield from self._serve(path, lines, chunk)
                    yield from self._serve(path, lines, b"", final=True)
                    handle.close()
                    handle = None
                elif os.fstat(handle.fileno()).st_size < handle.tell():
                    # Truncated in place (copytruncate): the held partial line went with the old data.
                    handle.seek(0)
                    lines = _Lines()
                else:
                    self._closed.wait(self._poll_s)
        finally:
            if handle is not None:
                handle.close()

    def _serve(
        self, path: str, lines: _Lines, chunk: bytes, *, final: bool = False
    ) -> Iterator[GetFlowsResponse]:
        lineno = lines.lineno
        for line in lines.feed(chunk, final=final):
            lineno += 1
            event = self._decode(path, lineno, line)
            if event is not None:
                yield event

    def _decode(self, path: str, lineno: int, line: bytes | None) -> GetFlowsResponse | None:
        if line is None:
            self._problem(path, lineno, f"line longer than {_MAX_LINE_BYTES} bytes")
            return None
        if not line or line.isspace():
            return None
        try:
            event = parse_json_line(line)
        except FlowDecodeError as exc:
            self._problem(path, lineno, str(exc))
            return None
        if event is None:
            self.non_flow_events += 1
            return None
        if self._accept is not None and not self._accept(event):
            self.filtered += 1
            return None
        self.events += 1
        return event

    def _problem(self, path: str, lineno: int, reason: str) -> None:
        self.invalid_lines += 1
        if self._on_problem is not None:
            self._on_problem(FileProblem(path, lineno, reason))


def read_events(
    paths: Sequence[str | Path], on_problem: Callable[[FileProblem], None] | None = None
) -> Iterator[GetFlowsResponse]:
    """Every event in the files, once, in order."""
    return iter(FileSource(paths, on_problem=on_problem))


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _position(handle: io.BufferedIOBase) -> int:
    """Bytes of the file on disk consumed so far: gzip's compressed position, not its output."""
    raw = getattr(handle, "fileobj", None) or handle
    try:
        return int(raw.tell())
    except (OSError, ValueError):
        return 0


def _open(path: str) -> io.BufferedIOBase:
    """The file, decompressed when it is gzip (recognised by content, not by name)."""
    try:
        with open(path, "rb") as probe:
            compressed = probe.read(2) == _GZIP_MAGIC
        return gzip.open(path, "rb") if compressed else open(path, "rb")
    except OSError as exc:
        raise _read_error(path, exc) from None


def _open_if_present(path: str) -> io.FileIO | None:
    try:
        return io.FileIO(path, "rb")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _read_error(path, exc) from None


def _read(handle: io.FileIO, path: str) -> bytes:
    try:
        return handle.read(_CHUNK_BYTES) or b""
    except OSError as exc:
        raise _read_error(path, exc) from None


def _replaced(path: str, identity: tuple[int, int]) -> bool:
    """True when the path now names another file (rotated); a missing path is not yet rotated."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return (stat.st_dev, stat.st_ino) != identity


def _read_error(path: str, exc: OSError) -> BridgeError:
    return BridgeError(f"cannot read {path}: {exc.strerror or exc}")
