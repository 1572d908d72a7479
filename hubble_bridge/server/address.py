"""Listen addresses for the Observer server: "host:port", ":port" (all interfaces), "unix:///path"."""

from __future__ import annotations

from hubble_bridge.errors import BridgeError

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
