"""gRPC client for Hubble Relay or a node's Hubble server (`observer.Observer`), and a flow source on it.

Every gRPC failure leaves this module as a one-line BridgeError that says what
went wrong in the user's terms (refused, no such socket, TLS handshake, timeout).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import grpc
import grpc.experimental
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from hubble_bridge.api import flow_pb2, observer_pb2, observer_pb2_grpc
from hubble_bridge.errors import BridgeError, ConfigError
from hubble_bridge.flows.codec import timestamp_from_ns
from hubble_bridge.tls import ClientTlsOptions

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # Go gRPC servers (Relay, the agent) answer pings more often than every 5 minutes, or pings with
    # no call open, with GOAWAY "too_many_pings" under their default enforcement policy.
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Reads the stream on the calling thread instead of handing every message across threads,
    # which makes GetFlows streaming several times faster.
    (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
]


def parse_target(target: str) -> tuple[str, bool]:
    """The gRPC target and whether the address itself asks for TLS (`tls://host:port`, as `hubble` does)."""
    tls = target.startswith("tls://")
    address = target[len("tls://") :] if tls else target
    if address.startswith("unix://"):
        if len(address) > len("unix:///") and address.startswith("unix:///"):
            return address, tls
    else:
        host, sep, port = address.rpartition(":")
        if sep and host and port.isdigit() and int(port) <= 65535 and not any(c.isspace() for c in host):
            return address, tls
    raise BridgeError(f"invalid Hubble Relay address {target!r}: expected host:port or unix:///path")


class RelayClient:
    """One channel to `target`; unary calls wait at most connect_timeout_s."""

    def __init__(
        self, target: str, tls: ClientTlsOptions | None = None, *, connect_timeout_s: float = 10.0
    ) -> None:
        address, tls_in_scheme = parse_target(target)
        tls = tls or ClientTlsOptions()
        if tls_in_scheme and not tls.active:
            tls = replace(tls, enabled=True)
        self.target = target
        self.tls_active = tls.active
        self._timeout = connect_timeout_s
        if tls.active:
            options = _CHANNEL_OPTIONS + tls.channel_options()
            self._channel = grpc.secure_channel(address, tls.channel_credentials(), options)
        else:
            self._channel = grpc.insecure_channel(address, _CHANNEL_OPTIONS)
        self._stub = observer_pb2_grpc.ObserverStub(self._channel)
        self._get_flows = self._channel.unary_stream(
            "/observer.Observer/GetFlows",
            request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
            response_deserializer=_stream_decode,
        )
        # Raw: messages stay bytes, for a reader that hands them to another process undecoded.
        self._get_flows_raw = self._channel.unary_stream(
            "/observer.Observer/GetFlows",
            request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
            response_deserializer=None,
        )

    def server_status(self) -> observer_pb2.ServerStatusResponse:
        return self._unary(self._stub.ServerStatus, observer_pb2.ServerStatusRequest())

    def get_nodes(self) -> observer_pb2.GetNodesResponse:
        return self._unary(self._stub.GetNodes, observer_pb2.GetNodesRequest())

    def get_namespaces(self) -> observer_pb2.GetNamespacesResponse:
        return self._unary(self._stub.GetNamespaces, observer_pb2.GetNamespacesRequest())

    def get_flows(self, request: observer_pb2.GetFlowsRequest, *, raw: bool = False) -> FlowStream:
        """Checks the server answers (within connect_timeout_s), then opens the flow stream.

        With `raw`, the stream yields each message's bytes (nothing is decoded or counted as undecodable).
        """
        # A bare Observer without ServerStatus still serves flows.
        with contextlib.suppress(_Unimplemented):
            self.server_status()
        try:
            call = (self._get_flows_raw if raw else self._get_flows)(request)
        except ValueError:
            raise BridgeError(f"the connection to {self.target} is closed") from None
        return FlowStream(call, self._error)

    def close(self) -> None:
        self._channel.close()

    def _unary(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout)
        except ValueError:  # grpc's answer on a closed channel
            raise BridgeError(f"the connection to {self.target} is closed") from None
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise _Unimplemented(self._error(exc)) from None
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> BridgeError:
        return describe_rpc_error(exc, self.target, tls=self.tls_active, timeout_s=self._timeout)


class _Unimplemented(BridgeError):
    pass


def lenient_decode(data: bytes) -> observer_pb2.GetFlowsResponse | None:
    """A message protobuf refuses (e.g. invalid UTF-8 in a string) is skipped, not the end of the stream."""
    try:
        return observer_pb2.GetFlowsResponse.FromString(data)
    except DecodeError:
        return None


class _Undecodable:
    """What the stream's deserializer returns for a message protobuf refuses."""


# Not None: grpcio takes a deserializer's None for a failure and ends the whole stream with INTERNAL, so
# the resumed stream would ask for the same message again, forever.
_UNDECODABLE = _Undecodable()


def _stream_decode(data: bytes) -> observer_pb2.GetFlowsResponse | _Undecodable:
    decoded = lenient_decode(data)
    return _UNDECODABLE if decoded is None else decoded


class FlowStream:
    """The GetFlows response stream; `cancel()` from any thread ends iteration quietly.

    Undecodable messages are skipped and counted in `undecodable`: ending the stream on one would make
    a resuming client ask for it again, forever.
    """

    def __init__(self, call: Any, to_error: Any) -> None:
        self._call = call
        self._to_error = to_error
        self._cancelled = False
        self.undecodable = 0

    def __iter__(self) -> Iterator[observer_pb2.GetFlowsResponse | bytes]:
        return self

    def __next__(self) -> observer_pb2.GetFlowsResponse | bytes:
        try:
            while (response := next(self._call)) is _UNDECODABLE:
                self.undecodable += 1
            return response  # type: ignore[no-any-return]
        except grpc.RpcError as exc:
            if self._cancelled:
                raise StopIteration from None
            raise self._to_error(exc) from None

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()


class RelaySource:
    """FlowSource over GetFlows; owns the client and closes it on close()."""

    def __init__(self, client: RelayClient, request: observer_pb2.GetFlowsRequest) -> None:
        self.name = f"relay {client.target}"
        self._client = client
        self._request = request
        self._lock = threading.Lock()
        self._stream: FlowStream | None = None
        self._closed = False

    def __iter__(self) -> Iterator[observer_pb2.GetFlowsResponse]:
        if self._closed:
            return
        try:
            stream = self._client.get_flows(self._request)
        except BridgeError:
            if self._closed:  # closed while connecting: that is how it was stopped
                return
            raise
        with self._lock:
            if self._closed:
                stream.cancel()
                return
            self._stream = stream
        yield from stream

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()
        self._client.close()


def build_request(
    *,
    follow: bool = False,
    number: int = 0,
    first: bool = False,
    since_ns: int | None = None,
    until_ns: int | None = None,
    whitelist: Sequence[flow_pb2.FlowFilter | dict[str, Any]] = (),
    blacklist: Sequence[flow_pb2.FlowFilter | dict[str, Any]] = (),
    field_mask_paths: Sequence[str] = (),
) -> observer_pb2.GetFlowsRequest:
    """A GetFlowsRequest; filters may be FlowFilter messages or their protojson dicts."""
    request = observer_pb2.GetFlowsRequest(number=number, follow=follow, first=first)
    if since_ns is not None:
        request.since.CopyFrom(timestamp_from_ns(since_ns))
    if until_ns is not None:
        request.until.CopyFrom(timestamp_from_ns(until_ns))
    request.whitelist.extend(_filter(f, "whitelist", i) for i, f in enumerate(whitelist))
    request.blacklist.extend(_filter(f, "blacklist", i) for i, f in enumerate(blacklist))
    if field_mask_paths:
        request.field_mask.paths.extend(field_mask_paths)
    return request


def _filter(value: flow_pb2.FlowFilter | dict[str, Any], where: str, index: int) -> flow_pb2.FlowFilter:
    if isinstance(value, flow_pb2.FlowFilter):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{where}[{index}]: expected a FlowFilter mapping, got {type(value).__name__}")
    try:
        return json_format.ParseDict(value, flow_pb2.FlowFilter())
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}[{index}]: {str(exc).splitlines()[0]}") from None


# Reasons gRPC buries in "failed to connect to all addresses; last error: ...", in user terms.
_CONNECT_REASONS = (
    ("Connection refused", "connection refused"),
    ("No such file or directory", "no such socket"),
    ("Permission denied", "permission denied"),
    ("Domain name not found", "cannot resolve the host name"),
    ("Network is unreachable", "network is unreachable"),
    ("No route to host", "no route to host"),
)


def describe_rpc_error(exc: grpc.RpcError, target: str, *, tls: bool, timeout_s: float) -> BridgeError:
    """One line for a failed call: what went wrong talking to `target`, without gRPC's plumbing."""
    code = exc.code()
    details = exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return BridgeError(_unavailable(details, target, tls))
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BridgeError(f"cannot reach Hubble Relay at {target}: no answer within {timeout_s:g}s")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BridgeError(f"Hubble Relay at {target} refused the request: {details}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return BridgeError(f"{target} does not serve the Hubble Observer API ({details})")
    return BridgeError(f"Hubble Relay at {target}: {code.name.lower()}: {details}")


def _unavailable(details: str, target: str, tls: bool) -> str:
    last = details.rpartition("last error: ")[2]
    for needle, reason in _CONNECT_REASONS:
        if needle in last:
            return f"cannot reach Hubble Relay at {target}: {reason}"
    if "Hostname Verification" in last:
        return f"TLS handshake with {target} failed: the server certificate does not match the server name"
    if "WRONG_VERSION_NUMBER" in last:
        return f"TLS handshake with {target} failed: the server does not speak TLS (try without TLS)"
    match = re.search(r"OPENSSL_internal:([A-Z_]+)(?::\s*([^:]+))?", last)
    if match:
        reason = match.group(1).lower().replace("_", " ")
        if match.group(2) and match.group(2).strip() not in ("OK", ""):
            reason += f": {match.group(2).strip()}"
        return f"TLS handshake with {target} failed: {reason}"
    if "Socket closed" in last or "Connection reset" in last:
        if tls:
            return (
                f"TLS handshake with {target} failed: the server closed the connection "
                "(does it require a client certificate?)"
            )
        return f"cannot reach Hubble Relay at {target}: the server closed the connection (is it TLS-only?)"
    # Strip "UNKNOWN: ipv4:127.0.0.1:4245: " style prefixes that repeat the address.
    reason = re.sub(r"^[A-Z_]+: (?:ipv4|ipv6|unix):\S+: ", "", last) or "unavailable"
    return f"cannot reach Hubble Relay at {target}: {reason}"
