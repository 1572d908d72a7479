"""The Relay client, RelaySource and `check` against the Observer server over real gRPC."""

from __future__ import annotations

import io
import queue
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.check import run_check
from hubble_bridge.errors import BridgeError, ConfigError
from hubble_bridge.flows.codec import event_time_ns
from hubble_bridge.server.observer import VERSION, ObserverServer
from hubble_bridge.server.replay import load_events
from hubble_bridge.server.store import EventStore
from hubble_bridge.sources.relay import RelayClient, RelaySource, build_request, parse_target

FLOWS = Path(__file__).resolve().parents[1].parent / "shared" / "flows"
WAIT_S = 10.0
END = object()


@pytest.fixture(scope="module")
def recorded() -> list[observer_pb2.GetFlowsResponse]:
    return load_events([FLOWS / "gke-istio-http-348.jsonl", FLOWS / "kind-drops-2.jsonl"])[0]


@pytest.fixture
def server(recorded) -> Iterator[tuple[EventStore, str]]:
    store = EventStore(max_flows=1000)
    store.extend(recorded)
    observer = ObserverServer(store, "127.0.0.1:0")
    yield store, observer.start()
    observer.stop(0)


@pytest.fixture
def client(server) -> Iterator[RelayClient]:
    relay = RelayClient(server[1], connect_timeout_s=5)
    yield relay
    relay.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unary_calls(client: RelayClient, recorded) -> None:
    status = client.server_status()
    assert (status.num_flows, status.seen_flows, status.version) == (350, 350, VERSION)
    names = [node.name for node in client.get_nodes().nodes]
    assert names == sorted({e.node_name for e in recorded}) and len(names) == 3
    assert [n.namespace for n in client.get_namespaces().namespaces] == ["default"]


def test_get_flows_with_a_built_request(client: RelayClient, recorded) -> None:
    since = event_time_ns(recorded[100])
    request = build_request(
        since_ns=since,
        whitelist=[{"http_method": ["GET"]}],
        blacklist=[flow_pb2.FlowFilter(http_status_code=["503"])],
        field_mask_paths=["time", "l7.http.code"],
    )
    got = list(client.get_flows(request))
    expected = [
        e
        for e in recorded
        if event_time_ns(e) >= since and e.flow.l7.http.method == "GET" and e.flow.l7.http.code != 503
    ]
    assert [(g.time, g.flow.l7.http.code) for g in got] == [(e.time, e.flow.l7.http.code) for e in expected]
    assert got and all(not g.flow.l7.http.method for g in got)  # masked away


def test_build_request_fields() -> None:
    request = build_request(follow=True, number=7, until_ns=1_500_000_000)
    assert (request.follow, request.number, request.first) == (True, 7, False)
    assert (request.until.seconds, request.until.nanos) == (1, 500_000_000)
    assert not request.HasField("since") and not request.HasField("field_mask")
    with pytest.raises(ConfigError, match=r"whitelist\[1\]: .*no_such_field"):
        build_request(whitelist=[{}, {"no_such_field": ["x"]}])


def test_refused_invalid_argument_is_one_line(client: RelayClient, server) -> None:
    with pytest.raises(BridgeError) as caught:
        list(client.get_flows(build_request(number=1, since_ns=1)))
    assert str(caught.value) == (
        f"Hubble Relay at {server[1]} refused the request: number cannot be combined with since or until"
    )


def test_connection_refused() -> None:
    target = f"127.0.0.1:{free_port()}"
    relay = RelayClient(target, connect_timeout_s=5)
    with pytest.raises(BridgeError) as caught:
        relay.get_flows(build_request(follow=True))
    assert str(caught.value) == f"cannot reach Hubble Relay at {target}: connection refused"
    relay.close()


def test_missing_unix_socket(tmp_path: Path) -> None:
    target = f"unix://{tmp_path}/absent.sock"
    relay = RelayClient(target, connect_timeout_s=5)
    with pytest.raises(BridgeError) as caught:
        relay.server_status()
    assert str(caught.value) == f"cannot reach Hubble Relay at {target}: no such socket"
    relay.close()


def test_silent_server_hits_the_connect_timeout() -> None:
    # Accepts TCP connections (the kernel's backlog does) but never speaks HTTP/2.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        target = f"127.0.0.1:{listener.getsockname()[1]}"
        relay = RelayClient(target, connect_timeout_s=0.3)
        with pytest.raises(BridgeError) as caught:
            relay.server_status()
        relay.close()
    assert str(caught.value) == f"cannot reach Hubble Relay at {target}: no answer within 0.3s"


@pytest.mark.parametrize(
    "target", ["", "localhost", "host:", ":4245", "host:http", "unix://", "unix://x.sock"]
)
def test_malformed_targets(target: str) -> None:
    with pytest.raises(BridgeError, match="invalid Hubble Relay address") as caught:
        RelayClient(target)
    assert repr(target) in str(caught.value)


def test_target_forms() -> None:
    assert parse_target("relay:4245") == ("relay:4245", False)
    assert parse_target("[::1]:4245") == ("[::1]:4245", False)
    assert parse_target("tls://relay:443") == ("relay:443", True)
    assert parse_target("unix:///var/run/cilium/hubble.sock") == ("unix:///var/run/cilium/hubble.sock", False)


def test_relay_source_over_a_unix_socket_closes_from_another_thread(tmp_path: Path, recorded) -> None:
    store = EventStore()
    store.extend(recorded[:5])
    observer = ObserverServer(store, f"unix://{tmp_path}/hubble.sock")
    source = RelaySource(RelayClient(observer.start()), build_request(number=2, follow=True))
    assert source.name == f"relay unix://{tmp_path}/hubble.sock"
    received: queue.Queue[object] = queue.Queue()

    def run() -> None:
        try:
            for response in source:
                received.put(response)
        except BridgeError as exc:
            received.put(exc)
        received.put(END)

    threading.Thread(target=run, daemon=True).start()
    assert [received.get(timeout=WAIT_S) for _ in range(2)] == recorded[3:5]
    store.append(recorded[5])
    assert received.get(timeout=WAIT_S) == recorded[5]
    source.close()
    assert received.get(timeout=WAIT_S) is END  # ends quietly, no error
    source.close()  # twice is fine
    observer.stop(0)


def test_relay_source_closed_before_iterating_yields_nothing(server) -> None:
    source = RelaySource(RelayClient(server[1]), build_request(follow=True))
    source.close()
    assert list(source) == []
    with pytest.raises(BridgeError, match="is closed"):  # the source owns its client
        source._client.server_status()


def test_check_prints_status_and_nodes(server, recorded) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_check(server[1], None, out=out, err=err) == 0
    text = out.getvalue()
    assert f"Healthcheck (via {server[1]}): Ok" in text
    assert "Current/Max Flows: 350/1,000 (35.00%)" in text
    assert "Seen Flows: 350" in text and f"Version: {VERSION}" in text
    assert "Connected Nodes: 3/3" in text and "Unavailable Nodes: 0" in text
    assert "Flows/s: 0.03" in text  # the two kind drops in the newest minute
    rows = [line.split() for line in text.splitlines() if line.startswith(("gke-", "kind-"))]
    per_node = Counter(e.node_name for e in recorded)
    assert {row[0]: row[3] for row in rows} == {name: f"{n}/1,000" for name, n in per_node.items()}
    assert {row[1] for row in rows} == {"Connected"}
    assert err.getvalue() == ""


def test_check_unreachable_is_one_line_and_exit_1() -> None:
    out, err = io.StringIO(), io.StringIO()
    target = f"127.0.0.1:{free_port()}"
    assert run_check(target, None, out=out, err=err) == 1
    assert (
        err.getvalue() == f"hubble-otlp: error: cannot reach Hubble Relay at {target}: connection refused\n"
    )
    assert out.getvalue() == ""
