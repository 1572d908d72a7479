"""A minimal OTLP gRPC receiver for the bench: takes every export as bytes and counts it.

It never decodes a request (an empty response is a valid Export*ServiceResponse),
so the receiver costs the bench almost nothing and is never what it measures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures

import grpc

_SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


class CountingOtlpReceiver:
    def __init__(self) -> None:
        self.requests = dict.fromkeys(_SERVICES, 0)
        self.bytes = dict.fromkeys(_SERVICES, 0)
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        for signal, service in _SERVICES.items():
            handler = grpc.unary_unary_rpc_method_handler(self._export(signal))
            self._server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, {"Export": handler}),)
            )
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{port}"

    def _export(self, signal: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def export(request: bytes, _context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.requests[signal] += 1
                self.bytes[signal] += len(request)
            return b""

        return export

    def start(self) -> CountingOtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)
