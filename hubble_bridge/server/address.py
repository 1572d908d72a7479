"""Listen addresses of every server (gRPC Observer and Peer, the HTTP endpoints), parsed in one place.

Forms: "host:port", "[v6-address]:port", ":port" (every address, IPv4 and IPv6) and, for gRPC,
"unix:///path". A ":port" listener is dual-stack; on a host without IPv6 it falls back to IPv4 and
says so once in the log.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hubble_bridge.errors import BridgeError, ConfigError

if TYPE_CHECKING:
    import grpc

    from hubble_bridge.tls import ServerTlsOptions

log = logging.getLogger(__name__)
_EXPECTED = "expected host:port, :port or unix:///path"


@dataclass(frozen=True)
class ListenAddress:
    host: str  # without brackets; "" means every address
    port: int
    unix: str = ""  # the whole "unix:///path" when the address is a unix socket

    @property
    def every_address(self) -> bool:
        return not self.unix and not self.host

    def bind_host(self) -> str:
        """The host to bind: "::" (dual-stack) for every address, "0.0.0.0" where IPv6 is absent."""
        if not self.every_address:
            return self.host
        return "::" if ipv6_available() else "0.0.0.0"

    def grpc_address(self) -> str:
        """The address for grpc.Server.add_*_port."""
        if self.unix:
            return self.unix
        host = self.bind_host()
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def parse_listen(value: str, *, unix: bool = True) -> ListenAddress:
    """`value` as a ListenAddress; ConfigError naming the value when it is malformed."""
    if value.startswith("unix://"):
        path = value[len("unix://") :]
        if not unix:
            raise ConfigError(f"invalid listen address {value!r}: unix sockets are not supported here")
        if not path.startswith("/") or path == "/":
            raise ConfigError(f"invalid listen address {value!r}: unix sockets need an absolute path")
        return ListenAddress("", 0, unix=value)
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"invalid listen address {value!r}: {_EXPECTED}")
    if any(ch.isspace() or ch == "/" for ch in host):
        raise ConfigError(f"invalid listen address {value!r}: {_EXPECTED}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise ConfigError(f"invalid listen address {value!r}: write IPv6 hosts in brackets, e.g. [::1]:4245")
    return ListenAddress(host, int(port))


@functools.cache
def ipv6_available() -> bool:
    """Whether this host can bind a dual-stack IPv6 socket (containers may have IPv6 disabled)."""
    if not socket.has_ipv6:
        available = False
    else:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                probe.bind(("::", 0))
            available = True
        except OSError:
            available = False
    if not available:
        log.warning("IPv6 is not available on this host: listening on IPv4 addresses only")
    return available


def bind(server: grpc.Server, bind_address: str, listen: str, tls: ServerTlsOptions | None) -> str:
    """Bind `server` (TLS when given) to a ListenAddress.grpc_address(); the address clients can use.

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
