"""The table of L7 requests waiting for their response, and of client calls a server may link to.

Keys (see spans.py for the rules): a request is filed under its x-request-id key
when it has one, else under its connection key; a response looks up the same
keys, first in, first out. Client requests with a correlation key (spans_context)
are also filed under it until their response comes, so that the server side of
the same exchange can take the client span as its parent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hubble_bridge.api import flow_pb2
from hubble_bridge.mapping.spans_attrs import Net
from hubble_bridge.telemetry import SpanKind

JoinKey = tuple[object, ...]


@dataclass(slots=True, eq=False)  # compared and hashed by identity: it is a dict key and a deque item
class PendingRequest:
    flow: flow_pb2.Flow
    node: str
    time_ns: int
    kind: SpanKind
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    trace_state: str
    join_key: JoinKey
    exchange_key: tuple[str, ...] | None  # client: filed for the server side; server: to look up
    linked: bool = False  # server: the parent is the CLIENT span


# A key's requests, oldest first: the request itself while it is alone under its key (nearly
# always: x-request-ids and client ports are unique), a deque from the second on. A deque per
# key costs more than the rest of filing a request.
_Queued = PendingRequest | deque[PendingRequest]


class JoinTable:
    def __init__(self) -> None:
        self._pending: dict[PendingRequest, None] = {}  # insertion order is expiry order
        self._by_key: dict[JoinKey, _Queued] = {}
        self._clients: dict[tuple[str, ...], _Queued] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[PendingRequest]:
        return iter(list(self._pending))

    def oldest(self) -> PendingRequest | None:
        return next(iter(self._pending), None)

    def pop_expired(self, cutoff_ns: int) -> PendingRequest | None:
        """The oldest request if it arrived at or before `cutoff_ns`, removed from the table."""
        for request in self._pending:
            if request.time_ns > cutoff_ns:
                return None
            self.remove(request)
            return request
        return None

    def add(self, request: PendingRequest) -> None:
        self._pending[request] = None
        _file(self._by_key, request.join_key, request)
        if request.exchange_key is not None and request.kind != SpanKind.SERVER:
            _file(self._clients, request.exchange_key, request)

    def take(self, key: JoinKey) -> PendingRequest | None:
        """The oldest request filed under `key`, removed from the table."""
        request = _pop_first(self._by_key, key)
        if request is not None:
            self._forget(request)
        return request

    def remove(self, request: PendingRequest) -> None:
        _discard(self._by_key, request.join_key, request)
        self._forget(request)

    def link_client(self, server: PendingRequest) -> bool:
        """Make the CLIENT span of the same exchange, if seen, the parent of `server`."""
        key = server.exchange_key
        client = _pop_first(self._clients, key) if key is not None else None
        if client is None:
            return False
        client.exchange_key = None
        server.trace_id, server.parent_span_id = client.trace_id, client.span_id
        server.trace_state = client.trace_state
        server.linked = True
        return True

    def _forget(self, request: PendingRequest) -> None:
        del self._pending[request]
        key = request.exchange_key
        if key is not None and request.kind != SpanKind.SERVER:
            _discard(self._clients, key, request)


def connection_key(net: Net, node: str, reply: bool, *narrow: str) -> JoinKey:
    """The request's 5-tuple key on its node and direction, narrowed by `narrow`.

    A request filed under x-request-id is looked up by connection only when a response
    without that id (or with another) comes: a REQUEST with the id does not need it.
    """
    direction, _, _, source_ip, source_port, destination_ip, destination_port = net
    # A response runs server -> client: reversed, its tuple is the request's.
    if reply:
        return (node, direction, destination_ip, destination_port, source_ip, source_port, *narrow)
    return (node, direction, source_ip, source_port, destination_ip, destination_port, *narrow)


def _file(table: dict[Any, _Queued], key: object, request: PendingRequest) -> None:
    queued = table.get(key)
    if queued is None:
        table[key] = request
    elif type(queued) is deque:
        queued.append(request)
    else:
        table[key] = deque((queued, request))  # type: ignore[arg-type]


def _pop_first(table: dict[Any, _Queued], key: object) -> PendingRequest | None:
    queued = table.get(key)
    if queued is None:
        return None
    if type(queued) is not deque:
        del table[key]
        return queued  # type: ignore[return-value]
    request = queued.popleft()  # type: ignore[union-attr]
    if not queued:
        del table[key]
    return request


def _discard(table: dict[Any, _Queued], key: object, request: PendingRequest) -> None:
    queued = table.get(key)
    if queued is request:
        del table[key]
    elif type(queued) is deque and request in queued:  # type: ignore[operator]
        queued.remove(request)  # type: ignore[union-attr]
        if not queued:
            del table[key]
