"""A real OTLP receiver on loopback for tests: gRPC collector services and OTLP/HTTP protobuf.

Both servers share one store and one failure plan, so a test can make the next
N calls fail (gRPC status / HTTP status, with a retry hint), or stall calls
until released, then look at what arrived. Waiting uses a Condition, not sleeps.
"""

from __future__ import annotations

import gzip
import ssl
import tempfile
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_svc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_svc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_svc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

# signal -> (request type, response type, name of the rejected-count field)
SIGNALS: dict[str, tuple[type[Message], type[Message], str]] = {
    "traces": (trace_svc.ExportTraceServiceRequest, trace_svc.ExportTraceServiceResponse, "rejected_spans"),
    "metrics": (
        metrics_svc.ExportMetricsServiceRequest,
        metrics_svc.ExportMetricsServiceResponse,
        "rejected_data_points",
    ),
    "logs": (logs_svc.ExportLogsServiceRequest, logs_svc.ExportLogsServiceResponse, "rejected_log_records"),
}
STALL_LIMIT_S = 30.0  # a forgotten release() must not hang the test run


@dataclass
class Received:
    signal: str
    transport: str  # "grpc" or "http"
    request: Any
    headers: dict[str, str]  # gRPC metadata or HTTP headers, names in lower case
    peer: str  # the client's address: equal peers mean a reused connection


@dataclass
class ServerTls:
    cert_chain_pem: bytes
    key_pem: bytes
    client_ca_pem: bytes | None = None  # set to require client certificates (mTLS)


class OtlpReceiver:
    def __init__(self, tls: ServerTls | None = None) -> None:
        self.tls = tls
        self.received: list[Received] = []
        self.calls = 0  # every export call, failed ones included
        self._cond = threading.Condition(threading.RLock())
        self._fail: list[tuple[grpc.StatusCode, int, float | None]] = []
        self._outage = False  # every call fails with UNAVAILABLE / 503 until end_outage()
        self._failing: set[str] = set()  # signals whose every call fails, as in an outage
        self._stalled = False
        self._reject: tuple[int, str] | None = None
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self.grpc_endpoint = ""
        self.http_endpoint = ""

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, grpc_port: int = 0) -> OtlpReceiver:
        """Serve; `grpc_port` restarts a stopped receiver where its clients still point."""
        scheme = "https" if self.tls else "http"
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        trace_grpc.add_TraceServiceServicer_to_server(_Servicer(self, "traces"), self._grpc)  # type: ignore[arg-type]
        metrics_grpc.add_MetricsServiceServicer_to_server(_Servicer(self, "metrics"), self._grpc)  # type: ignore[arg-type]
        logs_grpc.add_LogsServiceServicer_to_server(_Servicer(self, "logs"), self._grpc)  # type: ignore[arg-type]
        if self.tls:
            creds = grpc.ssl_server_credentials(
                [(self.tls.key_pem, self.tls.cert_chain_pem)],
                root_certificates=self.tls.client_ca_pem,
                require_client_auth=self.tls.client_ca_pem is not None,
            )
            port = self._grpc.add_secure_port(f"127.0.0.1:{grpc_port}", creds)
        else:
            port = self._grpc.add_insecure_port(f"127.0.0.1:{grpc_port}")
        self._grpc.start()
        self.grpc_endpoint = f"{scheme}://127.0.0.1:{port}"

        handler = type("Handler", (_HttpHandler,), {"receiver": self})
        self._http = _QuietHttpServer(("127.0.0.1", 0), handler)
        if self.tls:
            self._http.socket = self._server_context().wrap_socket(self._http.socket, server_side=True)
        threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True).start()
        self.http_endpoint = f"{scheme}://127.0.0.1:{self._http.server_address[1]}"
        return self

    def _server_context(self) -> ssl.SSLContext:
        assert self.tls is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        _load_chain(context, self.tls.cert_chain_pem, self.tls.key_pem)
        if self.tls.client_ca_pem:
            context.load_verify_locations(cadata=self.tls.client_ca_pem.decode())
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def stop(self) -> None:
        self.release()
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- failure plan ----------------------------------------------------------------------
    def fail_next(
        self,
        n: int,
        grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        http_status: int = 503,
        retry_after_s: float | None = None,
    ) -> None:
        with self._cond:
            self._fail.extend([(grpc_code, http_status, retry_after_s)] * n)

    def start_outage(self) -> None:
        """Fail every call (UNAVAILABLE / 503) until end_outage()."""
        with self._cond:
            self._outage = True

    def end_outage(self) -> None:
        with self._cond:
            self._outage = False

    def fail_signal(self, signal: str) -> None:
        """Fail every call of one signal (UNAVAILABLE / 503); the others are served."""
        with self._cond:
            self._failing.add(signal)

    def stall(self) -> None:
        """Hold every call until release() (or stop())."""
        with self._cond:
            self._stalled = True

    def release(self) -> None:
        with self._cond:
            self._stalled = False
            self._cond.notify_all()

    def reject_next(self, rejected: int, message: str) -> None:
        """Answer the next successful call with a partial success."""
        with self._cond:
            self._reject = (rejected, message)

    # -- what arrived ----------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def requests(self, signal: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.signal == signal]

    def spans(self) -> list[Any]:
        return [
            s for r in self.requests("traces") for rs in r.request.resource_spans
            for ss in rs.scope_spans for s in ss.spans
        ]  # fmt: skip

    def logs(self) -> list[Any]:
        return [
            lr for r in self.requests("logs") for rl in r.request.resource_logs
            for sl in rl.scope_logs for lr in sl.log_records
        ]  # fmt: skip

    def metric_points(self, name: str) -> list[Any]:
        points: list[Any] = []
        for r in self.requests("metrics"):
            for rm in r.request.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        if m.name == name and kind:
                            points.extend(getattr(m, kind).data_points)
        return points

    # -- shared call handling --------------------------------------------------------------
    def _handle(
        self, signal: str, transport: str, request: Any, headers: dict[str, str], peer: str
    ) -> tuple[Message | None, tuple[grpc.StatusCode, int, float | None] | None]:
        with self._cond:
            self.calls += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._stalled, STALL_LIMIT_S)
            if self._fail:
                return None, self._fail.pop(0)
            if self._outage or signal in self._failing:
                return None, (grpc.StatusCode.UNAVAILABLE, 503, None)
            self.received.append(Received(signal, transport, request, headers, peer))
            response = SIGNALS[signal][1]()
            if self._reject is not None:
                rejected, message = self._reject
                self._reject = None
                setattr(response.partial_success, SIGNALS[signal][2], rejected)
                response.partial_success.error_message = message
            self._cond.notify_all()
            return response, None


def _status_with_retry(code: int, message: str, retry_after_s: float | None) -> status_pb2.Status:
    status = status_pb2.Status(code=code, message=message)
    if retry_after_s is not None:
        info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration())
        info.retry_delay.FromNanoseconds(int(retry_after_s * 1e9))
        status.details.add().Pack(info)
    return status


class _Servicer:
    def __init__(self, receiver: OtlpReceiver, signal: str) -> None:
        self.receiver = receiver
        self.signal = signal

    def Export(self, request: Any, context: grpc.ServicerContext) -> Message:
        headers = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        response, failure = self.receiver._handle(self.signal, "grpc", request, headers, context.peer())
        if failure is None:
            assert response is not None
            return response
        code, _, retry_after_s = failure
        status = _status_with_retry(code.value[0], "receiver told to fail", retry_after_s)
        context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
        context.abort(code, "receiver told to fail")
        raise AssertionError("abort returns only by raising")


class _QuietHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (timeouts, shutdown tests) are expected here


class _HttpHandler(BaseHTTPRequestHandler):
    receiver: OtlpReceiver
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        signal = self.path.removeprefix("/v1/")
        if signal not in SIGNALS:
            return self._reply(404, b"", "text/plain")
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = SIGNALS[signal][0]()
        request.ParseFromString(body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        response, failure = self.receiver._handle(signal, "http", request, headers, peer)
        if failure is None:
            assert response is not None
            return self._reply(200, response.SerializeToString(), "application/x-protobuf")
        _, status, retry_after_s = failure
        extra = {"Retry-After": str(int(retry_after_s))} if retry_after_s is not None else {}
        error = status_pb2.Status(code=14, message="receiver told to fail").SerializeToString()
        return self._reply(status, error, "application/x-protobuf", extra)

    def _reply(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _load_chain(context: ssl.SSLContext, cert_chain_pem: bytes, key_pem: bytes) -> None:
    """load_cert_chain wants paths: write the PEMs to a private temporary directory for the call."""
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(cert_chain_pem)
        key.write_bytes(key_pem)
        context.load_cert_chain(cert, key)


def latest_points(receiver: OtlpReceiver, name: str) -> list[Any]:
    """Points of `name` in the newest metrics request that has it (metrics are cumulative)."""
    for received in reversed(receiver.requests("metrics")):
        points = [
            p
            for rm in received.request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in getattr(m, m.WhichOneof("data")).data_points
        ]
        if points:
            return points
    return []


def attrs(key_values: Any) -> dict[str, Any]:
    """OTLP KeyValues as a plain dict (lists of strings for array values)."""
    out = {}
    for kv in key_values:
        kind = kv.value.WhichOneof("value")
        value = getattr(kv.value, kind)
        out[kv.key] = [v.string_value for v in value.values] if kind == "array_value" else value
    return out
