"""The generated Hubble API stubs: importable, current with proto/, and exact on real flows."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from google.protobuf import json_format

from hubble_bridge.api import flow_pb2, observer_pb2, observer_pb2_grpc, peer_pb2, peer_pb2_grpc, relay_pb2
from tests.conftest import REPO, flow_files


def test_committed_stubs_match_proto_sources() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_wire_names_match_hubble() -> None:
    assert observer_pb2.DESCRIPTOR.services_by_name["Observer"].full_name == "observer.Observer"
    methods = {m.name for m in observer_pb2.DESCRIPTOR.services_by_name["Observer"].methods}
    assert methods == {
        "GetFlows",
        "GetAgentEvents",
        "GetDebugEvents",
        "GetNodes",
        "GetNamespaces",
        "ServerStatus",
    }
    assert peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name == "peer.Peer"
    assert hasattr(observer_pb2_grpc, "ObserverStub") and hasattr(peer_pb2_grpc, "PeerStub")
    assert flow_pb2.Flow.DESCRIPTOR.full_name == "flow.Flow"
    assert relay_pb2.NodeStatusEvent.DESCRIPTOR.full_name == "relay.NodeStatusEvent"


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        (flow_pb2.Flow, "uuid", 34),
        (flow_pb2.Flow, "emitter", 41),
        (flow_pb2.Flow, "Summary", 100000),
        (flow_pb2.Flow, "extensions", 150000),
        (flow_pb2.Flow, "aggregate", 21007),
        (flow_pb2.Flow, "ingress_denied_by", 21005),
        (flow_pb2.Flow, "trace_context", 30),
        (flow_pb2.Endpoint, "cluster_name", 7),
        (flow_pb2.IP, "source_xlated", 5),
        (flow_pb2.Layer4, "IGMP", 7),
        (flow_pb2.Layer7, "kafka", 102),
        (flow_pb2.FlowFilter, "encrypted", 40),
        (flow_pb2.FlowFilter, "experimental", 999),
        (observer_pb2.GetFlowsRequest, "field_mask", 10),
        (observer_pb2.GetFlowsRequest, "extensions", 150000),
        (observer_pb2.GetFlowsResponse, "time", 1001),
        (observer_pb2.GetAgentEventsRequest, "follow", 2),
        (observer_pb2.ServerStatusResponse, "flows_rate", 9),
        (observer_pb2.ExportEvent, "debug_event", 5),
    ],
)
def test_field_numbers(message: type, field: str, number: int) -> None:
    assert message.DESCRIPTOR.fields_by_name[field].number == number


def test_enum_values() -> None:
    assert flow_pb2.TraceObservationPoint.Value("TO_ENDPOINT") == 101
    assert flow_pb2.DropReason.Value("POLICY_DENY") == 181
    assert flow_pb2.DropReason.Value("DROP_PUNT_PROXY") == 205
    assert flow_pb2.Verdict.Value("TRANSLATED") == 7
    assert relay_pb2.NodeState.Value("NODE_ERROR") == 4


def test_every_recorded_flow_parses_strictly_and_round_trips() -> None:
    count = 0
    for path in flow_files():
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            message = json_format.Parse(line, observer_pb2.GetFlowsResponse(), ignore_unknown_fields=False)
            again = json_format.MessageToDict(message, preserving_proto_field_name=True)
            assert again == orjson.loads(line), f"{path.name}:{number} does not round-trip"
            count += 1
    assert count == 680
