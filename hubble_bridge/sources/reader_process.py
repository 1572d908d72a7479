"""The Relay source, or files read once, in a child process: events read on one core, mapped on another.

Reading a GetFlows stream costs a Python process 10-15 us per message (gRPC's
own iteration, about 7 us of it; reading each event's key; dropping duplicates)
and the mapping about as much again; under one GIL they add up. Here the child
runs ResilientRelaySource (its reconnects, resume by time and dedupe unchanged)
and sends the events' bytes, as received, in batches over a pipe; the bridge
decodes each one right before mapping it. Counters, readiness and log lines come back with the batches.

Files (`convert`, a bridge over files not followed) go the same way: parsing a
JSON line costs 20-30 us, more than mapping it, so the child runs FileSource
(filters and skipped-line reports unchanged) and sends each event serialized;
each skipped line comes back to the bridge's `on_problem`.

Backpressure holds across the pipe: when the bridge stops taking batches the
pipe fills, the child's buffer fills, the child stops reading and gRPC flow
control reaches Relay. The child exits when the bridge closes the source, when
its pipe breaks, or when the bridge process is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from hubble_bridge.errors import BridgeError
from hubble_bridge.sources.files import FileProblem

if TYPE_CHECKING:
    from hubble_bridge.config import SourceConfig

log = logging.getLogger(__name__)

BATCH = 512  # events per pipe message
BUFFERED_BATCHES = 8  # the child's own buffer, in batches, before it stops reading
WAKE_S = 0.05  # longest an event waits in the child before it is sent
JOIN_S = 10.0  # how long close() waits for the child to end before terminating it
# The batch pipe's capacity: a batch (512 events, about 0.5 MB) goes in one write and one wake-up of the
# bridge, not eight through Linux's default 64 KiB. 1 MiB is Linux's default pipe-max-size.
PIPE_BYTES = 1 << 20
# The source's counters the child reports with each batch (those it has), set on ReaderProcessSource.
COUNTERS = (
    "duplicates",
    "invalid_messages",
    "events",
    "filtered",
    "non_flow_events",
    "invalid_lines",
    "bytes_read",
    "bytes_total",
)
State = tuple[bool, dict[str, int]]  # connected, counters (reconnects included)
# What the child reads: the relay's SourceConfig, or (files, whitelist, blacklist) in plain lists, so
# that a file reader does not import the configuration's modules (gRPC among them): 0.2 s of start-up.
Spec = Any


class ReaderProcessSource:
    """A FlowSource of raw GetFlowsResponse bytes read by a child process; `batches()` gives them whole.

    The relay (`source_config.relay`) or else the files, read once. The counters of the source in the
    child (COUNTERS: duplicates for a relay, invalid_lines for files, ...) are attributes here.
    """

    def __init__(
        self,
        source_config: SourceConfig,
        *,
        on_reconnect: Any = None,
        on_problem: Callable[[FileProblem], None] | None = None,
    ) -> None:
        relay = source_config.relay
        self.name = f"relay {relay}" if relay else "file:" + ",".join(source_config.files)
        self._config = source_config
        self._on_reconnect = on_reconnect
        self._on_problem = on_problem
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._stop: Any = None  # our end of the stop pipe, once the child is started
        self._process: Any = None
        self.connected = threading.Event()
        if relay:
            self.duplicates = 0
            self.invalid_messages = 0
        else:
            self.events = self.filtered = self.non_flow_events = self.invalid_lines = 0
            self.bytes_read = self.bytes_total = 0
        self.reconnects = 0

    def __iter__(self) -> Iterator[bytes]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[bytes]]:
        # A new interpreter (forking a process with gRPC threads is unsafe) running _main, not
        # multiprocessing's spawn: that would also re-import the parent's __main__ (the bridge command,
        # or the bench: 0.1-0.3 s of CPU) and start a resource tracker process.
        batch_read, batch_write = os.pipe()
        _widen_pipe(batch_write)
        # Stop by closing our end of a second pipe: the child sees EOF, also when this process dies.
        stop_read, stop_write = os.pipe()
        log_level = logging.getLogger().getEffectiveLevel()
        with self._lock:
            if self._closed.is_set():
                for fd in (batch_read, batch_write, stop_read, stop_write):
                    os.close(fd)
                return
            self._stop = Connection(stop_write, readable=False)
            # The child imports from this process's sys.path, as multiprocessing does: a source tree in
            # the working directory must not shadow the installed (compiled) package, nor the reverse.
            start = (
                f"import sys; sys.path[:] = {sys.path!r}; "
                f"from {__name__} import _main; sys.exit(_main(sys.argv[1:]))"
            )
            self._process = subprocess.Popen(
                [sys.executable, "-c", start, str(batch_write), str(stop_read)],
                stdin=subprocess.PIPE,
                pass_fds=(batch_write, stop_read),
                env=_child_environment(),
            )
        os.close(batch_write)  # the child holds the only writing end: EOF means it is gone
        os.close(stop_read)
        receiving = Connection(batch_read, writable=False)
        stdin = self._process.stdin
        with contextlib.suppress(OSError):  # a child that died at once is reported below
            stdin.write(pickle.dumps((self._spec(), log_level)))
        with contextlib.suppress(OSError):
            stdin.close()
        error = ""
        ended = False
        try:
            while True:
                try:
                    message = receiving.recv()
                except (EOFError, OSError):
                    break
                kind = message[0]
                if kind == "batch":
                    _, frames, state = message
                    self._update(state)
                    if frames:
                        yield frames
                elif kind == "log":
                    _, level, name, text = message
                    logging.getLogger(name).log(level, "%s", text)
                elif kind == "problem":
                    if self._on_problem is not None:
                        self._on_problem(FileProblem(*message[1:]))
                elif kind == "end":
                    _, error, state = message
                    self._update(state)
                    ended = True
                    break
        finally:
            receiving.close()
            self.connected.clear()
            self._end_child()
        if error:
            raise BridgeError(error)
        if not ended and not self._closed.is_set():
            where = self._config.relay or self.name
            raise BridgeError(f"the reader process for {where} exited ({self._exit_text()})")

    def _spec(self) -> Spec:
        config = self._config
        if config.relay:
            return config
        return (list(config.files), list(config.whitelist), list(config.blacklist))

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            if self._stop is not None:
                self._stop.close()

    def _update(self, state: State) -> None:
        connected, counters = state
        reconnects = counters.pop("reconnects", 0)
        for name, value in counters.items():
            setattr(self, name, value)
        if connected:
            self.connected.set()
        else:
            self.connected.clear()
        while self.reconnects < reconnects:
            self.reconnects += 1
            if self._on_reconnect is not None:
                self._on_reconnect()

    def _end_child(self) -> None:
        process = self._process
        if process is None:
            return
        with self._lock:
            self._stop.close()
        try:
            process.wait(JOIN_S)
        except subprocess.TimeoutExpired:
            log.warning("the reader process did not stop within %.0fs: terminating it", JOIN_S)
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(JOIN_S)

    def _exit_text(self) -> str:
        code = self._process.poll() if self._process is not None else None
        if code is None:
            return "no exit code"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _child_environment() -> dict[str, str]:
    # Events are allocated by gRPC's reading thread and freed by the sending one: with glibc's default
    # of up to 8 arenas per core the child's peak RSS wandered (71-180 MB over the same 400 000 events);
    # with 2 it stayed 71-108 MB at the same CPU (docs/performance.md). A value the user set is kept.
    return {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}


def _widen_pipe(fd: int) -> None:
    # Not Linux (no F_SETPIPE_SZ), or a lower pipe-max-size: the default capacity works, only slower.
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


# ---- the child ---------------------------------------------------------------------------------


class _PipeLogHandler(logging.Handler):
    """The child's log lines go to the bridge's log, through the pipe."""

    def __init__(self, send: Any) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a broken pipe is noticed by the sender loop
            self._send(("log", record.levelno, record.name, record.getMessage()))


def _child_main(conn: Connection, stop: Connection, config: Spec, log_level: int) -> None:
    # The bridge owns this process's life: Ctrl-C or a SIGTERM sent to the whole process group
    # stop the bridge, which then closes the stop pipe; here they would only cut the stream short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from hubble_bridge.gc_tuning import young_threshold_raised

    with young_threshold_raised():  # each message read allocates a few short-lived objects
        _read_and_send(conn, stop, config, log_level)


def _child_source(spec: Spec, count_reconnect: Callable[[], None], send: Any) -> Any:
    """The source the child reads, yielding serialized events."""
    if not isinstance(spec, tuple):
        from hubble_bridge.sources.resilient import ResilientRelaySource

        return ResilientRelaySource(spec, on_reconnect=count_reconnect, raw=True)
    from hubble_bridge.filters import source_filters
    from hubble_bridge.sources.files import FileSource

    files, whitelist, blacklist = spec
    filters = source_filters(whitelist, blacklist)

    def report(problem: FileProblem) -> None:
        send(("problem", problem.path, problem.line, problem.reason))

    accept = filters.matches if filters else None
    return _Serialized(FileSource(files, accept=accept, on_problem=report))


class _Serialized:
    """A source of decoded events as one of their bytes; its counters read through."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self.connected = threading.Event()
        self.connected.set()  # a file is there or the source fails: nothing to wait for

    def __iter__(self) -> Iterator[bytes]:
        for event in self._source:
            yield event.SerializeToString()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)


def _read_and_send(conn: Connection, stop: Connection, config: Spec, log_level: int) -> None:
    send_lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with send_lock:
            conn.send(message)

    root = logging.getLogger()
    root.handlers[:] = [_PipeLogHandler(send)]
    root.setLevel(log_level)
    reconnects = 0

    def count_reconnect() -> None:
        nonlocal reconnects
        reconnects += 1

    try:
        source = _child_source(config, count_reconnect, send)
    except Exception as exc:  # a bad filter or address: one line for the bridge, never a traceback
        with contextlib.suppress(OSError):
            send(
                (
                    "end",
                    str(exc) if isinstance(exc, BridgeError) else f"{type(exc).__name__}: {exc}",
                    (False, {}),
                )
            )
        conn.close()
        return
    # The reading thread appends to a deque and the sending loop pops from it, with no lock per event (a
    # deque's append and popleft are atomic); the condition is taken only to wait for room or a batch.
    buffer: deque[bytes] = deque()
    limit = BUFFERED_BATCHES * BATCH
    cond = threading.Condition()
    sender_waits = [False]
    done = threading.Event()
    error: list[str] = []

    def read() -> None:
        append = buffer.append
        try:
            for frame in source:
                if len(buffer) >= limit:
                    with cond:
                        while len(buffer) >= limit and not stopped.is_set():
                            cond.wait(WAKE_S)
                append(frame)
                if sender_waits[0] and len(buffer) >= BATCH:
                    with cond:
                        cond.notify_all()
        except BridgeError as exc:
            error.append(str(exc))
        except Exception as exc:  # reported to the bridge as one line, never a traceback
            error.append(f"reader process failed: {type(exc).__name__}: {exc}")
        finally:
            done.set()
            with cond:
                cond.notify_all()

    counters = [name for name in COUNTERS if hasattr(source, name)]

    def state() -> State:
        values = {name: getattr(source, name) for name in counters}
        values["reconnects"] = reconnects
        return source.connected.is_set(), values

    stopped = threading.Event()

    def watch_stop() -> None:
        with contextlib.suppress(EOFError, OSError):
            stop.recv()  # nothing is ever sent: this returns when the bridge closes its end or dies
        stopped.set()
        source.close()

    threading.Thread(target=watch_stop, daemon=True).start()
    reader = threading.Thread(target=read, name="hubble-otlp-reader", daemon=True)
    reader.start()
    last_state = None
    popleft = buffer.popleft
    try:
        while True:
            with cond:
                if len(buffer) < BATCH and not done.is_set():
                    sender_waits[0] = True
                    cond.wait(WAKE_S)
                    sender_waits[0] = False
                finished = done.is_set()  # read before the length: then every event read is in it
                cond.notify_all()  # the reading thread may wait for room
            waiting = len(buffer)
            now = state()
            while waiting or now != last_state:
                count = min(waiting, BATCH)
                send(("batch", [popleft() for _ in range(count)], now))
                waiting -= count
                last_state = now
            if finished:
                send(("end", error[0] if error else "", state()))
                return
    except (BrokenPipeError, EOFError, OSError):  # the bridge closed its end: stop reading
        source.close()
    finally:
        conn.close()


def _main(argv: list[str]) -> int:
    """The child's entry: argv is BATCH_FD STOP_FD; what to read comes pickled on stdin."""
    conn = Connection(int(argv[0]), readable=False)
    stop = Connection(int(argv[1]), writable=False)
    try:
        spec, log_level = pickle.loads(sys.stdin.buffer.read())
    except (EOFError, pickle.UnpicklingError):  # the bridge went away before saying what to read
        return 1
    _child_main(conn, stop, spec, log_level)
    return 0
