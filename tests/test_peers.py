"""Peer discovery as Relay does it (peer.Peer/Notify over real gRPC) and the stream set reading the nodes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trustme

from hubble_bridge.api import observer_pb2, peer_pb2, peer_pb2_grpc
from hubble_bridge.config import BridgeConfig, SourceConfig
from hubble_bridge.errors import BridgeError
from hubble_bridge.flows.codec import event_time_ns
from hubble_bridge.scaleout.worker import open_stream
from hubble_bridge.server.observer import ObserverServer
from hubble_bridge.server.peer import PeerEntry, PeerServer, parse_peer_entry
from hubble_bridge.server.store import EventStore
from hubble_bridge.sources.files import read_events
from hubble_bridge.sources.peers import PeerWatcher, StreamSpec, normalize_address, spec_from_notification
from hubble_bridge.sources.streams import StreamSet
from hubble_bridge.tls import ClientTlsOptions, ServerTlsOptions
from tests.conftest import SHARED_FLOWS

WAIT_S = 10.0
SINCE_ALL = "2000-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("10.0.0.7", "10.0.0.7:4244"),  # Relay adds Hubble's server port to a bare IP
        ("10.0.0.7:4245", "10.0.0.7:4245"),
        ("10.0.0.7:grpc", "10.0.0.7:4244"),
        ("fd00::7", "[fd00::7]:4244"),
        ("[fd00::7]:4245", "[fd00::7]:4245"),
        ("/var/run/cilium/hubble.sock", "unix:///var/run/cilium/hubble.sock"),
        ("unix:///var/run/cilium/hubble.sock", "unix:///var/run/cilium/hubble.sock"),
        ("node-1.example:4244", "node-1.example:4244"),
        ("node-1.example", "node-1.example:4244"),
        ("", None),
        ("   ", None),
    ],
)
def test_peer_addresses_are_read_as_relay_reads_them(address: str, target: str | None) -> None:
    assert normalize_address(address) == target


def test_tls_comes_from_the_notification() -> None:
    with_tls = peer_pb2.ChangeNotification(name="kind/node-a", address="10.0.0.7", type=peer_pb2.PEER_ADDED)
    with_tls.tls.server_name = "node-a.kind.hubble-grpc.cilium.io"
    assert spec_from_notification(with_tls) == StreamSpec(
        "kind/node-a", "10.0.0.7:4244", True, "node-a.kind.hubble-grpc.cilium.io"
    )
    plain = peer_pb2.ChangeNotification(name="node-b", address="10.0.0.8:4244", type=peer_pb2.PEER_ADDED)
    assert spec_from_notification(plain) == StreamSpec("node-b", "10.0.0.8:4244", False, "")
    # An empty TLS message still means TLS (Relay tests presence, not the name).
    empty_tls = peer_pb2.ChangeNotification(name="node-c", address="10.0.0.9", tls=peer_pb2.TLS())
    assert spec_from_notification(empty_tls) == StreamSpec("node-c", "10.0.0.9:4244", True, "")
    assert spec_from_notification(peer_pb2.ChangeNotification(name="node-d")) is None


def test_peer_entries_from_the_command_line() -> None:
    assert parse_peer_entry("node-a=127.0.0.1:4245") == PeerEntry("node-a", "127.0.0.1:4245")
    assert parse_peer_entry("node-a=10.0.0.7@node-a.default.hubble-grpc.cilium.io") == PeerEntry(
        "node-a", "10.0.0.7", "node-a.default.hubble-grpc.cilium.io"
    )
    for bad in ("node-a", "=1.2.3.4:4244", "node-a=", "node-a=1.2.3.4@"):
        with pytest.raises(BridgeError, match="invalid peer"):
            parse_peer_entry(bad)


@pytest.fixture
def peer_server() -> Iterator[PeerServer]:
    server = PeerServer("127.0.0.1:0", [PeerEntry("node-a", "10.0.0.1"), PeerEntry("node-b", "10.0.0.2")])
    server.start()
    yield server
    server.stop()


def test_notify_sends_known_peers_then_each_change(peer_server: PeerServer) -> None:
    assert peer_server.address is not None
    with grpc.insecure_channel(peer_server.address) as channel:
        call = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest(), timeout=WAIT_S)
        first = [next(call), next(call)]
        assert {(n.name, n.address, n.type) for n in first} == {
            ("node-a", "10.0.0.1", peer_pb2.PEER_ADDED),
            ("node-b", "10.0.0.2", peer_pb2.PEER_ADDED),
        }
        peer_server.upsert(PeerEntry("node-a", "10.0.0.1"))  # no change: nothing sent
        peer_server.upsert(PeerEntry("node-a", "10.0.0.11", "node-a.default.hubble-grpc.cilium.io"))
        peer_server.upsert(PeerEntry("node-c", "10.0.0.3"))
        peer_server.remove("node-b")
        peer_server.remove("node-x")  # unknown: nothing sent
        changes = [next(call) for _ in range(3)]
        call.cancel()
    assert [(n.name, n.type) for n in changes] == [
        ("node-a", peer_pb2.PEER_UPDATED),
        ("node-c", peer_pb2.PEER_ADDED),
        ("node-b", peer_pb2.PEER_DELETED),
    ]
    assert changes[0].address == "10.0.0.11"
    assert changes[0].tls.server_name == "node-a.default.hubble-grpc.cilium.io"
    assert not changes[1].HasField("tls")


def test_watcher_follows_adds_updates_deletes(peer_server: PeerServer) -> None:
    seen: queue.Queue[dict[str, StreamSpec]] = queue.Queue()
    watcher = PeerWatcher(str(peer_server.address), seen.put)
    watcher.start()
    try:
        assert watcher.connected.wait(WAIT_S)
        latest = _until(seen, lambda peers: len(peers) == 2)
        assert latest["node-a"] == StreamSpec("node-a", "10.0.0.1:4244", False, "")
        peer_server.upsert(PeerEntry("node-a", "10.0.0.11:4245", "node-a.default.hubble-grpc.cilium.io"))
        latest = _until(seen, lambda peers: peers["node-a"].target == "10.0.0.11:4245")
        assert latest["node-a"].tls is True
        assert latest["node-a"].tls_server_name == "node-a.default.hubble-grpc.cilium.io"
        peer_server.remove("node-b")
        latest = _until(seen, lambda peers: "node-b" not in peers)
        assert set(latest) == {"node-a"}
        assert watcher.peers() == latest
    finally:
        watcher.stop()


def test_watcher_reconnects_after_the_peer_service_restarts(peer_server: PeerServer) -> None:
    seen: queue.Queue[dict[str, StreamSpec]] = queue.Queue()
    address = str(peer_server.address)
    watcher = PeerWatcher(address, seen.put, max_backoff_s=0.5)
    watcher.start()
    replacement: PeerServer | None = None
    try:
        _until(seen, lambda peers: len(peers) == 2)
        peer_server.stop()
        replacement = PeerServer(address, [PeerEntry("node-c", "10.0.0.3")])
        replacement.start()
        latest = _until(seen, lambda peers: "node-c" in peers)
        assert latest["node-c"].target == "10.0.0.3:4244"
        assert watcher.connected.is_set()
        assert watcher.reconnects >= 1
    finally:
        watcher.stop()
        if replacement is not None:
            replacement.stop()


def test_watcher_says_what_is_wrong_with_the_address() -> None:
    with pytest.raises(BridgeError, match="invalid peer service address 'no-port'"):
        PeerWatcher("no-port", lambda _peers: None)


def _until(seen: queue.Queue[dict[str, StreamSpec]], check: object) -> dict[str, StreamSpec]:
    while True:
        peers = seen.get(timeout=WAIT_S)
        if check(peers):  # type: ignore[operator]
            return peers


# ---- StreamSet over real Observer servers --------------------------------------------------------


def _node(events: list[observer_pb2.GetFlowsResponse], tls: ServerTlsOptions | None = None) -> ObserverServer:
    store = EventStore(10_000)
    store.extend(events)
    server = ObserverServer(store, "127.0.0.1:0", tls)
    server.start()
    return server


class _Reader:
    """Iterates a StreamSet on a thread; wait_count waits on a Condition for N events."""

    def __init__(self, streams: StreamSet) -> None:
        self.events: list[observer_pb2.GetFlowsResponse] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(streams,), daemon=True)
        self._thread.start()

    def _run(self, streams: StreamSet) -> None:
        for event in streams:
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def wait_count(self, count: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.events) >= count, WAIT_S)

    def join(self) -> None:
        self._thread.join(WAIT_S)


def test_stream_set_reads_each_node_once_and_hands_over_by_position() -> None:
    http = list(read_events([SHARED_FLOWS / "gke-istio-http-348.jsonl"]))
    dns = list(read_events([SHARED_FLOWS / "gke-istio-dns-330.jsonl"]))
    node_a, node_b = _node(http), _node(dns)
    config = BridgeConfig(source=SourceConfig(since=SINCE_ALL))
    streams = StreamSet(lambda spec, after: open_stream(config, spec, after))
    reader = _Reader(streams)
    a = StreamSpec("node-a", str(node_a.address))
    b = StreamSpec("node-b", str(node_b.address))
    try:
        assert streams.apply({"node-a": (a, None), "node-b": (b, None)}) == {}
        assert reader.wait_count(len(http) + len(dns))
        assert streams.positions() == {
            "node-a": event_time_ns(http[-1]),
            "node-b": event_time_ns(dns[-1]),
        }
        released = streams.apply({"node-a": (a, None)})
        assert released == {"node-b": event_time_ns(dns[-1])}
        assert streams.keys() == ["node-a"]
        # node-b comes back after the position it was released at: nothing is read twice
        middle = event_time_ns(dns[len(dns) // 2])
        assert streams.apply({"node-a": (a, None), "node-b": (b, middle)}) == {}
        later = [e for e in dns if event_time_ns(e) > middle]
        assert reader.wait_count(len(http) + len(dns) + len(later))
    finally:
        streams.close()
        reader.join()
        node_a.stop()
        node_b.stop()
    times = [event_time_ns(e) for e in reader.events]  # unique per event in these recordings
    assert len(times) == len(http) + len(dns) + len(later)
    assert sorted(times[: len(http) + len(dns)]) == sorted(event_time_ns(e) for e in http + dns)
    assert sorted(times[len(http) + len(dns) :]) == sorted(event_time_ns(e) for e in later)


def test_nodes_are_verified_with_the_tls_server_name_from_the_notification(tmp_path: Path) -> None:
    ca = trustme.CA()
    name = "node-a.default.hubble-grpc.cilium.io"
    cert = ca.issue_cert(name)  # not valid for 127.0.0.1: only the notified name makes it verify
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (tmp_path / "node.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    (tmp_path / "node-key.pem").write_bytes(cert.private_key_pem.bytes())
    events = list(read_events([SHARED_FLOWS / "kind-drops-2.jsonl"]))
    node = _node(events, ServerTlsOptions(str(tmp_path / "node.pem"), str(tmp_path / "node-key.pem")))
    note = peer_pb2.ChangeNotification(name="node-a", address=str(node.address), type=peer_pb2.PEER_ADDED)
    note.tls.server_name = name
    spec = spec_from_notification(note)
    assert spec is not None
    tls = ClientTlsOptions(ca_file=str(tmp_path / "ca.pem"))
    config = BridgeConfig(source=SourceConfig(since=SINCE_ALL, tls=tls))
    streams = StreamSet(lambda s, after: open_stream(config, s, after))
    reader = _Reader(streams)
    try:
        streams.apply({"node-a": (spec, None)})
        assert reader.wait_count(len(events))
    finally:
        streams.close()
        reader.join()
        node.stop()
    assert [event_time_ns(e) for e in reader.events] == [event_time_ns(e) for e in events]


def test_a_cluster_without_nodes_is_still_a_connected_peer_service() -> None:
    server = PeerServer("127.0.0.1:0")
    server.start()
    watcher = PeerWatcher(str(server.address), lambda _peers: None)
    watcher.start()
    try:
        assert watcher.connected.wait(WAIT_S)
        assert watcher.peers() == {}
    finally:
        watcher.stop()
        server.stop()


def test_the_peer_service_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    name = "hubble-peer.kube-system.svc.cluster.local"
    cert = ca.issue_cert(name)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (tmp_path / "peer.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    (tmp_path / "peer-key.pem").write_bytes(cert.private_key_pem.bytes())
    tls = ServerTlsOptions(str(tmp_path / "peer.pem"), str(tmp_path / "peer-key.pem"))
    server = PeerServer("127.0.0.1:0", [PeerEntry("node-a", "10.0.0.1")], tls)
    server.start()
    seen: queue.Queue[dict[str, StreamSpec]] = queue.Queue()
    client_tls = ClientTlsOptions(ca_file=str(tmp_path / "ca.pem"), server_name=name)
    watcher = PeerWatcher(str(server.address), seen.put, client_tls)
    watcher.start()
    try:
        assert set(_until(seen, lambda peers: bool(peers))) == {"node-a"}
    finally:
        watcher.stop()
        server.stop()
