"""The Observer server over real gRPC (loopback and a unix socket), fed from the recorded flows."""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hubble_bridge.api import flow_pb2, observer_pb2, observer_pb2_grpc
from hubble_bridge.errors import BridgeError
from hubble_bridge.flows.codec import event_time_ns, timestamp_from_ns, to_json_line
from hubble_bridge.server.address import parse_listen
from hubble_bridge.server.observer import VERSION, ObserverServer
from hubble_bridge.server.replay import Replayer, load_events, loop_shift_ns, run_replay, schedule
from hubble_bridge.server.store import EventStore

FLOWS = Path(__file__).resolve().parents[1].parent / "shared" / "flows"
HTTP = FLOWS / "gke-istio-http-348.jsonl"
DNS = FLOWS / "gke-istio-dns-330.jsonl"
DROPS = FLOWS / "kind-drops-2.jsonl"
ALL_FILES = [DNS, HTTP, DROPS]
WAIT_S = 10.0
SECOND = 1_000_000_000
END = object()

GetFlowsRequest = observer_pb2.GetFlowsRequest
GetFlowsResponse = observer_pb2.GetFlowsResponse
BASE_NS = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def recorded() -> list[observer_pb2.GetFlowsResponse]:
    events, skipped = load_events(ALL_FILES)
    assert skipped == 0 and len(events) == 680
    return events


@pytest.fixture(scope="module")
def stub(recorded: list[observer_pb2.GetFlowsResponse]) -> Iterator[observer_pb2_grpc.ObserverStub]:
    store = EventStore(max_flows=4095)
    store.extend(recorded)
    server = ObserverServer(store, "127.0.0.1:0")
    address = server.start()
    with grpc.insecure_channel(address) as channel:
        yield observer_pb2_grpc.ObserverStub(channel)
    server.stop(0)


@pytest.fixture
def live() -> Iterator[tuple[EventStore, observer_pb2_grpc.ObserverStub, ObserverServer]]:
    store = EventStore(max_flows=100)
    server = ObserverServer(store, "127.0.0.1:0")
    with grpc.insecure_channel(server.start()) as channel:
        yield store, observer_pb2_grpc.ObserverStub(channel), server
    server.stop(0)


def flows(stub: observer_pb2_grpc.ObserverStub, **request: object) -> list[observer_pb2.GetFlowsResponse]:
    return list(stub.GetFlows(GetFlowsRequest(**request), timeout=WAIT_S))


def consume(call: Iterator[observer_pb2.GetFlowsResponse]) -> queue.Queue[object]:
    """Reads a stream on a thread into a queue, ending with END (or the RpcError)."""
    received: queue.Queue[object] = queue.Queue()

    def run() -> None:
        try:
            for response in call:
                received.put(response)
        except grpc.RpcError as exc:
            received.put(exc)
            return
        received.put(END)

    threading.Thread(target=run, daemon=True).start()
    return received


def event(
    n: int, *, node: str = "node-a", namespace: str = "ns", uuid: str = ""
) -> observer_pb2.GetFlowsResponse:
    response = observer_pb2.GetFlowsResponse(
        node_name=node, time=timestamp_from_ns(1_700_000_000_000_000_000 + n)
    )
    response.flow.time.CopyFrom(response.time)
    response.flow.uuid = uuid
    response.flow.node_name = node
    response.flow.source.namespace = namespace
    response.flow.source.pod_name = f"pod-{n}"
    response.flow.verdict = flow_pb2.FORWARDED
    return response


def test_without_arguments_every_buffered_event_in_order(stub, recorded) -> None:
    assert flows(stub) == recorded


def test_number_is_the_last_n_and_first_the_first_n(stub, recorded) -> None:
    assert flows(stub, number=5) == recorded[-5:]
    assert flows(stub, number=3, first=True) == recorded[:3]


def test_since_and_until_bound_event_time(stub, recorded) -> None:
    http = [e for e in recorded if e.flow.l7.HasField("http")]
    since, until = event_time_ns(http[10]), event_time_ns(http[20])
    expected = [e for e in recorded if since <= event_time_ns(e) <= until]
    got = flows(stub, since=timestamp_from_ns(since), until=timestamp_from_ns(until))
    assert got == expected and len(got) >= 11


def test_whitelist_and_blacklist(stub, recorded) -> None:
    drops = flows(stub, whitelist=[flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED])])
    assert [e.flow.drop_reason_desc for e in drops] == [flow_pb2.INVALID_SOURCE_IP, flow_pb2.POLICY_DENIED]

    pods = flows(stub, whitelist=[flow_pb2.FlowFilter(source_pod=["bookinfo/"])])
    assert pods == [e for e in recorded if e.flow.source.namespace == "bookinfo"] and pods

    not_503 = flows(
        stub,
        whitelist=[flow_pb2.FlowFilter(http_status_code=["5+"])],
        blacklist=[flow_pb2.FlowFilter(http_status_code=["503"])],
    )
    assert not_503 == [e for e in recorded if e.flow.l7.http.code >= 500 and e.flow.l7.http.code != 503]

    # OR across whitelist entries, AND within one; last N counts matching flows only.
    dns_or_drop = flows(
        stub,
        number=4,
        whitelist=[
            flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED]),
            flow_pb2.FlowFilter(dns_query=[r"^zipkin\."], source_pod=["kube-system/"]),
        ],
    )
    dns = [e for e in recorded if e.flow.l7.dns.query.startswith("zipkin.")]
    assert dns_or_drop[-2:] == recorded[-2:] and dns_or_drop[:2] == dns[-2:]


def test_field_mask_keeps_only_listed_flow_fields(stub, recorded) -> None:
    got = flows(stub, number=2, field_mask={"paths": ["source.namespace", "time", "l4"]})
    for masked, original in zip(got, recorded[-2:], strict=True):
        expected = flow_pb2.Flow(time=original.flow.time, l4=original.flow.l4)
        expected.source.namespace = original.flow.source.namespace
        assert masked.flow == expected
        assert masked.node_name == original.node_name and masked.time == original.time


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"number": 3, "since": timestamp_from_ns(1)}, "number cannot be combined with since"),
        ({"first": True, "follow": True}, "first cannot be combined with follow"),
        ({"field_mask": {"paths": ["source.nope"]}}, "'source.nope'"),
        (
            {"whitelist": [flow_pb2.FlowFilter(experimental={"cel_expression": ["_flow.IP"]})]},
            'wanted "bool" result type',
        ),
        ({"blacklist": [flow_pb2.FlowFilter(source_ip=["10.0.0.0/99"])]}, "source_ip"),
        # RE2 syntax, as Hubble's Go regexp: lookbehind and backreferences are refused.
        ({"whitelist": [flow_pb2.FlowFilter(http_path=["(?<=/api)/v1"])]}, "RE2 syntax"),
        ({"whitelist": [flow_pb2.FlowFilter(dns_query=[r"(a)\1"])]}, "dns_query"),
    ],
)
def test_requests_hubble_refuses_are_invalid_argument(stub, request_fields, message) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        flows(stub, **request_fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


def test_server_status_on_recorded_flows(stub, recorded) -> None:
    status = stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=WAIT_S)
    assert (status.num_flows, status.max_flows, status.seen_flows) == (680, 4095, 680)
    assert status.num_connected_nodes.value == 5 and status.HasField("num_unavailable_nodes")
    assert status.num_unavailable_nodes.value == 0
    assert status.version == VERSION and status.uptime_ns > 0
    # The newest events are the two kind drops, 5 s apart: both fall in the last minute.
    assert status.flows_rate == pytest.approx(2 / 60)


def test_flows_rate_counts_the_last_minute_of_event_time() -> None:
    events, _ = load_events([HTTP])
    store = EventStore()
    store.extend(events)
    newest = event_time_ns(events[-1])
    in_window = sum(1 for e in events if event_time_ns(e) >= newest - 60_000_000_000)
    assert 0 < in_window < len(events)
    assert store.flows_rate() == pytest.approx(in_window / 60)


def test_get_nodes_lists_every_node_in_the_data(stub, recorded) -> None:
    nodes = stub.GetNodes(observer_pb2.GetNodesRequest(), timeout=WAIT_S).nodes
    expected = Counter(e.node_name for e in recorded)
    assert [(n.name, n.num_flows, n.seen_flows) for n in nodes] == sorted(
        (name, count, count) for name, count in expected.items()
    )
    assert {(n.state, n.max_flows, n.version) for n in nodes} == {(1, 4095, VERSION)}


def test_get_namespaces_from_the_last_hour_of_event_time(stub) -> None:
    # The kind drops (2023) are the newest; the GKE recordings (2021) are long outside the hour.
    namespaces = stub.GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=WAIT_S).namespaces
    assert [(n.cluster, n.namespace) for n in namespaces] == [("kind-kind", "default")]

    store = EventStore()
    store.extend(load_events([HTTP])[0])
    assert store.namespaces() == [("", "bookinfo"), ("", "istio-system"), ("", "kube-system")]


def test_namespaces_sorted_by_cluster_then_namespace() -> None:
    store = EventStore()
    for n, (cluster, ns) in enumerate([("b", "x"), ("a", "z"), ("a", "y"), ("b", "x")]):
        response = event(n, namespace=ns)
        response.flow.source.cluster_name = cluster
        store.append(response)
    assert store.namespaces() == [("a", "y"), ("a", "z"), ("b", "x")]


def test_agent_and_debug_events_end_at_once(stub) -> None:
    assert list(stub.GetAgentEvents(observer_pb2.GetAgentEventsRequest(follow=True), timeout=WAIT_S)) == []
    assert list(stub.GetDebugEvents(observer_pb2.GetDebugEventsRequest(follow=True), timeout=WAIT_S)) == []


def test_follow_streams_live_appends(live) -> None:
    store, stub, _ = live
    store.extend(event(n) for n in range(3))
    call = stub.GetFlows(GetFlowsRequest(follow=True))
    call.initial_metadata()  # the server sends headers once the stream is live
    received = consume(call)
    store.append(event(3))
    store.extend([event(4), event(5)])
    got = [received.get(timeout=WAIT_S) for _ in range(3)]
    assert got == [event(3), event(4), event(5)]  # follow alone: nothing from before
    call.cancel()
    assert isinstance(received.get(timeout=WAIT_S), grpc.RpcError)


def test_number_then_follow(live) -> None:
    store, stub, _ = live
    store.extend(event(n) for n in range(10))
    call = stub.GetFlows(GetFlowsRequest(number=2, follow=True))
    received = consume(call)
    assert [received.get(timeout=WAIT_S) for _ in range(2)] == [event(8), event(9)]
    store.append(event(10))
    assert received.get(timeout=WAIT_S) == event(10)
    call.cancel()


def test_follow_applies_filters_and_until_ends_the_stream(live) -> None:
    store, stub, _ = live
    request = GetFlowsRequest(
        follow=True,
        since=event(0).time,
        until=event(5).time,
        whitelist=[flow_pb2.FlowFilter(source_pod=["keep/"])],
    )
    call = stub.GetFlows(request)
    call.initial_metadata()
    received = consume(call)
    store.extend([event(1, namespace="keep"), event(2, namespace="drop"), event(3, namespace="keep")])
    store.append(event(9, namespace="keep"))  # past until: the stream ends
    got = [received.get(timeout=WAIT_S) for _ in range(3)]
    assert got == [event(1, namespace="keep"), event(3, namespace="keep"), END]


def test_server_stop_ends_follow_streams(live) -> None:
    _, stub, server = live
    call = stub.GetFlows(GetFlowsRequest(follow=True))
    call.initial_metadata()
    received = consume(call)
    server.stop(grace=5)
    assert received.get(timeout=WAIT_S) is END


def test_slow_follower_is_told_what_the_ring_overwrote() -> None:
    store = EventStore(max_flows=3)
    position = store.snapshot().next_seq
    store.extend(event(n) for n in range(5))
    batch = store.wait_after(position, timeout=0)
    assert batch.lost == 2 and batch.events == [event(2), event(3), event(4)] and batch.next_seq == 5
    assert store.counts() == (3, 5)


def test_unix_socket(tmp_path: Path, recorded) -> None:
    store = EventStore()
    store.extend(recorded[:4])
    server = ObserverServer(store, f"unix://{tmp_path}/observer.sock")
    address = server.start()
    assert address == f"unix://{tmp_path}/observer.sock"
    with grpc.insecure_channel(address) as channel:
        assert flows(observer_pb2_grpc.ObserverStub(channel)) == recorded[:4]
    server.stop(0)


@pytest.mark.parametrize(
    "value", ["4245", "localhost", "host:port", "::1:4245", "a b:1", "unix://", "h:70000"]
)
def test_malformed_listen_addresses_name_the_value(value: str) -> None:
    with pytest.raises(BridgeError, match="invalid listen address") as caught:
        parse_listen(value)
    assert repr(value) in str(caught.value)


def test_listen_forms() -> None:
    assert parse_listen(":4245").grpc_address() == "[::]:4245"
    assert parse_listen("[::1]:0").grpc_address() == "[::1]:0"
    server = ObserverServer(EventStore(), ":0")
    address = server.start()
    assert address.startswith("[::]:") and not address.endswith(":0")
    server.stop(0)
    server.stop(0)  # twice is fine


def test_replay_with_rate_keeps_recorded_timestamps(live) -> None:
    store, stub, _ = live
    events, _ = load_events([HTTP])
    events = events[:60]
    call = stub.GetFlows(GetFlowsRequest(follow=True, since=timestamp_from_ns(0)))
    call.initial_metadata()
    received = consume(call)
    replayer = Replayer(store, events, rate=2000, loop=False)
    replayer.start()
    got = [received.get(timeout=WAIT_S) for _ in range(len(events))]
    assert got == events
    assert replayer.finished.wait(WAIT_S)
    replayer.stop()
    call.cancel()


def test_rate_schedule_spaces_events_evenly() -> None:
    events, _ = load_events([DROPS])
    due = list(schedule(events, rate=4.0, loop=False))
    assert [offset for offset, _ in due] == [0.0, 0.25]
    assert [e for _, e in due] == events


def test_loop_rebases_times_and_makes_uuids_unique(tmp_path: Path, live) -> None:
    store, stub, _ = live
    recording = tmp_path / "three.jsonl"
    recording.write_bytes(b"\n".join(to_json_line(event(n * SECOND, uuid=f"uuid-{n}")) for n in range(3)))
    events, _ = load_events([recording])
    shift = loop_shift_ns(events)
    assert shift == 2 * SECOND + SECOND  # span + mean gap

    call = stub.GetFlows(GetFlowsRequest(follow=True, since=timestamp_from_ns(0)))
    call.initial_metadata()
    received = consume(call)
    replayer = Replayer(store, events, rate=1000, loop=True)
    replayer.start()
    got = [received.get(timeout=WAIT_S) for _ in range(9)]
    replayer.stop()
    call.cancel()

    times = [event_time_ns(e) for e in got]
    assert times == sorted(set(times))  # strictly increasing, across passes
    assert [t - times[0] for t in times] == [p * shift + n * SECOND for p in range(3) for n in range(3)]
    assert all(e.flow.time == e.time for e in got)
    uuids = [e.flow.uuid for e in got]
    assert uuids[:3] == ["uuid-0", "uuid-1", "uuid-2"] and len(set(uuids)) == 9


def test_loop_without_rate_continues_at_the_recorded_pace() -> None:
    events, _ = load_events([DROPS])
    gap_s = (event_time_ns(events[1]) - event_time_ns(events[0])) / 1e9
    due = schedule(events, rate=None, loop=True, first_pass=1)
    offsets = [next(due)[0] for _ in range(4)]
    # Pass 0 went in at once; pass 1 starts one mean gap after its last event, and so on.
    assert offsets == pytest.approx([gap_s, 2 * gap_s, 3 * gap_s, 4 * gap_s])


def test_run_replay_reports_bad_lines_and_serves(tmp_path: Path) -> None:
    recording = tmp_path / "mixed.jsonl"
    good = DROPS.read_bytes().splitlines()
    recording.write_bytes(b"\n".join([good[0], b"{not json", good[1], b'{"flow": {"nope": 1}}']) + b"\n")
    problems: list[str] = []
    ready: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    result: queue.Queue[int] = queue.Queue()
    socket = f"unix://{tmp_path}/replay.sock"

    def run() -> None:
        result.put(run_replay([recording], socket, on_problem=problems.append, stop=stop, on_ready=ready.put))

    threading.Thread(target=run, daemon=True).start()
    address = ready.get(timeout=WAIT_S)
    with grpc.insecure_channel(address) as channel:
        got = flows(observer_pb2_grpc.ObserverStub(channel))
    stop.set()
    assert result.get(timeout=WAIT_S) == 0
    assert [e.flow.drop_reason_desc for e in got] == [flow_pb2.INVALID_SOURCE_IP, flow_pb2.POLICY_DENIED]
    assert [p.split(": ")[0] for p in problems] == [f"{recording}:2", f"{recording}:4"]


def test_run_replay_with_only_bad_lines_is_one_clear_error(tmp_path: Path) -> None:
    recording = tmp_path / "bad.jsonl"
    recording.write_text("garbage\n")
    with pytest.raises(BridgeError, match="nothing to replay"):
        run_replay([recording], "127.0.0.1:0", on_problem=lambda _: None)
