"""OTLP transports: gRPC (collector services) and HTTP/protobuf (one keep-alive connection per signal).

A transport sends one serialized export request per call, with the time left
as its deadline, and classifies failures: RetryableExportError for what the
OTLP specification says may succeed later (with the server's hint of when),
ExportError for the rest. Messages are one line naming the endpoint.
Requests arrive as bytes because traces and logs are written straight to the
wire format (otlp_wire) without ever being protobuf messages.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import gzip
import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import SplitResult, unquote, urlsplit

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from hubble_bridge import __version__
from hubble_bridge.errors import ConfigError
from hubble_bridge.sinks.otlp_config import Signal, SignalSettings, mask_url

USER_AGENT = f"hubble-otlp/{__version__}"
# The OTLP specification's retryable gRPC codes. RESOURCE_EXHAUSTED is retryable only when the server
# says when (RetryInfo): without it the server is out of capacity for good (GrpcTransport.send).
RETRYABLE_GRPC = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
# The response type of each signal.
RESPONSES: dict[Signal, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
}
_SERVICES: dict[Signal, ServiceDescriptor] = {
    "traces": trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"],
    "metrics": metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"],
    "logs": logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"],
}
# The collector's Export method of each signal, as its gRPC path ("/package.Service/Export").
GRPC_METHODS: dict[Signal, str] = {
    signal: f"/{service.full_name}/{service.methods_by_name['Export'].name}"
    for signal, service in _SERVICES.items()
}


class ExportError(Exception):
    """An export the server refused or that cannot succeed by retrying."""


class RetryableExportError(ExportError):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Transport(Protocol):
    def send(self, request: bytes, timeout_s: float) -> Message: ...

    def close(self) -> None: ...


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


# gRPC's default reconnect backoff grows to 120 s: after a collector outage, calls kept failing fast
# on a channel still waiting out its backoff, for many seconds after the collector was back. Capped at
# 1 s, the channel notices a returning collector within about a second; the exporter's own retry
# backoff (otlp_export) still spaces the calls.
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def grpc_channel(settings: SignalSettings) -> grpc.Channel:
    options = [("grpc.primary_user_agent", USER_AGENT), *RECONNECT_OPTIONS]
    if not settings.tls:
        return grpc.insecure_channel(settings.target, options=options)
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(settings.ca_file) if settings.ca_file else None,
        private_key=_read(settings.key_file) if settings.key_file else None,
        certificate_chain=_read(settings.cert_file) if settings.cert_file else None,
    )
    return grpc.secure_channel(settings.target, creds, options=options)


def channel_key(settings: SignalSettings) -> tuple[str, bool, str, str, str]:
    """Signals whose settings share this key can share one gRPC channel."""
    return (settings.target, settings.tls, settings.ca_file, settings.cert_file, settings.key_file)


class GrpcTransport:
    def __init__(self, settings: SignalSettings, channel: grpc.Channel) -> None:
        self._where = f"{settings.signal} to {settings.target}"
        # No request serializer: gRPC then sends the request, already bytes, as it is.
        self._export: Callable[..., Message] = channel.unary_unary(
            GRPC_METHODS[settings.signal],
            request_serializer=None,
            response_deserializer=RESPONSES[settings.signal].FromString,
        )
        # gRPC metadata keys must be lower case.
        self._metadata = tuple((k.lower(), v) for k, v in settings.headers.items())
        self._compression = grpc.Compression.Gzip if settings.gzip else grpc.Compression.NoCompression
        self._channel = channel

    def send(self, request: bytes, timeout_s: float) -> Message:
        try:
            return self._export(
                request, timeout=timeout_s, metadata=self._metadata, compression=self._compression
            )
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
            message = f"{self._where}: {code.name}: {_one_line(exc.details() or '')}"  # type: ignore[attr-defined]
            retry_after_s = _retry_info(exc)
            if code in RETRYABLE_GRPC or (
                code is grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after_s is not None
            ):
                raise RetryableExportError(message, retry_after_s) from None
            raise ExportError(message) from None

    def close(self) -> None:
        self._channel.close()


def _retry_info(exc: grpc.RpcError) -> float | None:
    """The server's RetryInfo delay from the status details in the trailers, if it sent one."""
    trailers = exc.trailing_metadata() or ()  # type: ignore[attr-defined]
    for key, value in trailers:
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return info.retry_delay.ToTimedelta().total_seconds()
    return None


def proxy_for(url: str, environ: Mapping[str, str] | None = None) -> SplitResult | None:
    """The proxy to reach `url` through, from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as urllib reads them.

    Lower-case names win over upper-case ones, and HTTP_PROXY is ignored in a CGI request
    (REQUEST_METHOD set), as urllib.request.getproxies_environment does. NO_PROXY is matched
    as requests matches it: `*`, host names and domain suffixes (`example.com` and
    `.example.com` both cover `a.example.com`), optionally with `:port`, IP addresses, and
    CIDR ranges for IP hosts.
    """
    environ = os.environ if environ is None else environ
    proxies: dict[str, str] = {}
    for name, value in environ.items():
        if value and name.lower().endswith("_proxy"):
            proxies[name.lower().removesuffix("_proxy")] = value
    if "REQUEST_METHOD" in environ:  # httpoxy: a CGI request's Proxy: header arrives as HTTP_PROXY
        proxies.pop("http", None)
    for name, value in environ.items():  # then lower-case names win, an empty one turning a proxy off
        if name.endswith("_proxy"):
            if value:
                proxies[name.lower().removesuffix("_proxy")] = value
            else:
                proxies.pop(name.lower().removesuffix("_proxy"), None)
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme)
    if not proxy or bypass_proxy(parts.hostname or "", parts.port, proxies.get("no", "")):
        return None
    proxy_parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    if proxy_parts.scheme != "http" or not proxy_parts.hostname:
        raise ConfigError(f"proxy {mask_url(proxy)} for {mask_url(url)}: only http:// proxies are supported")
    return proxy_parts


def bypass_proxy(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether NO_PROXY (comma-separated) exempts host[:port]."""
    host = host.strip("[]").lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if address is not None and "/" in entry:
            with contextlib.suppress(ValueError):
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            continue
        name, entry_port = entry, None
        if entry.startswith("["):  # [v6]:port
            name, _, rest = entry[1:].partition("]")
            entry_port = rest.removeprefix(":") or None
        elif entry.count(":") == 1:
            name, entry_port = entry.split(":")
        if entry_port is not None and port is not None and entry_port != str(port):
            continue
        name = name.lstrip(".")
        if address is not None:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(name) == address:
                    return True
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


class HttpTransport:
    def __init__(self, settings: SignalSettings, environ: Mapping[str, str] | None = None) -> None:
        self._url = mask_url(settings.url)  # only ever shown in messages
        parts = urlsplit(settings.url)
        self._host, self._port = parts.hostname, parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._response_type = RESPONSES[settings.signal]
        self._headers = {
            **settings.headers,
            "Content-Type": "application/x-protobuf",
            "User-Agent": USER_AGENT,
        }
        # Through a proxy, https goes through a CONNECT tunnel; plain http is sent to the proxy with
        # the absolute URL as the request target (RFC 9112 3.2.2).
        self._proxy = proxy_for(settings.url, environ)
        self._proxy_headers: dict[str, str] = {}
        if self._proxy is not None:
            if self._proxy.username is not None:
                credentials = f"{unquote(self._proxy.username)}:{unquote(self._proxy.password or '')}"
                auth = "Basic " + base64.b64encode(credentials.encode()).decode()
                self._proxy_headers["Proxy-Authorization"] = auth
            if parts.scheme == "http":
                self._path = settings.url
                self._headers.update(self._proxy_headers)
        if settings.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._gzip = settings.gzip
        self._context = _ssl_context(settings) if settings.tls else None
        self._conn: http.client.HTTPConnection | None = None
        self._closed = False
        self._used = False
        self._lock = threading.Lock()

    def send(self, request: bytes, timeout_s: float) -> Message:
        body = request
        if self._gzip:
            body = gzip.compress(body, compresslevel=6, mtime=0)
        with self._lock:
            try:
                status, reason, headers, data = self._post(body, timeout_s)
            except ssl.SSLError as exc:
                self._drop()
                if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
                    raise RetryableExportError(f"POST {self._url}: {_one_line(str(exc))}") from None
                # Certificates or TLS settings the peer refuses: retrying cannot help.
                raise ExportError(f"POST {self._url}: {_one_line(str(exc))}") from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                detail = _one_line(str(exc)) or type(exc).__name__
                raise RetryableExportError(f"POST {self._url}: {detail}") from None
        if status // 100 == 2:
            response = self._response_type()
            # An empty or non-protobuf 2xx body still means the data was accepted.
            with contextlib.suppress(DecodeError):
                response.ParseFromString(data)
            return response
        message = f"POST {self._url}: HTTP {status} {reason}{_status_detail(data)}"
        if status in RETRYABLE_HTTP:
            raise RetryableExportError(message, _retry_after(headers.get("Retry-After")))
        raise ExportError(message)

    def _post(self, body: bytes, timeout_s: float) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        for attempt in (1, 2):
            reused = self._conn is not None and self._used
            conn = self._connection(timeout_s)
            try:
                conn.request("POST", self._path, body=body, headers=self._headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed while idle: reconnect once right away.
                self._drop()
                if reused and attempt == 1:
                    continue
                raise
            self._used = True
            if response.will_close:
                self._drop()
            return response.status, response.reason, response.headers, data
        raise AssertionError("unreachable")

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._closed:
            raise ExportError(f"POST {self._url}: transport closed")
        conn = self._conn
        if conn is None:
            host, port = self._host or "", self._port
            if self._proxy is not None:
                host, port = self._proxy.hostname or "", self._proxy.port or 80
            if self._context is not None:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=self._context)
                if self._proxy is not None:
                    conn.set_tunnel(self._host or "", self._port, headers=self._proxy_headers)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
            self._conn, self._used = conn, False
        conn.timeout = timeout_s
        if conn.sock is not None:
            conn.sock.settimeout(timeout_s)
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close for good; without the lock, since shutting the socket down wakes a request in flight."""
        self._closed = True
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _ssl_context(settings: SignalSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"OTLP {settings.signal} TLS files: {_one_line(str(exc))}") from None
    return context


def _status_detail(data: bytes) -> str:
    """The message of a google.rpc.Status error body, as OTLP/HTTP servers send it."""
    status = status_pb2.Status()
    try:
        status.ParseFromString(data)
    except DecodeError:
        return ""
    return f": {_one_line(status.message)}" if status.message else ""


def _retry_after(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
