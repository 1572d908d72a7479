"""Scale-out: merging worker snapshots, the assignment plan, and real workers over real gRPC.

Two Observer servers stand for two nodes behind a Peer service; the bridge runs
two spawned worker processes. Every flow must be counted exactly once, a deleted
node must stop being read, and a killed worker must come back without its
counters going backwards or its streams being read twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hubble_bridge.api import observer_pb2
from hubble_bridge.config import BridgeConfig, ExportConfig, SourceConfig
from hubble_bridge.errors import ConfigError
from hubble_bridge.mapping.merge import (
    WORKER_ATTRIBUTE,
    SnapshotMerger,
    family_total,
    merge_families,
    merge_snapshots,
)
from hubble_bridge.mapping.metrics import MetricsAggregator, MetricsConfig
from hubble_bridge.scaleout import ScaleOut, ScaleOutConfig, measure_scale, plan_assignment
from hubble_bridge.scaleout.worker import rfc3339, worker_output
from hubble_bridge.server.observer import ObserverServer
from hubble_bridge.server.peer import PeerEntry, PeerServer
from hubble_bridge.server.replay import loop_shift_ns, rebased
from hubble_bridge.server.store import EventStore
from hubble_bridge.sources.files import read_events
from hubble_bridge.sources.resilient import parse_since
from hubble_bridge.telemetry import (
    Exemplar,
    HistogramPoint,
    MetricFamily,
    MetricKind,
    MetricsSnapshot,
    NumberPoint,
)
from tests.conftest import REPO, SHARED_FLOWS
from tests.otlp_receiver import OtlpReceiver

FLOWS = "hubble.flows_processed"
RECEIVED = "hubble_otlp.flows.received"
WAIT_S = 30.0
RESOURCE = (("service.name", "hubble-otlp"),)

# ---- merge ---------------------------------------------------------------------------------------


def counter(name: str, points: dict[tuple[tuple[str, str], ...], int], start: int = 100) -> MetricFamily:
    return MetricFamily(
        name, "", "1", MetricKind.COUNTER, [NumberPoint(a, v) for a, v in points.items()], start
    )


def gauge(name: str, value: float, start: int = 100) -> MetricFamily:
    return MetricFamily(name, "", "1", MetricKind.GAUGE, [NumberPoint((), value)], start)


def histogram(buckets: list[int], total: float, exemplars: list[Exemplar], start: int = 100) -> MetricFamily:
    point = HistogramPoint((("http.request.method", "GET"),), sum(buckets), total, buckets, exemplars)
    return MetricFamily(
        "http.server.request.duration", "", "s", MetricKind.HISTOGRAM, [point], start, (0.1, 1.0)
    )


def snapshot(*families: MetricFamily, time_ns: int = 1000) -> MetricsSnapshot:
    return MetricsSnapshot(RESOURCE, time_ns, list(families))


TCP = (("protocol", "TCP"),)
UDP = (("protocol", "UDP"),)


def test_counters_are_summed_per_series() -> None:
    merged = merge_snapshots(
        {
            "0": snapshot(counter(FLOWS, {TCP: 5, UDP: 1}, start=100), time_ns=2000),
            "1": snapshot(counter(FLOWS, {TCP: 7}, start=90), time_ns=1500),
        }
    )
    (family,) = merged.families
    assert {p.attributes: p.value for p in family.points} == {TCP: 12, UDP: 1}
    assert family.start_time_ns == 90  # the earliest start covers both
    assert merged.time_ns == 2000
    assert merged.resource == RESOURCE


def test_histograms_sum_buckets_and_keep_the_newest_exemplar_per_bucket() -> None:
    old_fast = Exemplar(0.05, 10, b"\x01" * 16)
    new_fast = Exemplar(0.07, 20, b"\x02" * 16)
    slow = Exemplar(3.0, 5, b"\x03" * 16)
    merged = merge_families(
        {
            "0": [histogram([2, 1, 0], 1.2, [old_fast])],
            "1": [histogram([1, 0, 1], 3.07, [new_fast, slow])],
        }
    )
    (family,) = merged
    (point,) = family.points
    assert isinstance(point, HistogramPoint)
    assert point.bucket_counts == [3, 1, 1]
    assert point.count == 5
    assert point.sum == pytest.approx(4.27)
    assert point.exemplars == [new_fast, slow]
    assert family.bounds == (0.1, 1.0)


def test_histograms_with_different_bounds_are_refused() -> None:
    other = histogram([1, 0, 0], 0.01, [])
    other.bounds = (0.5, 5.0)
    with pytest.raises(ValueError, match="bounds differ"):
        merge_families({"0": [histogram([1, 0, 0], 0.01, [])], "1": [other]})


def test_gauges_are_summed_maxed_or_kept_per_worker() -> None:
    merged = merge_families(
        {
            "0": [gauge("hubble_otlp.queue.depth", 10), gauge("hubble_otlp.export.latency", 0.2)],
            "1": [gauge("hubble_otlp.queue.depth", 5), gauge("hubble_otlp.export.latency", 0.9)],
            "2": [gauge("some.level", 3)],
        }
    )
    values = {f.name: {p.attributes: p.value for p in f.points} for f in merged}
    assert values["hubble_otlp.queue.depth"] == {(): 15}  # events queued in all workers
    assert values["hubble_otlp.export.latency"] == {(): 0.9}  # the slowest worker
    assert values["some.level"] == {((WORKER_ATTRIBUTE, "2"),): 3}  # unknown gauges: one series per worker


def test_a_restarted_worker_never_makes_totals_go_backwards() -> None:
    merger = SnapshotMerger(RESOURCE, start_time_ns=50)
    merger.update("0", snapshot(counter(FLOWS, {TCP: 10}, start=100), gauge("hubble_otlp.queue.depth", 4)))
    merger.update("1", snapshot(counter(FLOWS, {TCP: 3}, start=100)))
    merger.update("0", snapshot(counter(FLOWS, {TCP: 25}, start=100)))
    assert family_total(merger.merged(2000), FLOWS) == 28
    merger.forget_gauges("0")  # worker 0 died: its level is gone, its totals are not
    assert family_total(merger.merged(2000), "hubble_otlp.queue.depth") == 0
    assert family_total(merger.merged(2000), FLOWS) == 28
    merger.update("0", snapshot())  # the new life has counted nothing yet
    assert family_total(merger.merged(2000), FLOWS) == 28
    merger.update("0", snapshot(counter(FLOWS, {TCP: 2, UDP: 1}, start=300)))  # new start time: new life
    merged = merger.merged(3000)
    assert {p.attributes: p.value for p in merged.families[0].points} == {TCP: 25 + 2 + 3, UDP: 1}
    assert merged.families[0].start_time_ns == 50  # the parent's start: older than any worker's
    assert merger.restarts_seen == 1
    merger.update("0", snapshot(counter(FLOWS, {TCP: 5, UDP: 1}, start=300)))
    assert family_total(merger.merged(4000), FLOWS) == 25 + 5 + 1 + 3


# ---- plan and settings ---------------------------------------------------------------------------


def test_the_plan_is_balanced_sticky_and_the_same_everywhere() -> None:
    nodes = [f"node-{i}" for i in range(7)]
    plan = plan_assignment(nodes, 3, {})
    loads = sorted(list(plan.values()).count(w) for w in range(3))
    assert loads == [2, 2, 3]
    assert plan_assignment(list(reversed(nodes)), 3, {}) == plan  # names decide, not order
    # a new node moves nobody while the others have room
    grown = plan_assignment([*nodes, "node-7", "node-8"], 3, plan)
    assert {k: grown[k] for k in nodes} == plan
    assert sorted(list(grown.values()).count(w) for w in range(3)) == [3, 3, 3]
    # a deleted node moves at most one other, to keep the loads within one of each other
    for gone in nodes:
        rest = [n for n in nodes if n != gone]
        shrunk = plan_assignment(rest, 3, plan)
        assert sum(shrunk[k] != plan[k] for k in rest) <= 1
        assert sorted(list(shrunk.values()).count(w) for w in range(3)) == [2, 2, 2]
    assert plan_assignment(["a", "b"], 2, {}).keys() == {"a", "b"}
    assert sorted(plan_assignment(["a", "b"], 2, {}).values()) == [0, 1]
    assert plan_assignment([], 2, {}) == {}


def test_settings_are_checked() -> None:
    ScaleOutConfig(relays=["relay-a:4245", "unix:///run/relay.sock"]).validate()
    ScaleOutConfig(peers="unix:///var/run/cilium/hubble.sock").validate()
    for bad, why in (
        (ScaleOutConfig(), "either relays or a peer service"),
        (ScaleOutConfig(relays=["a:1"], peers="b:2"), "either relays or a peer service"),
        (ScaleOutConfig(relays=["a:1", "a:1"]), "given twice"),
        (ScaleOutConfig(relays=["no-port"]), "invalid Hubble Relay address 'no-port'"),
        (ScaleOutConfig(peers="b:2", snapshot_interval_s=0), "must be positive"),
    ):
        with pytest.raises(ConfigError, match=why):
            bad.validate()
    with pytest.raises(ConfigError, match="workers must be at least 1"):
        ScaleOut(BridgeConfig(), ScaleOutConfig(peers="b:2"), 0)
    with pytest.raises(ConfigError, match=r"source\.first"):
        ScaleOut(BridgeConfig(source=SourceConfig(first=10)), ScaleOutConfig(peers="b:2"), 2)


def test_hand_over_times_and_worker_files() -> None:
    moment = 1_634_567_890_123_456_789
    assert rfc3339(moment) == "2021-10-18T14:38:10.123456Z"
    assert parse_since(rfc3339(moment)) == moment - 789  # at or before: StreamSet drops the ties
    assert worker_output("/out/flows.jsonl", 1) == "/out/flows.worker1.jsonl"


# ---- real workers --------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    events: list[observer_pb2.GetFlowsResponse]
    store: EventStore
    server: ObserverServer
    passes: int = 0

    def append_pass(self) -> int:
        """The recording once more, later in time (as a node keeps producing); returns its flow count."""
        self.passes += 1
        shift = loop_shift_ns(self.events)
        self.store.extend(rebased(e, shift, self.passes) for e in self.events)
        return sum(1 for e in self.events if e.HasField("flow"))


def expected_flows(events: list[observer_pb2.GetFlowsResponse]) -> int:
    aggregator = MetricsAggregator(MetricsConfig(), start_time_ns=0)
    for event in events:
        aggregator.process(event)
    return int(sum(p.value for f in aggregator.snapshot() if f.name == FLOWS for p in f.points))  # type: ignore[union-attr]


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    made: list[Node] = []
    for name, path in (("node-a", "gke-istio-http-348.jsonl"), ("node-b", "gke-istio-dns-330.jsonl")):
        events = list(read_events([SHARED_FLOWS / path]))
        store = EventStore(10_000)
        store.extend(events)
        server = ObserverServer(store, "127.0.0.1:0")
        server.start()
        made.append(Node(name, events, store, server))
    yield made
    for node in made:
        node.server.stop()


@pytest.fixture
def peers(nodes: list[Node]) -> Iterator[PeerServer]:
    server = PeerServer("127.0.0.1:0", [PeerEntry(n.name, str(n.server.address)) for n in nodes])
    server.start()
    yield server
    server.stop()


def bridge_config() -> BridgeConfig:
    # `since` long ago: each node's whole buffer, then follow.
    return BridgeConfig(
        source=SourceConfig(since="2000-01-01T00:00:00Z"), export=ExportConfig(otlp=False)
    ).resolved()


@pytest.fixture
def scale(peers: PeerServer) -> Iterator[ScaleOut]:
    scale = ScaleOut(bridge_config(), ScaleOutConfig(peers=str(peers.address), snapshot_interval_s=0.1), 2)
    scale.start()
    yield scale
    scale.stop()
    assert scale.wait(WAIT_S)


class Totals:
    """Merged totals as the parent sees them after each event; they must never go backwards."""

    def __init__(self, scale: ScaleOut) -> None:
        self.scale = scale
        self.seen: list[float] = []

    def reach(self, expected: int) -> None:
        def check() -> bool:
            self.seen.append(family_total(self.scale.merged(), FLOWS))
            return self.seen[-1] >= expected

        assert self.scale.wait_until(check, WAIT_S), f"{FLOWS} stayed at {self.seen[-1:]} below {expected}"
        assert self.seen[-1] == expected, "counted more than once"
        assert self.seen == sorted(self.seen), "a total went backwards"


def test_two_workers_read_two_nodes_each_flow_exactly_once(scale: ScaleOut, nodes: list[Node]) -> None:
    expected = expected_flows(nodes[0].events) + expected_flows(nodes[1].events)
    Totals(scale).reach(expected)
    assert family_total(scale.merged(), RECEIVED) == len(nodes[0].events) + len(nodes[1].events)
    assert sorted(scale.assignment().values()) == [0, 1]  # one node per worker
    assert len(set(scale.worker_pids())) == 2 and os.getpid() not in scale.worker_pids()
    scale.stop()
    assert scale.wait(WAIT_S)
    assert family_total(scale.merged(), FLOWS) == expected  # the final snapshots add nothing twice


def test_a_deleted_node_stops_being_read(scale: ScaleOut, nodes: list[Node], peers: PeerServer) -> None:
    a, b = nodes
    totals = Totals(scale)
    expected = expected_flows(a.events) + expected_flows(b.events)
    totals.reach(expected)
    peers.remove("node-b")
    assert scale.wait_until(lambda: set(scale.assignment()) == {"node-a"}, WAIT_S)
    b.append_pass()  # node-b goes on producing, but nobody reads it any more
    expected += a.append_pass()
    totals.reach(expected)
    scale.stop()
    assert scale.wait(WAIT_S)
    assert family_total(scale.merged(), FLOWS) == expected


def test_a_killed_worker_is_restarted_and_resumes_after_its_position(
    scale: ScaleOut, nodes: list[Node]
) -> None:
    a, b = nodes
    totals = Totals(scale)
    expected = expected_flows(a.events) + expected_flows(b.events)
    totals.reach(expected)
    victim = scale.assignment()["node-a"]
    pid = scale.worker_pids()[victim]
    os.kill(pid, signal.SIGKILL)
    assert scale.wait_until(
        lambda: scale.restarts == 1 and scale.ready and "node-a" in scale.assignment(), WAIT_S
    )
    assert scale.worker_pids()[victim] != pid
    expected += a.append_pass() + b.append_pass()
    totals.reach(expected)  # nothing of node-a's buffer read again, the new flows of both once


def test_a_node_that_comes_back_resumes_where_it_was_left(
    scale: ScaleOut, nodes: list[Node], peers: PeerServer
) -> None:
    a, b = nodes
    totals = Totals(scale)
    expected = expected_flows(a.events) + expected_flows(b.events)
    totals.reach(expected)
    peers.remove("node-b")
    assert scale.wait_until(lambda: set(scale.assignment()) == {"node-a"}, WAIT_S)
    expected += b.append_pass()  # produced while nobody read node-b: still in its buffer
    peers.upsert(PeerEntry("node-b", str(b.server.address)))
    totals.reach(expected)


def test_measure_scale_reads_every_stream_through_the_workers(nodes: list[Node]) -> None:
    node = nodes[0]
    result = measure_scale(node.events, 2, 2, addresses=[str(node.server.address)])
    assert (result.streams, result.workers, result.events) == (2, 2, 2 * len(node.events))
    assert result.per_s == pytest.approx(result.events / result.seconds)
    assert result.source == "given"


# ---- the entry point, as a process: OTLP from the parent (metrics) and from each worker (spans) ---


DRIVER = """
import logging, sys
from hubble_bridge.config import load_config
from hubble_bridge.scaleout import ScaleOutConfig, run_scaleout
logging.basicConfig(level=logging.INFO)
config = load_config({
    "source": {"since": "2000-01-01T00:00:00Z"},
    "otlp": {"endpoint": sys.argv[1], "insecure": True, "protocol": "grpc"},
    "export": {"metric_interval_s": 0.3, "flush_interval_s": 0.3},
}, environ={})
sys.exit(run_scaleout(config, ScaleOutConfig(peers=sys.argv[2], snapshot_interval_s=0.1), 2))
"""


def test_run_scaleout_exports_one_metric_stream_and_spans_from_each_worker(
    nodes: list[Node], peers: PeerServer
) -> None:
    expected = expected_flows(nodes[0].events) + expected_flows(nodes[1].events)
    with OtlpReceiver() as receiver:
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, receiver.grpc_endpoint, str(peers.address)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.wait_for(lambda: latest_total(receiver) == expected, WAIT_S), latest_total(
                receiver
            )
            assert receiver.wait_for(lambda: len({r.peer for r in receiver.requests("traces")}) == 2, WAIT_S)
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, stderr
        assert "in 2 worker processes" in stderr
        totals = [total_of(r) for r in receiver.requests("metrics")]
        assert totals == sorted(totals) and totals[-1] == expected
        metric_peers = {r.peer for r in receiver.requests("metrics")}
        span_peers = {r.peer for r in receiver.requests("traces")}
        assert len(metric_peers) == 1 and not metric_peers & span_peers  # one metric stream, from the parent


def total_of(received: object) -> float:
    return sum(
        p.as_int or p.as_double
        for rm in received.request.resource_metrics  # type: ignore[attr-defined]
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == FLOWS
        for p in m.sum.data_points
    )


def latest_total(receiver: OtlpReceiver) -> float:
    requests = receiver.requests("metrics")
    return total_of(requests[-1]) if requests else -1


def test_the_parents_own_counters_stay_cumulative_under_lowmemory() -> None:
    """worker_restarts is read from the parent, like the hubble_otlp.* self-metrics: under the spec's
    lowmemory preference such (asynchronous) counters stay cumulative (sinks/otlp_temporality.py)."""
    from types import SimpleNamespace

    from hubble_bridge.scaleout.run import collect
    from hubble_bridge.sinks.otlp_temporality import wants_delta
    from hubble_bridge.telemetry import MetricsSnapshot

    scale = SimpleNamespace(  # collect() reads only these of a ScaleOut
        merged=lambda: MetricsSnapshot(resource=(), time_ns=2, families=[]),
        workers=2,
        assignment=lambda: {"a": 0},
        start_time_ns=1,
        restarts=3,
    )
    families = {f.name: f for f in collect(scale).families}  # type: ignore[arg-type]
    restarts = families["hubble_otlp.scaleout.worker_restarts"]
    assert restarts.points[0].value == 3
    assert not wants_delta("lowmemory", restarts) and wants_delta("delta", restarts)
