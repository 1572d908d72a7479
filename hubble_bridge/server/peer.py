"""`peer.Peer` served from a list of nodes: what a Cilium agent tells Relay about Hubble servers.

For tests and for multi-node demos built from several `replay` servers: Notify
sends every known peer as PEER_ADDED, then streams each change (add, update,
delete) to every open Notify call, as the agent's peer service does.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass

import grpc

from hubble_bridge.api import peer_pb2, peer_pb2_grpc
from hubble_bridge.errors import BridgeError
from hubble_bridge.server.address import bind, parse_listen, serve_until_stopped
from hubble_bridge.tls import ServerTlsOptions

ChangeNotification = peer_pb2.ChangeNotification
# Safety net only: Notify loops are woken by changes, cancellation and shutdown.
_WAKE_S = 5.0


@dataclass(frozen=True)
class PeerEntry:
    """One node's Hubble server; `tls_server_name` set means the node serves TLS under that name."""

    name: str
    address: str
    tls_server_name: str | None = None

    def notification(self, kind: int) -> ChangeNotification:
        note = ChangeNotification(name=self.name, address=self.address, type=kind)  # type: ignore[arg-type]
        if self.tls_server_name is not None:
            note.tls.server_name = self.tls_server_name
        return note


def parse_peer_entry(value: str) -> PeerEntry:
    """ "name=address" or "name=address@tls-server-name" (a `--peer` argument)."""
    name, sep, rest = value.partition("=")
    address, at, server_name = rest.partition("@")
    if not sep or not name.strip() or not address.strip() or (at and not server_name):
        raise BridgeError(f"invalid peer {value!r}: expected NAME=ADDRESS or NAME=ADDRESS@TLS_SERVER_NAME")
    return PeerEntry(name.strip(), address.strip(), server_name.strip() if at else None)


class PeerServicer(peer_pb2_grpc.PeerServicer):
    def __init__(self, peers: Iterable[PeerEntry] = ()) -> None:
        self._lock = threading.Lock()
        self._peers: dict[str, PeerEntry] = {p.name: p for p in peers}
        self._subscribers: set[queue.SimpleQueue[ChangeNotification | None]] = set()
        self._stopping = False

    def peers(self) -> list[PeerEntry]:
        with self._lock:
            return list(self._peers.values())

    def upsert(self, entry: PeerEntry) -> None:
        """PEER_ADDED for a new name, PEER_UPDATED when a known name changes address or TLS."""
        with self._lock:
            old = self._peers.get(entry.name)
            if old == entry:
                return
            self._peers[entry.name] = entry
            kind = peer_pb2.PEER_ADDED if old is None else peer_pb2.PEER_UPDATED
            self._broadcast(entry.notification(kind))

    def remove(self, name: str) -> None:
        with self._lock:
            entry = self._peers.pop(name, None)
            if entry is not None:
                self._broadcast(entry.notification(peer_pb2.PEER_DELETED))

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._broadcast(None)

    def _broadcast(self, note: ChangeNotification | None) -> None:
        for subscriber in self._subscribers:
            subscriber.put(note)

    def Notify(
        self, request: peer_pb2.NotifyRequest, context: grpc.ServicerContext
    ) -> Iterator[ChangeNotification]:
        inbox: queue.SimpleQueue[ChangeNotification | None] = queue.SimpleQueue()
        with self._lock:
            # Subscribing under the lock that guards changes: no change is missed or sent twice.
            known = [p.notification(peer_pb2.PEER_ADDED) for p in self._peers.values()]
            self._subscribers.add(inbox)
            stopping = self._stopping
        context.add_callback(lambda: inbox.put(None))
        # Headers now, not with the first change: an empty cluster is still a live stream.
        context.send_initial_metadata(())
        try:
            yield from known
            while not stopping and context.is_active():
                with contextlib.suppress(queue.Empty):
                    note = inbox.get(timeout=_WAKE_S)
                    if note is None:
                        return
                    yield note
        finally:
            with self._lock:
                self._subscribers.discard(inbox)


class PeerServer:
    """The Peer service on `listen` ("host:port", ":port", "unix:///path"); port 0 picks a free port.

    With `tls`, it serves TLS like the `hubble-peer` Service in front of the agents.
    """

    def __init__(
        self,
        listen: str,
        peers: Iterable[PeerEntry] = (),
        tls: ServerTlsOptions | None = None,
        *,
        max_workers: int = 8,
    ) -> None:
        self._bind = parse_listen(listen).grpc_address()
        self._listen = listen
        self._tls = tls
        self._max_workers = max_workers
        self.servicer = PeerServicer(peers)
        self._server: grpc.Server | None = None
        self.address: str | None = None

    def start(self) -> str:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="peer"),
            maximum_concurrent_rpcs=self._max_workers,
        )
        peer_pb2_grpc.add_PeerServicer_to_server(self.servicer, server)
        self.address = bind(server, self._bind, self._listen, self._tls)
        server.start()
        self._server = server
        return self.address

    def upsert(self, entry: PeerEntry) -> None:
        self.servicer.upsert(entry)

    def remove(self, name: str) -> None:
        self.servicer.remove(name)

    def stop(self, grace: float | None = 1.0) -> None:
        """Ends Notify streams and stops serving; safe before start() and twice."""
        self.servicer.stop()
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None


def run_peer_server(
    listen: str,
    peers: Sequence[str],
    *,
    stop: threading.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serves `peers` ("name=address[@tls-server-name]") until `stop` is set or Ctrl-C."""
    entries = [parse_peer_entry(value) for value in peers]
    server = PeerServer(listen, entries)
    stop = stop or threading.Event()
    try:
        address = server.start()
        print(f"hubble-otlp: serving {len(entries)} peer(s) on {address}", file=sys.stderr)
        serve_until_stopped(address, stop, on_ready)
    finally:
        server.stop()
    return 0
