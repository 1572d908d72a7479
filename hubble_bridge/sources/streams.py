"""A changing set of GetFlows streams read as one FlowSource (a worker's nodes or relays).

One reader thread per stream appends to a shared buffer that the pipeline takes
whole; a full buffer holds the readers back (and gRPC flow control the servers).
A stream's position is the time of the last event it handed over; a stream
removed by `apply` reports it so that its next reader, maybe in another process,
starts after it instead of reading those flows again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from hubble_bridge.api import observer_pb2
from hubble_bridge.errors import BridgeError
from hubble_bridge.flows.codec import event_time_ns
from hubble_bridge.sources.base import FlowSource
from hubble_bridge.sources.peers import StreamSpec

log = logging.getLogger(__name__)

GetFlowsResponse = observer_pb2.GetFlowsResponse
PENDING_LIMIT = 8192  # events read but not yet taken by the pipeline, over all streams


@dataclass(eq=False)
class _Stream:
    spec: StreamSpec
    source: FlowSource
    resume_ns: int | None  # drop events at or before this time (handed over from another reader)
    last: GetFlowsResponse | None = None
    stopped: bool = False
    thread: threading.Thread = field(init=False)

    def position(self) -> int | None:
        return event_time_ns(self.last) if self.last is not None else self.resume_ns


class StreamSet:
    """One FlowSource over a changing set of streams: a reader thread each, events handed over in batches.

    `position` of a stream is the time of the last event it handed to the pipeline;
    a stream removed with `apply` reports it, so its next reader can start after it.
    """

    name = "streams"

    def __init__(self, open_stream: Callable[[StreamSpec, int | None], FlowSource]) -> None:
        self._open = open_stream
        self._cond = threading.Condition()
        self._pending: list[GetFlowsResponse] = []
        self._waiting = False
        self._closed = False
        self._streams: dict[str, _Stream] = {}
        self._apply_lock = threading.Lock()

    def apply(self, wanted: Mapping[str, tuple[StreamSpec, int | None]]) -> dict[str, int | None]:
        """Read exactly the `wanted` streams (key -> spec, start after this time); returns the released ones.

        A stream whose spec changed (PEER_UPDATED) is reopened from its own position.
        """
        released: dict[str, int | None] = {}
        with self._apply_lock:
            for key, stream in list(self._streams.items()):
                if key not in wanted or wanted[key][0] != stream.spec:
                    released[key] = self._stop(stream)
                    del self._streams[key]
            for key, (spec, resume_ns) in wanted.items():
                if key in self._streams or self._closed:
                    continue
                start = released.pop(key) if key in released else resume_ns
                stream = _Stream(spec, self._open(spec, start), start)
                stream.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
                self._streams[key] = stream
                stream.thread.start()
        return released

    def positions(self) -> dict[str, int]:
        with self._apply_lock:
            streams = list(self._streams.values())
        return {s.spec.key: pos for s in streams if (pos := s.position()) is not None}

    def keys(self) -> list[str]:
        with self._apply_lock:
            return sorted(self._streams)

    def _stop(self, stream: _Stream) -> int | None:
        stream.stopped = True
        stream.source.close()
        with self._cond:
            self._cond.notify_all()
        stream.thread.join(timeout=10)
        return stream.position()

    def _pump(self, stream: _Stream) -> None:
        cond, limit = self._cond, PENDING_LIMIT
        resume = stream.resume_ns
        try:
            for response in stream.source:
                if resume is not None:
                    if event_time_ns(response) <= resume:
                        continue  # already read by the stream's previous reader
                    resume = None
                with cond:
                    while len(self._pending) >= limit:
                        if stream.stopped:
                            return
                        cond.wait(1.0)
                    self._pending.append(response)
                    if self._waiting:
                        cond.notify_all()
                stream.last = response
                if stream.stopped:
                    return
        except BridgeError as exc:
            log.error("stream %s stopped: %s", stream.spec.key, exc)

    def __iter__(self) -> Iterator[GetFlowsResponse]:
        cond = self._cond
        while True:
            with cond:
                while not self._pending and not self._closed:
                    self._waiting = True
                    cond.wait(1.0)
                self._waiting = False
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
                cond.notify_all()  # readers held back by the limit may go on
            yield from batch

    def close(self) -> None:
        with self._apply_lock:
            self._closed = True
            streams = list(self._streams.values())
        for stream in streams:
            self._stop(stream)
        with self._cond:
            self._cond.notify_all()
