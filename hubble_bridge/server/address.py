"""Listen addresses for the gRPC servers (Observer, Peer): "host:port", ":port" (all interfaces), "unix:///path"."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from hubble_bridge.errors import BridgeError

if TYPE_CHECKING:
    import grpc

    from hubble_bridge.tls import ServerTlsOptions

_EXPECTED = "expected host:port, :port or unix:///path"


def parse_listen(value: str) -> str:
    """The gRPC bind address for `value`; BridgeError naming the value when it is malformed."""
    if value.startswith("unix://"):
        path = value[len("unix://") :]
        if not path.startswith("/") or path == "/":
            raise BridgeError(f"invalid listen address {value!r}: unix sockets need an absolute path")
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise BridgeError(f"invalid listen address {value!r}: {_EXPECTED}")
    if any(ch.isspace() or ch == "/" for ch in host):
        raise BridgeError(f"invalid listen address {value!r}: {_EXPECTED}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise BridgeError(f"invalid listen address {value!r}: write IPv6 hosts in brackets, e.g. [::1]:4245")
    # An empty host listens everywhere; "[::]" is dual-stack on Linux.
    return f"{host or '[::]'}:{int(port)}"


def bind(server: grpc.Server, bind_address: str, listen: str, tls: ServerTlsOptions | None) -> str:
    """Bind `server` (TLS when given) to a parse_listen() address; the address clients can use.

    Port 0 becomes the bound port; a unix socket address is returned as is.
    """
    try:
        if tls is not None:
            port = server.add_secure_port(bind_address, tls.server_credentials())
        else:
            port = server.add_insecure_port(bind_address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise BridgeError(f"cannot listen on {listen}: address in use or not available")
    if bind_address.startswith("unix:"):
        return bind_address
    return f"{bind_address.rpartition(':')[0]}:{port}"


def serve_until_stopped(
    address: str, stop: threading.Event, on_ready: Callable[[str], None] | None = None
) -> None:
    """Block a server's command until `stop`, SIGTERM (from the main thread) or Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if on_ready is not None:
        on_ready(address)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
