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


class JoinTable:
    def __init__(self) -> None:
        self._pending: dict[PendingRequest, None] = {}  # insertion order is expiry order
        self._by_key: dict[JoinKey, deque[PendingRequest]] = {}
        self._clients: dict[tuple[str, ...], deque[PendingRequest]] = {}

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
        self._by_key.setdefault(request.join_key, deque()).append(request)
        if request.exchange_key is not None and request.kind != SpanKind.SERVER:
            self._clients.setdefault(request.exchange_key, deque()).append(request)

    def take(self, key: JoinKey) -> PendingRequest | None:
        """The oldest request filed under `key`, removed from the table."""
        queue = self._by_key.get(key)
        if not queue:
            return None
        request = queue.popleft()
        if not queue:
            del self._by_key[key]
        self._forget(request)
        return request

    def remove(self, request: PendingRequest) -> None:
        queue = self._by_key.get(request.join_key)
        if queue is not None:
            _discard(queue, request)
            if not queue:
                del self._by_key[request.join_key]
        self._forget(request)

    def link_client(self, server: PendingRequest) -> bool:
        """Make the CLIENT span of the same exchange, if seen, the parent of `server`."""
        key = server.exchange_key
        clients = self._clients.get(key) if key is not None else None
        if not clients:
            return False
        client = clients.popleft()
        if not clients:
            del self._clients[key]  # type: ignore[arg-type]
        client.exchange_key = None
        server.trace_id, server.parent_span_id = client.trace_id, client.span_id
        server.trace_state = client.trace_state
        server.linked = True
        return True

    def _forget(self, request: PendingRequest) -> None:
        del self._pending[request]
        key = request.exchange_key
        if key is not None and request.kind != SpanKind.SERVER:
            clients = self._clients.get(key)
            if clients is not None:
                _discard(clients, request)
                if not clients:
                    del self._clients[key]


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


def _discard(queue: deque[PendingRequest], request: PendingRequest) -> None:
    if queue and queue[0] is request:
        queue.popleft()
    elif request in queue:
        queue.remove(request)
