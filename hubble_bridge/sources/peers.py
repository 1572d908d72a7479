"""Per-node Hubble servers, discovered through `peer.Peer/Notify` as Hubble Relay discovers them.

`PeerWatcher` holds the Notify stream (reconnecting with backoff) and keeps the
set of peers: PEER_ADDED and PEER_UPDATED upsert by name, PEER_DELETED removes.
Addresses are read as Relay reads them: a bare IP gets Hubble's port 4244, a
"/….sock" path is a unix socket; a notification with `tls` means the node
serves TLS and names the certificate to expect. A peer that disappears while
the Notify stream is down stays known until it is deleted (as in Relay).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from hubble_bridge.api import peer_pb2, peer_pb2_grpc
from hubble_bridge.backoff import backoff_s
from hubble_bridge.errors import BridgeError
from hubble_bridge.sources.relay import parse_target
from hubble_bridge.tls import ClientTlsOptions

log = logging.getLogger(__name__)

HUBBLE_SERVER_PORT = 4244  # the agent's Hubble server (hubble.listenAddress)


@dataclass(frozen=True)
class StreamSpec:
    """One GetFlows stream: a node's Hubble server or a Relay. Picklable, so it can cross to a worker.

    `tls` None keeps the configured TLS settings (relays); True/False is what the peer
    notification said, with `tls_server_name` the name its certificate must carry.
    """

    key: str  # node name, or the relay address
    target: str
    tls: bool | None = None
    tls_server_name: str = ""


def normalize_address(address: str) -> str | None:
    """The gRPC target for a peer's address, or None when it has none usable."""
    text = address.strip()
    if not text:
        return None
    if text.startswith("unix://"):
        return text
    if text.startswith("/") and text.endswith(".sock"):
        return f"unix://{text}"
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return f"[{ip}]:{HUBBLE_SERVER_PORT}" if ip.version == 6 else f"{ip}:{HUBBLE_SERVER_PORT}"
    host, sep, port = text.rpartition(":")
    if sep and host and not port.isdigit():
        return f"{host}:{HUBBLE_SERVER_PORT}"  # Relay, too, falls back to the default port
    if not sep:
        return f"{text}:{HUBBLE_SERVER_PORT}"
    return text


def spec_from_notification(note: peer_pb2.ChangeNotification) -> StreamSpec | None:
    """The stream a notification describes; None when it carries no usable address."""
    target = normalize_address(note.address)
    if target is None:
        return None
    has_tls = note.HasField("tls")
    return StreamSpec(note.name, target, has_tls, note.tls.server_name if has_tls else "")


class PeerWatcher:
    """Follows `peer.Peer/Notify` at `target`; `on_change` gets the whole peer set after every change."""

    def __init__(
        self,
        target: str,
        on_change: Callable[[dict[str, StreamSpec]], None],
        tls: ClientTlsOptions | None = None,
        *,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.target = target
        try:
            self._address, tls_in_scheme = parse_target(target)
        except BridgeError:
            raise BridgeError(
                f"invalid peer service address {target!r}: expected host:port or unix:///path"
            ) from None
        self._tls = tls if tls is not None and tls.active else None
        if tls_in_scheme and self._tls is None:
            self._tls = ClientTlsOptions(enabled=True)
        self._on_change = on_change
        self._max_backoff_s = max_backoff_s
        self._lock = threading.Lock()
        self._peers: dict[str, StreamSpec] = {}
        self._closed = threading.Event()
        self._call: Any = None
        self._thread = threading.Thread(target=self._run, name="peer-watcher", daemon=True)
        self.connected = threading.Event()
        self.reconnects = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._closed.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def peers(self) -> dict[str, StreamSpec]:
        with self._lock:
            return dict(self._peers)

    def _run(self) -> None:
        attempt = 0
        while not self._closed.is_set():
            try:
                self._follow()
                problem = f"the peer service at {self.target} ended the Notify stream"
            except grpc.RpcError as exc:
                problem = f"peer service at {self.target}: {_rpc_reason(exc)}"
            except BridgeError as exc:  # unreadable TLS files: retrying will not help, but say so each time
                problem = str(exc)
            if self._closed.is_set():
                return
            attempt = 1 if self.connected.is_set() else attempt + 1
            self.connected.clear()
            self.reconnects += 1
            # Exponential with jitter, so that many bridges do not reconnect in step.
            delay = backoff_s(attempt, 0.2, self._max_backoff_s, jitter_s=0.5)
            log.warning("%s; reconnecting in %.1fs", problem, delay)
            if self._closed.wait(delay):
                return

    def _follow(self) -> None:
        if self._tls is not None:
            credentials = self._tls.channel_credentials()
            channel = grpc.secure_channel(self._address, credentials, self._tls.channel_options())
        else:
            channel = grpc.insecure_channel(self._address)
        try:
            call = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest())
            with self._lock:
                self._call = call
            if self._closed.is_set():
                call.cancel()
                return
            call.initial_metadata()  # the server answered: connected, even to a cluster of no nodes
            self.connected.set()
            log.info("following peers from %s", self.target)
            for note in call:
                self._apply(note)
        finally:
            with self._lock:
                self._call = None
            channel.close()

    def _apply(self, note: peer_pb2.ChangeNotification) -> None:
        spec = spec_from_notification(note)
        with self._lock:
            if note.type in (peer_pb2.PEER_ADDED, peer_pb2.PEER_UPDATED):
                if spec is None:
                    log.warning("peer %s has no usable address (%r); not reading it", note.name, note.address)
                    changed = self._peers.pop(note.name, None) is not None
                else:
                    changed = self._peers.get(note.name) != spec
                    self._peers[note.name] = spec
            elif note.type == peer_pb2.PEER_DELETED:
                changed = self._peers.pop(note.name, None) is not None
            else:
                changed = False
            current = dict(self._peers)
        if changed:
            self._on_change(current)


def _rpc_reason(exc: grpc.RpcError) -> str:
    details = (exc.details() or "").rpartition("last error: ")[2] or exc.details() or ""
    return f"{exc.code().name.lower()}: {details}" if details else exc.code().name.lower()
