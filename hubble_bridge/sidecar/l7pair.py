"""Pairing L7 responses with their requests: DNS by transaction id and 5-tuple, HTTP/1.x in order.

Pure (no I/O) and bounded: at most `capacity` queries or connections are
remembered (the least recently used give way, counted), and requests older than
`timeout_ns` are dropped unanswered (counted) when `expire` runs. Every count
ends up in the sidecar's self-metrics.

HTTP/1.x answers requests in order on a connection, pipelined or not, so each
final response takes the oldest request still open (1xx interim responses take
none). A segment that starts inside a body already announced by Content-Length
is skipped even when its first bytes happen to look like a message start.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field

from hubble_bridge.sidecar import dnsmsg
from hubble_bridge.sidecar.http1 import HttpError, HttpHead, parse_head, starts_message
from hubble_bridge.sidecar.records import IPPROTO_TCP, HttpRecord, L7Message

Side = tuple[str, int]
MAX_PIPELINED = 64  # open requests remembered per connection


class Counts(dict[str, int]):
    def bump(self, name: str, by: int = 1) -> None:
        self[name] = self.get(name, 0) + by


@dataclass(slots=True)
class _Query:
    time_ns: int
    message: dnsmsg.DnsMessage


class DnsPairs:
    """DNS queries waiting for their response, keyed by protocol, both sides and transaction id."""

    def __init__(self, dns_ports: list[int], capacity: int, timeout_ns: int) -> None:
        self.dns_ports = frozenset(dns_ports)
        self.capacity = capacity
        self.timeout_ns = timeout_ns
        self._open: OrderedDict[tuple[int, Side, Side, int], _Query] = OrderedDict()
        self.counts = Counts()

    def messages(
        self, time_ns: int, protocol: int, source: Side, destination: Side, payload: bytes, ifindex: int = 0
    ) -> list[L7Message]:
        """The DNS messages in one packet's payload (several for TCP), each paired where it can be."""
        raw = dnsmsg.tcp_messages(payload) if protocol == IPPROTO_TCP else [payload]
        out = []
        for data in raw:
            try:
                message = dnsmsg.parse(data)
            except dnsmsg.DnsError:
                self.counts.bump("dns.invalid")
                continue
            if message.truncated:
                self.counts.bump("dns.answers_cut")
            out.append(self._pair(time_ns, protocol, source, destination, message, ifindex))
        return out

    def _pair(
        self,
        time_ns: int,
        protocol: int,
        source: Side,
        destination: Side,
        message: dnsmsg.DnsMessage,
        ifindex: int,
    ) -> L7Message:
        if not message.response:
            key = (protocol, source, destination, message.id)
            if key not in self._open:
                self._open[key] = _Query(time_ns, message)
                if len(self._open) > self.capacity:
                    self._open.popitem(last=False)
                    self.counts.bump("dns.queries_evicted")
            self.counts.bump("dns.queries")
            return L7Message(time_ns, protocol, source, destination, False, ifindex=ifindex, dns=message)
        self.counts.bump("dns.responses")
        query = self._open.pop((protocol, destination, source, message.id), None)
        latency = 0
        if query is None:
            self.counts.bump("dns.responses_unmatched")
        else:
            latency = max(0, time_ns - query.time_ns)
        return L7Message(time_ns, protocol, destination, source, True, latency, ifindex, dns=message)

    def expire(self, now_ns: int) -> None:
        deadline = now_ns - self.timeout_ns
        while self._open:
            key, query = next(iter(self._open.items()))
            if query.time_ns > deadline:
                break
            del self._open[key]
            self.counts.bump("dns.queries_unanswered")

    def __len__(self) -> int:
        return len(self._open)


@dataclass(slots=True)
class _Request:
    time_ns: int
    head: HttpHead


@dataclass(slots=True)
class _Connection:
    client: Side
    server: Side
    last_ns: int
    open: deque[_Request] = field(default_factory=deque)
    next_seq: dict[Side, int] = field(default_factory=dict)  # where the sender's next message starts


class HttpStreams:
    """HTTP/1.x connections: from TCP segments (with sequence numbers) or from TLS plaintext (without)."""

    def __init__(self, capacity: int, timeout_ns: int) -> None:
        self.capacity = capacity
        self.timeout_ns = timeout_ns
        self._connections: OrderedDict[Hashable, _Connection] = OrderedDict()
        self.counts = Counts()

    def messages(
        self,
        key: Hashable,
        time_ns: int,
        sender: Side,
        receiver: Side,
        data: bytes,
        seq: int | None = None,
    ) -> list[L7Message]:
        """The message heads at the start of `data`, sent by `sender`; `key` names the connection."""
        connection = self._connections.get(key)
        if connection is not None and seq is not None:
            expected = connection.next_seq.get(sender)
            if expected is not None and 0 < (expected - seq) & 0xFFFFFFFF < 0x80000000:
                self.counts.bump("http.body_segments_skipped")
                return []
        out: list[L7Message] = []
        offset = 0
        while offset < len(data) and starts_message(data[offset : offset + 8]):
            try:
                head = parse_head(data, offset)
            except HttpError:
                self.counts.bump("http.invalid")
                break
            client, server = (sender, receiver) if head.request else (receiver, sender)
            connection = self._connection(key, client, server, time_ns)
            message = (
                self._request(connection, head, time_ns)
                if head.request
                else self._response(connection, head, time_ns)
            )
            if message is not None:
                out.append(message)
            if head.body_length is None:
                connection.next_seq.pop(sender, None)
                break
            offset += head.head_length + head.body_length
            if seq is not None:
                connection.next_seq[sender] = (seq + offset) & 0xFFFFFFFF
        return out

    def _connection(self, key: Hashable, client: Side, server: Side, time_ns: int) -> _Connection:
        connection = self._connections.get(key)
        if connection is None:
            connection = self._connections[key] = _Connection(client, server, time_ns)
            if len(self._connections) > self.capacity:
                _, evicted = self._connections.popitem(last=False)
                self.counts.bump("http.connections_evicted")
                self.counts.bump("http.requests_unanswered", len(evicted.open))
        else:
            self._connections.move_to_end(key)
            connection.last_ns = time_ns
        return connection

    def _request(self, connection: _Connection, head: HttpHead, time_ns: int) -> L7Message:
        self.counts.bump("http.requests")
        if len(connection.open) >= MAX_PIPELINED:
            connection.open.popleft()
            self.counts.bump("http.requests_unanswered")
        connection.open.append(_Request(time_ns, head))
        record = HttpRecord(head.method, head.target, head.header("host"), head.protocol, 0, head.headers)
        return L7Message(time_ns, IPPROTO_TCP, connection.client, connection.server, False, http=record)

    def _response(self, connection: _Connection, head: HttpHead, time_ns: int) -> L7Message | None:
        if 100 <= head.code < 200:
            return None  # interim: the final response still answers the request
        self.counts.bump("http.responses")
        if connection.open:
            request = connection.open.popleft()
            asked = request.head
            record = HttpRecord(asked.method, asked.target, asked.header("host"), head.protocol, head.code)
            record.headers = asked.headers
            latency = max(0, time_ns - request.time_ns)
        else:
            self.counts.bump("http.responses_unmatched")
            record = HttpRecord("", "", "", head.protocol, head.code, [])
            latency = 0
        return L7Message(
            time_ns, IPPROTO_TCP, connection.client, connection.server, True, latency, http=record
        )

    def expire(self, now_ns: int) -> None:
        deadline = now_ns - self.timeout_ns
        for key in [k for k, c in self._connections.items() if c.last_ns <= deadline]:
            connection = self._connections.pop(key)
            if connection.open:
                self.counts.bump("http.requests_unanswered", len(connection.open))

    def __len__(self) -> int:
        return len(self._connections)
