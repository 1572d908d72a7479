"""Fault: a client sends a filter built to be slow, to a real `hubble-otlp replay` server.

With a backtracking regex engine, `(a+)+$` searched in a path of forty "a" followed by "!"
takes about 2^40 steps, and the engine holds the GIL all along: the whole Observer server
(every client's calls, SIGTERM handling) stops for hours. Hubble compiles filter regexes with
RE2, whose matching is linear in the input; so does this project (hubble_bridge/filtering/
patterns.py), and CEL's `matches()` is RE2 too (cel-cpp). This test makes the attack for real.

Outcome asserted: the hostile call returns exactly the matching flows; another client's calls
are answered while the hostile call is open; the server then stops on SIGTERM. The hostile
call carries a deadline, because a bound on time is the guarantee itself: GRACE_S plus
S_PER_THOUSAND per thousand flows, generous on a loaded 2-core machine (the whole call took
0.14-0.36 s here), and still thousands of times below what one backtracking search costs.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import grpc
import orjson
import pytest
from google.protobuf import json_format

from hubble_bridge.api import flow_pb2, observer_pb2, observer_pb2_grpc
from tests.procs import CliProcess, free_port

FLOWS = 4000  # half of them the catastrophic input, half matching
S_PER_THOUSAND = 1.0
GRACE_S = 5.0
HOSTILE_PATH = "/" + "a" * 40 + "!"
MATCHING_PATH = "/" + "a" * 40


def _flow(index: int) -> dict[str, object]:
    path = MATCHING_PATH if index % 2 == 0 else HOSTILE_PATH
    flow = flow_pb2.Flow(
        verdict=flow_pb2.FORWARDED,
        node_name="kind-worker",
        uuid=f"00000000-0000-4000-8000-{index:012d}",
    )
    flow.time.FromNanoseconds(1_700_000_000_000_000_000 + index * 1_000_000)
    flow.event_type.type = 129
    flow.l7.type = flow_pb2.REQUEST
    flow.l7.http.method = "GET"
    flow.l7.http.url = f"http://svc.default:8080{path}"
    return {"flow": json_format.MessageToDict(flow, preserving_proto_field_name=True)}


@pytest.fixture(scope="module")
def hostile_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "flows.jsonl"
    out.write_bytes(b"\n".join(orjson.dumps(_flow(i)) for i in range(FLOWS)) + b"\n")
    return out


HOSTILE_FILTERS = {
    "http_path regex": flow_pb2.FlowFilter(http_path=["(a+)+$"]),
    "http_url regex": flow_pb2.FlowFilter(http_url=["(a+)+$"]),
    "CEL matches()": flow_pb2.FlowFilter(
        experimental=flow_pb2.FlowFilter.Experimental(cel_expression=["_flow.l7.http.url.matches('(a+)+$')"])
    ),
}


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(HOSTILE_FILTERS))
def test_catastrophic_filter_neither_hangs_the_call_nor_the_server(hostile_file: Path, name: str) -> None:
    port = free_port()
    with CliProcess("replay", str(hostile_file), "--listen", f"127.0.0.1:{port}") as server:
        server.wait_for_line(rf"serving {FLOWS} events")
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as hostile,
            grpc.insecure_channel(f"127.0.0.1:{port}") as other,
        ):
            deadline = GRACE_S + S_PER_THOUSAND * FLOWS / 1000
            request = observer_pb2.GetFlowsRequest(whitelist=[HOSTILE_FILTERS[name]])
            call = observer_pb2_grpc.ObserverStub(hostile).GetFlows(request, timeout=deadline)
            # The first answer is a matching flow; the next flow the server evaluates is hostile.
            first = next(call)
            assert first.flow.l7.http.url.endswith(MATCHING_PATH)

            received: list[observer_pb2.GetFlowsResponse] = [first]
            drained = threading.Thread(target=lambda: received.extend(call))
            drained.start()
            # Meanwhile another client is answered, by the same server, within its own deadline.
            stub = observer_pb2_grpc.ObserverStub(other)
            status = stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=GRACE_S)
            assert status.num_flows == FLOWS
            one = list(stub.GetFlows(observer_pb2.GetFlowsRequest(number=1), timeout=GRACE_S))
            assert [r.flow.uuid for r in one] == [f"00000000-0000-4000-8000-{FLOWS - 1:012d}"]
            drained.join(deadline + GRACE_S)

            assert not drained.is_alive()
            # Exactly the matching half: the regex ran on every flow, none was skipped or cut short.
            assert len(received) == FLOWS // 2
            assert all(r.flow.l7.http.url.endswith(MATCHING_PATH) for r in received)
            assert call.code() is grpc.StatusCode.OK
        assert server.stop(signal.SIGTERM) == 0
