"""`observer.Observer` served from an EventStore: the API of Hubble Relay, on a gRPC thread pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
from google.protobuf.wrappers_pb2 import UInt32Value

from hubble_bridge import __version__
from hubble_bridge.api import flow_pb2, observer_pb2, observer_pb2_grpc, relay_pb2
from hubble_bridge.errors import BridgeError
from hubble_bridge.flows.codec import timestamp_from_ns
from hubble_bridge.server.address import bind, parse_listen
from hubble_bridge.server.query import FlowQuery
from hubble_bridge.server.store import EventStore
from hubble_bridge.tls import ServerTlsOptions

VERSION = f"hubble-otlp {__version__}"
# Safety net only: followers are woken by appends, cancellation and shutdown.
_FOLLOW_WAKE_S = 5.0
# Bridges and `hubble` keep connections alive with pings every ~30s; gRPC's server default
# (one ping per 5 minutes) would answer them with GOAWAY too_many_pings.
_SERVER_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]


class ObserverServicer(observer_pb2_grpc.ObserverServicer):
    def __init__(self, store: EventStore, *, tls_enabled: bool = False) -> None:
        self._store = store
        self._tls_enabled = tls_enabled
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._store.wake()

    def GetFlows(
        self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext
    ) -> Iterator[observer_pb2.GetFlowsResponse]:
        try:
            query = FlowQuery.from_request(request)
        except BridgeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        snapshot = self._store.snapshot()
        if query.follow:
            # Headers now, not with the first event: a client can tell the stream is live.
            context.send_initial_metadata(())
        for event in query.initial(snapshot.events):
            yield query.shape(event)
        if not query.follow:
            return
        context.add_callback(self._store.wake)
        seq = snapshot.next_seq
        while context.is_active() and not self._stopping.is_set():
            batch = self._store.wait_after(seq, _FOLLOW_WAKE_S)
            if batch.lost:
                yield _lost_events(batch.lost)
            for event in batch.events:
                if query.past_until(event):
                    return
                if query.accepts(event):
                    yield query.shape(event)
            seq = batch.next_seq
            if batch.closed:
                return

    def GetAgentEvents(
        self, request: observer_pb2.GetAgentEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[observer_pb2.GetAgentEventsResponse]:
        return iter(())

    def GetDebugEvents(
        self, request: observer_pb2.GetDebugEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[observer_pb2.GetDebugEventsResponse]:
        return iter(())

    def ServerStatus(
        self, request: observer_pb2.ServerStatusRequest, context: grpc.ServicerContext
    ) -> observer_pb2.ServerStatusResponse:
        buffered, seen = self._store.counts()
        return observer_pb2.ServerStatusResponse(
            num_flows=buffered,
            max_flows=self._store.max_flows,
            seen_flows=seen,
            uptime_ns=self._store.uptime_ns,
            num_connected_nodes=UInt32Value(value=len(self._store.nodes())),
            num_unavailable_nodes=UInt32Value(value=0),
            version=VERSION,
            flows_rate=self._store.flows_rate(),
        )

    def GetNodes(
        self, request: observer_pb2.GetNodesRequest, context: grpc.ServicerContext
    ) -> observer_pb2.GetNodesResponse:
        uptime = self._store.uptime_ns
        nodes = [
            observer_pb2.Node(
                name=name,
                version=VERSION,
                state=relay_pb2.NODE_CONNECTED,
                tls=observer_pb2.TLS(enabled=self._tls_enabled),
                uptime_ns=uptime,
                num_flows=buffered,
                max_flows=self._store.max_flows,
                seen_flows=seen,
            )
            for name, buffered, seen in self._store.nodes()
        ]
        return observer_pb2.GetNodesResponse(nodes=nodes)

    def GetNamespaces(
        self, request: observer_pb2.GetNamespacesRequest, context: grpc.ServicerContext
    ) -> observer_pb2.GetNamespacesResponse:
        namespaces = [
            observer_pb2.Namespace(cluster=cluster, namespace=namespace)
            for cluster, namespace in self._store.namespaces()
        ]
        return observer_pb2.GetNamespacesResponse(namespaces=namespaces)


def _lost_events(count: int) -> observer_pb2.GetFlowsResponse:
    # Like Hubble: a follower slower than the ring is told how much it missed, not silently skipped.
    response = observer_pb2.GetFlowsResponse(time=timestamp_from_ns(time.time_ns()))
    response.lost_events.source = flow_pb2.HUBBLE_RING_BUFFER
    response.lost_events.num_events_lost = count
    return response


class ObserverServer:
    """The Observer API on `listen` ("host:port", ":port", "unix:///path"); port 0 picks a free port."""

    def __init__(
        self,
        store: EventStore,
        listen: str,
        tls: ServerTlsOptions | None = None,
        *,
        max_workers: int = 16,
    ) -> None:
        self._bind = parse_listen(listen).grpc_address()
        self._listen = listen
        self._tls = tls
        self._max_workers = max_workers
        self._servicer = ObserverServicer(store, tls_enabled=tls is not None)
        self._server: grpc.Server | None = None
        self.address: str | None = None

    def start(self) -> str:
        """Binds and serves; returns the address clients can use (with the bound port)."""
        # Each follow stream holds a worker; beyond that, refuse rather than queue silently.
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="observer"),
            options=_SERVER_OPTIONS,
            maximum_concurrent_rpcs=self._max_workers,
        )
        observer_pb2_grpc.add_ObserverServicer_to_server(self._servicer, server)
        self.address = bind(server, self._bind, self._listen, self._tls)
        server.start()
        self._server = server
        return self.address

    def stop(self, grace: float | None = 1.0) -> None:
        """Ends follow streams and stops serving; safe before start() and twice."""
        self._servicer.stop()
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()
