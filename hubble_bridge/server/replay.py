"""`hubble-otlp replay`: recorded flows served over the Observer API, like a Hubble Relay.

Without a rate every event is in the buffer before the first client connects.
With a rate, events are appended at that pace with their recorded timestamps.
With loop, the recording is played again and again, its times shifted forward
by (last - first + one mean gap) per pass and its uuids made unique per pass,
so consumers see one continuous, increasing timeline.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from hubble_bridge.api import observer_pb2
from hubble_bridge.errors import BridgeError, ConfigError
from hubble_bridge.flows.codec import event_time_ns, timestamp_from_ns, timestamp_ns
from hubble_bridge.server.address import serve_until_stopped
from hubble_bridge.server.observer import ObserverServer
from hubble_bridge.server.store import EventStore
from hubble_bridge.sources.files import FileProblem, read_events
from hubble_bridge.tls import ServerTlsOptions

GetFlowsResponse = observer_pb2.GetFlowsResponse
# Below this, waiting costs more than it paces: append what is due in batches instead.
_MIN_WAIT_S = 0.005
_MAX_BATCH = 1024
_LOOP_UUID_NAMESPACE = uuid.UUID("5b3f3c8e-8f0e-4d55-9a43-2f1d6c0b7e11")


def load_events(
    paths: Sequence[str | Path], on_problem: Callable[[str], None] | None = None
) -> tuple[list[GetFlowsResponse], int]:
    """Every event in the files and the number of lines skipped (each reported as "file:line: reason")."""
    skipped = 0

    def problem(found: FileProblem) -> None:
        nonlocal skipped
        skipped += 1
        if on_problem is not None:
            on_problem(str(found))

    return list(read_events(paths, on_problem=problem)), skipped


def loop_shift_ns(events: Sequence[GetFlowsResponse]) -> int:
    """How far each pass moves the times: the recording's span plus its mean gap between events."""
    times = [event_time_ns(event) for event in events]
    span = max(times) - min(times)
    gap = span // (len(times) - 1) if len(times) > 1 else 1_000_000_000
    return span + max(gap, 1_000_000)


def rebased(event: GetFlowsResponse, shift_ns: int, loop: int) -> GetFlowsResponse:
    """A copy of `event` for pass `loop`: times moved by loop * shift_ns, uuid unique to the pass."""
    if loop == 0:
        return event
    copy = GetFlowsResponse()
    copy.CopyFrom(event)
    offset = loop * shift_ns
    if copy.HasField("time"):
        copy.time.CopyFrom(timestamp_from_ns(event_time_ns(event) + offset))
    if copy.HasField("flow"):
        flow = copy.flow
        if flow.HasField("time"):
            flow.time.CopyFrom(timestamp_from_ns(timestamp_ns(flow.time) + offset))
        if flow.uuid:
            # Still a UUID, derived deterministically, so consumers that parse or dedupe by uuid keep working.
            flow.uuid = str(uuid.uuid5(_LOOP_UUID_NAMESPACE, f"{flow.uuid}/{loop}"))
    return copy


def schedule(
    events: Sequence[GetFlowsResponse], *, rate: float | None, loop: bool, first_pass: int = 0
) -> Iterator[tuple[float, GetFlowsResponse]]:
    """(seconds after the start, event) from pass `first_pass` on.

    With a rate, events are evenly spaced. Without one they keep the recorded pace, the start
    being the end of the pass before (which the caller appended at once).
    """
    shift = loop_shift_ns(events)
    start_ns = max(event_time_ns(event) for event in events) + (first_pass - 1) * shift
    passes = itertools.count(first_pass) if loop else range(first_pass, first_pass + 1)
    index = 0
    for number in passes:
        for event in events:
            copy = rebased(event, shift, number)
            due = index / rate if rate else (event_time_ns(copy) - start_ns) / 1e9
            index += 1
            yield due, copy


class Replayer:
    """Feeds the store: all at once, at `rate` events/s, and/or again and again with `loop`."""

    def __init__(
        self, store: EventStore, events: Sequence[GetFlowsResponse], *, rate: float | None, loop: bool
    ) -> None:
        if not events:
            raise BridgeError("nothing to replay: no events")
        if rate is not None and rate <= 0:
            raise ConfigError(f"--rate must be a positive number of events per second, got {rate:g}")
        self._store = store
        self._events = events
        self._rate = rate
        self._loop = loop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.finished = threading.Event()

    def start(self) -> None:
        """Without a rate, the first pass is in the store when this returns."""
        first_pass = 0
        if self._rate is None:
            self._store.extend(self._events)
            first_pass = 1
            if not self._loop:
                self.finished.set()
                return
        due = schedule(self._events, rate=self._rate, loop=self._loop, first_pass=first_pass)
        self._thread = threading.Thread(target=self._feed, args=(due,), name="replay-feeder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _feed(self, due: Iterator[tuple[float, GetFlowsResponse]]) -> None:
        started = time.monotonic()
        batch: list[GetFlowsResponse] = []
        for offset, event in due:
            wait = offset - (time.monotonic() - started)
            if wait > 0 or len(batch) >= _MAX_BATCH:
                if batch:
                    self._store.extend(batch)
                    batch = []
                if self._stop.wait(max(wait, _MIN_WAIT_S) if wait > 0 else 0):
                    return
            batch.append(event)
        self._store.extend(batch)
        self.finished.set()


def run_replay(
    paths: Sequence[str | Path],
    listen: str,
    *,
    rate: float | None = None,
    loop: bool = False,
    tls: ServerTlsOptions | None = None,
    max_flows: int = 4095,
    on_problem: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serves the files' events until Ctrl-C, SIGTERM or `stop` is set; returns the exit code.

    `on_ready` gets the bound address once clients can connect.
    """
    if max_flows < 1:
        raise ConfigError(f"--max-flows must be at least 1, got {max_flows}")
    events, skipped = load_events(paths, on_problem)
    if not events:
        raise BridgeError(f"nothing to replay: no events in {', '.join(map(str, paths))}")
    store = EventStore(max_flows)
    replayer = Replayer(store, events, rate=rate, loop=loop)
    server = ObserverServer(store, listen, tls)
    stop = stop or threading.Event()
    replayer.start()
    try:
        address = server.start()
        pace = f"at {rate:g} events/s" if rate else "all at once"
        print(
            f"hubble-otlp replay: serving {len(events)} events ({skipped} bad lines skipped) {pace}"
            f"{', looping' if loop else ''} on {address}",
            file=sys.stderr,
        )
        serve_until_stopped(address, stop, on_ready)
    finally:
        replayer.stop()
        server.stop(grace=1.0)
    return 0
