"""The reader process keys each event for its dedupe from the EventKey view (proto/keys), not a full decode.

The view must read the same key and time as the full message would, for every kind of event, and
must follow observer.GetFlowsResponse's and flow.Flow's field numbers, or it silently reads nothing.
"""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor

from hubble_bridge.api import flow_pb2, keys_pb2, observer_pb2
from hubble_bridge.flows.codec import event_time_ns
from hubble_bridge.generator import generate_responses
from hubble_bridge.sources.files import read_events
from hubble_bridge.sources.resilient import EventKey, decode_event_key, event_key
from tests.conftest import flow_files

GetFlowsResponse = observer_pb2.GetFlowsResponse


@pytest.mark.parametrize(
    ("view", "full"),
    [
        (keys_pb2.EventKey.DESCRIPTOR, GetFlowsResponse.DESCRIPTOR),
        (keys_pb2.FlowKey.DESCRIPTOR, flow_pb2.Flow.DESCRIPTOR),
    ],
)
def test_the_view_has_the_numbers_names_and_types_of_the_real_messages(
    view: Descriptor, full: Descriptor
) -> None:
    for field in view.fields:
        real = full.fields_by_number[field.number]
        assert (field.name, field.type, field.is_repeated) == (real.name, real.type, real.is_repeated), (
            field.name
        )
        if field.message_type is not None and field.message_type.full_name != "google.protobuf.Timestamp":
            assert field.message_type.name == real.message_type.name + "Key"


def test_every_event_keys_and_times_as_its_full_decode() -> None:
    events = list(read_events(flow_files())) + list(generate_responses(2000, seed=3))
    assert len(events) > 2000
    views = 0
    for response in events:
        data = response.SerializeToString()
        keyed = decode_event_key(data)
        assert keyed is not None
        assert event_key(keyed) == event_key(response)
        assert event_time_ns(keyed) == event_time_ns(response)
        views += type(keyed) is EventKey
    assert views > len(events) // 2  # most events carry a uuid: keyed by the view, not a full decode


def test_events_the_view_cannot_key_are_decoded_in_full() -> None:
    lost = GetFlowsResponse(lost_events=flow_pb2.LostEvent(num_events_lost=3), node_name="n1")
    lost.time.FromNanoseconds(5)
    no_uuid = GetFlowsResponse(flow=flow_pb2.Flow(node_name="n1", verdict=flow_pb2.FORWARDED))
    no_uuid.flow.time.FromNanoseconds(7)
    for response in (lost, no_uuid):
        keyed = decode_event_key(response.SerializeToString())
        assert type(keyed) is GetFlowsResponse and keyed == response
        assert event_key(keyed) == event_key(response)


def test_bytes_protobuf_refuses_key_as_none() -> None:
    assert decode_event_key(b"\x0a\xff\xff\xff\xff\x0f") is None  # a length past the end
    bad_uuid = GetFlowsResponse(flow=flow_pb2.Flow(uuid="u")).SerializeToString().replace(b"u", b"\xff")
    assert decode_event_key(bad_uuid) is None  # invalid UTF-8 in the uuid the view reads


def test_invalid_utf8_outside_the_key_is_left_to_the_bridge_full_decode() -> None:
    # The view skips what it does not read; the bridge's full decode refuses it and counts it
    # (input.invalid, tests/test_faults.py's undecodable test on the reader-process path).
    data = GetFlowsResponse(flow=flow_pb2.Flow(uuid="u1", node_name="zz")).SerializeToString()
    data = data.replace(b"zz", b"\xff\xfe")
    keyed = decode_event_key(data)
    assert type(keyed) is EventKey and keyed.flow.uuid == "u1"
