"""A small threaded HTTP server for /metrics, /healthz and /readyz.

Routes map a path to a handler that receives the request headers (names in
lower case) and returns (status, content type, body). Only GET and HEAD.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hubble_bridge.errors import BridgeError
from hubble_bridge.server.address import parse_listen

log = logging.getLogger(__name__)
Route = Callable[[dict[str, str]], tuple[int, str, bytes]]
# One thread per open connection, at most this many: scrapers and probes need a handful. Beyond it a new
# connection is closed at once rather than given a thread.
MAX_CONNECTIONS = 32
# A client must send each request line and header within this, and an idle kept-alive connection is closed
# after it: a scraper that timed out and left its socket open must not hold a thread for ever.
IO_TIMEOUT_S = 10.0
# What a client that hangs up or resets does to the server: expected, not worth a traceback.
_CLIENT_GONE = (ConnectionError, TimeoutError)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Restarting the bridge must not wait for TIME_WAIT sockets of the previous process.
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], family: int) -> None:
        self.address_family = family
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.refused = 0  # connections closed because every slot was taken
        super().__init__(address, handler, bind_and_activate=False)
        try:
            if family == socket.AF_INET6 and address[0] == "::":
                # ":port" means every address, IPv4 too (Linux may default to v6-only by sysctl).
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            log.debug("HTTP: %d connections open, closing the one from %s", MAX_CONNECTIONS, client_address)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr for every client that resets mid-response.
        exc = sys.exc_info()[1]
        if isinstance(exc, _CLIENT_GONE):
            log.debug("HTTP client %s went away: %s", client_address, exc)
        else:
            log.warning("HTTP request from %s failed: %s: %s", client_address, type(exc).__name__, exc)


class HttpEndpoint:
    def __init__(self, listen: str, routes: dict[str, Route]) -> None:
        self.listen = listen
        address = parse_listen(listen, unix=False)
        host = address.bind_host()
        self._address = (host, address.port)
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._routes = dict(routes)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind and serve in a background thread; returns the bound (host, port), so port 0 works."""
        handler = type("Handler", (_Handler,), {"routes": self._routes})
        try:
            self._server = _Server(self._address, handler, self._family)
        except OSError as exc:
            raise BridgeError(f"cannot listen on {self.listen}: {exc.strerror}") from None
        # A short poll interval keeps stop() prompt; the cost is one idle select() per interval.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name=f"http {self.listen}", daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def refused(self) -> int:
        return self._server.refused if self._server is not None else 0

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
    timeout = IO_TIMEOUT_S  # socket timeout for every read and write of the connection

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
