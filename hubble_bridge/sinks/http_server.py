"""A small threaded HTTP server for /metrics, /healthz and /readyz.

Routes map a path to a handler that receives the request headers (names in
lower case) and returns (status, content type, body). Only GET and HEAD.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hubble_bridge.errors import BridgeError, ConfigError

log = logging.getLogger(__name__)
Route = Callable[[dict[str, str]], tuple[int, str, bytes]]


def parse_listen(listen: str) -> tuple[str, int]:
    """ "host:port", "[::1]:port" or ":port" (all interfaces) into (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"listen address {listen!r}: expected host:port")
    host = host.strip("[]") if host.startswith("[") and host.endswith("]") else host
    if ":" in host and not listen.startswith("["):
        raise ConfigError(f"listen address {listen!r}: put an IPv6 address in brackets, like [::1]:9965")
    return host or "0.0.0.0", int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Restarting the bridge must not wait for TIME_WAIT sockets of the previous process.
    allow_reuse_address = True


class HttpEndpoint:
    def __init__(self, listen: str, routes: dict[str, Route]) -> None:
        self.listen = listen
        self._address = parse_listen(listen)
        self._routes = dict(routes)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind and serve in a background thread; returns the bound (host, port), so port 0 works."""
        routes = self._routes
        handler = type("Handler", (_Handler,), {"routes": routes})
        server_class = _Server
        if ":" in self._address[0]:
            server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        try:
            self._server = server_class(self._address, handler)
        except OSError as exc:
            raise BridgeError(f"cannot listen on {self.listen}: {exc.strerror}") from None
        # A short poll interval keeps stop() prompt; the cost is one idle select() per interval.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name=f"http {self.listen}", daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Stop serving and close the socket; safe without start() and safe twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Route] = {}
    protocol_version = "HTTP/1.1"  # keep-alive for scrapers that reuse connections
    server_version = "hubble-otlp"

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, send_body: bool) -> None:
        route = self.routes.get(self.path.split("?", 1)[0])
        if route is None:
            status, content_type, body = 404, "text/plain; charset=utf-8", b"not found\n"
        else:
            try:
                status, content_type, body = route({k.lower(): v for k, v in self.headers.items()})
            except Exception as exc:  # a failing handler must not take the server down
                log.warning("HTTP %s: %s: %s", self.path, type(exc).__name__, exc)
                status, content_type, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Scrapes and probes every few seconds would flood stderr.
        log.debug("%s " + format, self.address_string(), *args)
