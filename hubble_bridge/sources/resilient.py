"""A Relay source that survives restarts: reconnect with backoff, resume by time, drop duplicates.

On stream loss it reconnects with exponential backoff and jitter, asks Relay
for `since` = a little before the last event time it saw, and drops events it
has already delivered (by uuid, else by a hash of time, node and 5-tuple), so
nothing is lost or doubled while Relay's buffer still holds the flows. It
remembers at most MAX_KEYS events, whatever the rate; a resume then starts after
the newest one it forgot.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from google.protobuf.message import DecodeError

from hubble_bridge.api import keys_pb2, observer_pb2
from hubble_bridge.backoff import backoff_s
from hubble_bridge.errors import BridgeError, ConfigError
from hubble_bridge.filters import filters_from_json
from hubble_bridge.flows.codec import event_time_ns
from hubble_bridge.sources.relay import FlowStream, RelayClient, build_request, lenient_decode

log = logging.getLogger(__name__)

GetFlowsResponse = observer_pb2.GetFlowsResponse
EventKey = keys_pb2.EventKey
DEDUPE_WINDOW_NS = 5_000_000_000
# Keys the dedupe remembers at most, whatever the rate: ~200 bytes each, so ~20 MB. At 50k flows/s the
# time window alone would keep 500 000 (10 s of them, ~100 MB). Past it the oldest are forgotten, and a
# resume asks for nothing at or before the newest forgotten time: all it replays is remembered.
MAX_KEYS = 100_000
FUTURE_LIMIT_NS = 3600 * 1_000_000_000  # Relay merges node streams in time order within a small window


def event_key(response: GetFlowsResponse | EventKey) -> object:
    """What tells an event from any other: the flow's uuid, else a tuple of what identifies it.

    The uuid is the key itself (a str never equals the tuples); it is read first because it is
    there in nearly every flow, and this runs for every event.
    """
    f = response.flow  # an empty Flow when the event is not one: no uuid
    if f.uuid:
        return f.uuid
    if response.HasField("flow"):
        l4 = f.l4
        proto = l4.WhichOneof("protocol") or ""
        ports = (
            (getattr(l4, proto).source_port, getattr(l4, proto).destination_port)
            if proto in ("TCP", "UDP", "SCTP")
            else ()
        )
        return (
            event_time_ns(response),
            f.node_name,
            f.IP.source,
            f.IP.destination,
            proto,
            ports,
            f.verdict,
            f.Type,
            f.l7.type,
        )
    return (event_time_ns(response), response.node_name, response.SerializeToString(deterministic=True))


def decode_event_key(data: bytes) -> EventKey | GetFlowsResponse | None:
    """What the dedupe reads of an event's bytes; None when protobuf refuses them.

    Usually the EventKey view (time and uuid only: half the cost of a full decode in the reader
    process, which never maps the event). An event the view cannot key by uuid (not a flow, or a
    flow without one) is decoded in full, as event_key then reads more of it.
    """
    try:
        view = EventKey.FromString(data)
    except DecodeError:
        return None
    if view.flow.uuid:
        return view
    return lenient_decode(data)


class ResilientRelaySource:
    def __init__(
        self,
        source_config: object,
        *,
        on_reconnect: Callable[[], None] | None = None,
        max_backoff_s: float = 30.0,
        raw: bool = False,
        max_keys: int = MAX_KEYS,
    ) -> None:
        cfg = source_config
        self.target: str = cfg.relay  # type: ignore[attr-defined]
        self.name = f"relay {self.target}"
        self._tls = cfg.tls  # type: ignore[attr-defined]
        self._whitelist = filters_from_json(cfg.whitelist) if cfg.whitelist else []  # type: ignore[attr-defined]
        self._blacklist = filters_from_json(cfg.blacklist) if cfg.blacklist else []  # type: ignore[attr-defined]
        self._first: int = cfg.first  # type: ignore[attr-defined]
        self._since_ns = parse_since(cfg.since) if cfg.since else None  # type: ignore[attr-defined]
        self._number: int = cfg.number  # type: ignore[attr-defined]
        self._on_reconnect = on_reconnect
        self._raw = raw  # yield each event's bytes as received (decoded here only to drop duplicates)
        self._closed = threading.Event()
        self._client: RelayClient | None = None
        self._lock = threading.Lock()
        self._max_backoff_s = max_backoff_s
        self._last_ns = 0
        self._future_limit_ns = 0  # now + FUTURE_LIMIT_NS, refreshed only when a time passes it
        self._recent: deque[tuple[int, object]] = deque()
        self._recent_keys: set[object] = set()
        self._max_keys = max_keys
        self._forgotten_ns = 0  # the newest time among keys forgotten for MAX_KEYS
        self.duplicates = 0
        self._invalid = 0  # messages earlier streams carried that protobuf could not decode
        self._stream: FlowStream | None = None  # the open stream, which counts its own
        self.connected = threading.Event()  # a stream is open (readiness)

    @property
    def invalid_messages(self) -> int:
        """Messages the streams carried that protobuf could not decode, the open stream's included."""
        stream = self._stream
        return self._invalid + (stream.undecodable if stream is not None else 0)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._client is not None:
                self._client.close()

    def __iter__(self) -> Iterator[GetFlowsResponse | bytes]:
        attempt = 0
        while not self._closed.is_set():
            try:
                client = RelayClient(self.target, self._tls if self._tls.active else None)
                with self._lock:
                    if self._closed.is_set():
                        client.close()
                        return
                    self._client = client
                if attempt == 0:
                    self._describe(client)
                resumed = self._last_ns > 0
                request = build_request(
                    follow=not self._first,
                    number=0 if resumed else self._number,
                    first=bool(self._first) and not resumed,
                    since_ns=self.resume_since_ns() if resumed else self._since_ns,
                    until_ns=None,
                    whitelist=self._whitelist,
                    blacklist=self._blacklist,
                    field_mask_paths=(),
                )
                if self._first and not resumed:
                    request.number = self._first
                raw = self._raw
                stream = self._stream = client.get_flows(request, raw=raw)
                self.connected.set()
                try:
                    for response in stream:
                        attempt = 0
                        # Raw bytes are mapped (and decoded in full) elsewhere: here only their key is read.
                        event = decode_event_key(response) if raw else response  # type: ignore[arg-type]
                        if event is None:
                            self._invalid += 1
                            continue
                        if self._seen(event):  # type: ignore[arg-type]
                            self.duplicates += 1
                            continue
                        yield response
                finally:
                    self._stream = None
                    self._invalid += stream.undecodable
                if self._first:
                    return  # a bounded request ended normally
                raise BridgeError(f"stream from {self.target} ended")
            except BridgeError as exc:
                self.connected.clear()
                if self._closed.is_set():
                    return
                attempt += 1
                delay = backoff_s(attempt, 0.2, self._max_backoff_s, jitter_s=0.5)
                log.warning("%s; reconnecting in %.1fs (attempt %d)", exc, delay, attempt)
                if self._on_reconnect:
                    self._on_reconnect()
                if self._closed.wait(delay):
                    return
            finally:
                with self._lock:
                    if self._client is not None:
                        self._client.close()
                        self._client = None

    def _describe(self, client: RelayClient) -> None:
        """ServerStatus and GetNodes at connect: what the user needs to know the source is right."""
        status = client.server_status()
        connected = status.num_connected_nodes.value if status.HasField("num_connected_nodes") else None
        nodes = f", {connected} nodes connected" if connected is not None else ""
        if status.HasField("num_unavailable_nodes") and status.num_unavailable_nodes.value:
            nodes += (
                f", {status.num_unavailable_nodes.value} unavailable: {', '.join(status.unavailable_nodes)}"
            )
        log.info(
            "connected to %s: %d flows buffered, version %s%s",
            self.target,
            status.num_flows,
            status.version or "unknown",
            nodes,
        )
        try:
            for node in client.get_nodes().nodes:
                log.debug("node %s: %s, %s flows", node.name, node.version or "?", node.num_flows)
        except BridgeError as exc:  # a bare Hubble server has no GetNodes: not a reason to stop
            log.debug("GetNodes on %s: %s", self.target, exc)

    def _seen(self, response: GetFlowsResponse | EventKey) -> bool:
        # Runs for every event: the common case (a flow with a uuid, the response time set) reads
        # three fields.
        stamp = response.time
        t = stamp.seconds * 1_000_000_000 + stamp.nanos or event_time_ns(response)
        key = event_key(response)
        recent_keys = self._recent_keys
        if key in recent_keys:
            return True
        self._recent.append((t, key))
        recent_keys.add(key)
        # A flow stamped far in the future (a broken clock, a hostile peer) must not become the resume point.
        if t > self._last_ns:
            if t > self._future_limit_ns:
                self._future_limit_ns = time.time_ns() + FUTURE_LIMIT_NS
            if t <= self._future_limit_ns:
                self._last_ns = t
                horizon = t - 2 * DEDUPE_WINDOW_NS
                recent = self._recent
                while recent[0][0] < horizon:
                    recent_keys.discard(recent.popleft()[1])
        if len(recent_keys) > self._max_keys:
            forgotten, old_key = self._recent.popleft()
            recent_keys.discard(old_key)
            # Never past the resume point: a far-future time forgotten must not skip the whole replay.
            forgotten = min(forgotten, self._last_ns)
            if forgotten > self._forgotten_ns:
                self._forgotten_ns = forgotten
        return False

    def resume_since_ns(self) -> int:
        """Where a resumed stream starts: the window before the last event time, but after every time
        whose keys were forgotten (MAX_KEYS), so that each event replayed is one the dedupe remembers."""
        return max(self._last_ns - DEDUPE_WINDOW_NS, self._forgotten_ns + 1)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}


def parse_since(value: str, now_ns: int | None = None) -> int:
    """`since` as Hubble takes it: an RFC 3339 time, or a duration back from now ("90s", "5m", "1h30m")."""
    text = value.strip()
    if _DURATION.fullmatch(text) or (text and _DURATION.sub("", text) == "" and _DURATION.match(text)):
        total = sum(float(n) * _UNIT_NS[u] for n, u in _DURATION.findall(text))
        return (now_ns if now_ns is not None else time.time_ns()) - int(total)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"source.since: {value!r} is neither an RFC 3339 time nor a duration like 5m"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000
