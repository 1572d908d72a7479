"""The server's event buffer: a fixed-size ring like Hubble's, with followers and statistics.

Producers (replay, sidecar, tests) append; GetFlows readers take snapshots or
wait on a Condition for events after a sequence number, so following never
busy-waits. Sequence numbers only grow, which lets a slow follower learn how
many events the ring overwrote before it could read them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from hubble_bridge.api import observer_pb2
from hubble_bridge.flows.codec import event_time_ns

GetFlowsResponse = observer_pb2.GetFlowsResponse

_RATE_WINDOW_NS = 60 * 1_000_000_000
_NAMESPACE_WINDOW_NS = 3600 * 1_000_000_000


@dataclass(frozen=True)
class Batch:
    """What a follower gets: events after its position, the next position, and how many it missed."""

    events: list[GetFlowsResponse]
    next_seq: int
    lost: int
    closed: bool


class EventStore:
    def __init__(self, max_flows: int = 4095) -> None:
        if max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        self.max_flows = max_flows
        self._ring: list[GetFlowsResponse | None] = [None] * max_flows
        self._next_seq = 0
        self._cond = threading.Condition()
        self._closed = False
        self._wakeups = 0
        self._started_ns = time.monotonic_ns()
        self._node_seen: Counter[str] = Counter()
        self._node_buffered: Counter[str] = Counter()
        self._namespaces: dict[tuple[str, str], int] = {}  # (cluster, namespace) -> last event time

    def append(self, response: GetFlowsResponse) -> None:
        self.extend((response,))

    def extend(self, responses: Iterable[GetFlowsResponse]) -> None:
        """Append events under one lock acquisition and wake every follower once."""
        with self._cond:
            for response in responses:
                self._put(response)
            self._cond.notify_all()

    def _put(self, response: GetFlowsResponse) -> None:
        slot = self._next_seq % self.max_flows
        evicted = self._ring[slot]
        if evicted is not None:
            self._node_buffered[_node_of(evicted)] -= 1
        self._ring[slot] = response
        self._next_seq += 1
        node = _node_of(response)
        self._node_seen[node] += 1
        self._node_buffered[node] += 1
        if response.HasField("flow"):
            when = event_time_ns(response)
            for endpoint in (response.flow.source, response.flow.destination):
                if endpoint.namespace:
                    cluster = endpoint.cluster_name or _cluster_of(node)
                    key = (cluster, endpoint.namespace)
                    self._namespaces[key] = max(when, self._namespaces.get(key, when))

    def close(self) -> None:
        """Ends every follow stream (server shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wake(self) -> None:
        """Make waiting followers return (empty-handed) so they can notice a cancelled call or shutdown."""
        with self._cond:
            self._wakeups += 1
            self._cond.notify_all()

    def _oldest_seq(self) -> int:
        return max(0, self._next_seq - self.max_flows)

    def _slice(self, start: int) -> list[GetFlowsResponse]:
        return [self._ring[seq % self.max_flows] for seq in range(start, self._next_seq)]  # type: ignore[misc]

    def snapshot(self) -> Batch:
        """Every buffered event, oldest first, and the position a follower continues from."""
        with self._cond:
            return Batch(self._slice(self._oldest_seq()), self._next_seq, 0, self._closed)

    def wait_after(self, seq: int, timeout: float) -> Batch:
        """Events from position `seq` on, waiting up to `timeout` seconds for some to arrive."""
        with self._cond:
            wakeups = self._wakeups
            self._cond.wait_for(
                lambda: self._next_seq > seq or self._closed or self._wakeups != wakeups, timeout
            )
            start = max(seq, self._oldest_seq())
            return Batch(self._slice(start), self._next_seq, start - seq, self._closed)

    @property
    def uptime_ns(self) -> int:
        return time.monotonic_ns() - self._started_ns

    def counts(self) -> tuple[int, int]:
        """(events in the buffer, events ever appended)."""
        with self._cond:
            return self._next_seq - self._oldest_seq(), self._next_seq

    def flows_rate(self) -> float:
        """Events per second over the last minute of event time (the newest event's clock)."""
        with self._cond:
            if self._next_seq == 0:
                return 0.0
            newest = event_time_ns(self._ring[(self._next_seq - 1) % self.max_flows])  # type: ignore[arg-type]
            count = 0
            for seq in range(self._next_seq - 1, self._oldest_seq() - 1, -1):
                if event_time_ns(self._ring[seq % self.max_flows]) < newest - _RATE_WINDOW_NS:  # type: ignore[arg-type]
                    break
                count += 1
        return count / (_RATE_WINDOW_NS / 1e9)

    def nodes(self) -> list[tuple[str, int, int]]:
        """(node name, events buffered, events seen) per node, by name."""
        with self._cond:
            return sorted(
                (name, self._node_buffered[name], seen) for name, seen in self._node_seen.items() if name
            )

    def namespaces(self) -> list[tuple[str, str]]:
        """(cluster, namespace) with flows in the hour before the newest one, sorted."""
        with self._cond:
            if not self._namespaces:
                return []
            horizon = max(self._namespaces.values()) - _NAMESPACE_WINDOW_NS
            return sorted(key for key, last in self._namespaces.items() if last >= horizon)


def _node_of(response: GetFlowsResponse) -> str:
    return response.node_name or response.flow.node_name


def _cluster_of(node_name: str) -> str:
    # Cilium writes "cluster/node" when the cluster has a non-default name.
    cluster, sep, _ = node_name.partition("/")
    return cluster if sep else ""
