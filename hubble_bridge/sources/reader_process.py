"""The Relay source in a child process: one stream read on one core, mapped on another.

Reading a GetFlows stream costs a Python process about 7 us per message (gRPC's
own iteration, the decode, dropping duplicates) and the mapping about as much
again; under one GIL they add up. Here the child runs ResilientRelaySource (its
reconnects, resume by time and dedupe unchanged) and sends the events' bytes, as
received, in batches over a pipe; the bridge decodes each one right before
mapping it. Counters, readiness and log lines come back with the batches.

Backpressure holds across the pipe: when the bridge stops taking batches the
pipe fills, the child's buffer fills, the child stops reading and gRPC flow
control reaches Relay. The child exits when the bridge closes the source, when
its pipe breaks, or when the bridge process is gone.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from hubble_bridge.config import SourceConfig
from hubble_bridge.errors import BridgeError

log = logging.getLogger(__name__)

BATCH = 512  # events per pipe message
BUFFERED_BATCHES = 8  # the child's own buffer, in batches, before it stops reading
WAKE_S = 0.05  # longest an event waits in the child before it is sent
JOIN_S = 10.0  # how long close() waits for the child to end before terminating it


class ReaderProcessSource:
    """A FlowSource of raw GetFlowsResponse bytes read by a child process; `batches()` gives them whole."""

    def __init__(self, source_config: SourceConfig, *, on_reconnect: Any = None) -> None:
        self.name = f"relay {source_config.relay}"
        self._config = source_config
        self._on_reconnect = on_reconnect
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._stop: Any = None  # our end of the stop pipe, once the child is started
        self._process: Any = None
        self.connected = threading.Event()
        self.duplicates = 0
        self.invalid_messages = 0
        self.reconnects = 0

    def __iter__(self) -> Iterator[bytes]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[bytes]]:
        context = multiprocessing.get_context("spawn")  # forking a process with gRPC threads is unsafe
        receiving, sending = context.Pipe(duplex=False)
        # Stop by closing our end of a second pipe: the child sees EOF, also when this process dies.
        # (A multiprocessing.Event can hang set() when the child died while waiting on it.)
        child_stop, stop = context.Pipe(duplex=False)
        log_level = logging.getLogger().getEffectiveLevel()
        with self._lock:
            if self._closed.is_set():
                return
            self._stop = stop
            self._process = context.Process(
                target=_child_main,
                args=(sending, child_stop, self._config, log_level),
                name="hubble-otlp-reader",
                daemon=True,
            )
            self._process.start()
        sending.close()  # the child holds the only writing end: EOF means it is gone
        child_stop.close()
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
            raise BridgeError(f"the reader process for {self._config.relay} exited ({self._exit_text()})")

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            if self._stop is not None:
                self._stop.close()

    def _update(self, state: tuple[bool, int, int, int]) -> None:
        connected, self.duplicates, self.invalid_messages, reconnects = state
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
        process.join(JOIN_S)
        if process.is_alive():
            log.warning("the reader process did not stop within %.0fs: terminating it", JOIN_S)
            process.terminate()
            process.join(JOIN_S)

    def _exit_text(self) -> str:
        code = self._process.exitcode if self._process is not None else None
        if code is None:
            return "no exit code"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


# ---- the child ---------------------------------------------------------------------------------


class _PipeLogHandler(logging.Handler):
    """The child's log lines go to the bridge's log, through the pipe."""

    def __init__(self, send: Any) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a broken pipe is noticed by the sender loop
            self._send(("log", record.levelno, record.name, record.getMessage()))


def _child_main(conn: Connection, stop: Connection, config: SourceConfig, log_level: int) -> None:
    # The bridge owns this process's life: Ctrl-C or a SIGTERM sent to the whole process group
    # stop the bridge, which then closes the stop pipe; here they would only cut the stream short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from hubble_bridge.gc_tuning import young_threshold_raised

    with young_threshold_raised():  # each message read allocates a few short-lived objects
        _read_and_send(conn, stop, config, log_level)


def _read_and_send(conn: Connection, stop: Connection, config: SourceConfig, log_level: int) -> None:
    from hubble_bridge.sources.resilient import ResilientRelaySource

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
        source = ResilientRelaySource(config, on_reconnect=count_reconnect, raw=True)
    except Exception as exc:  # a bad filter or address: one line for the bridge, never a traceback
        with contextlib.suppress(OSError):
            send(
                (
                    "end",
                    str(exc) if isinstance(exc, BridgeError) else f"{type(exc).__name__}: {exc}",
                    (False, 0, 0, 0),
                )
            )
        conn.close()
        return
    buffer: list[bytes] = []
    cond = threading.Condition()
    done = threading.Event()
    error: list[str] = []

    def read() -> None:
        try:
            for frame in source:
                with cond:
                    while len(buffer) >= BUFFERED_BATCHES * BATCH and not stopped.is_set():
                        cond.wait(WAKE_S)
                    buffer.append(frame)
                    if len(buffer) >= BATCH:
                        cond.notify_all()
        except BridgeError as exc:
            error.append(str(exc))
        except Exception as exc:  # reported to the bridge as one line, never a traceback
            error.append(f"reader process failed: {type(exc).__name__}: {exc}")
        finally:
            done.set()
            with cond:
                cond.notify_all()

    def state() -> tuple[bool, int, int, int]:
        return source.connected.is_set(), source.duplicates, source.invalid_messages, reconnects

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
    try:
        while True:
            with cond:
                if len(buffer) < BATCH and not done.is_set():
                    cond.wait(WAKE_S)
                finished = done.is_set()
                frames = buffer[:]
                del buffer[:]
                cond.notify_all()
            now = state()
            while frames or now != last_state:
                send(("batch", frames[:BATCH], now))
                frames = frames[BATCH:]
                last_state = now
            if finished:
                send(("end", error[0] if error else "", state()))
                return
    except (BrokenPipeError, EOFError, OSError):  # the bridge closed its end: stop reading
        source.close()
    finally:
        conn.close()
