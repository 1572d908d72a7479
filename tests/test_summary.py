"""The compact summary line, shape by shape, pinned to what `hubble observe -o compact` prints.

Each case is one branch of summary.py: which end is printed how, the TYPE and verdict
columns, the summary text and its additions; the expected lines are those the line
builder produced before it was rewritten to read each field once.
"""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.wrappers_pb2 import BoolValue

from hubble_bridge.api import flow_pb2 as fp
from hubble_bridge.api import observer_pb2
from hubble_bridge.mapping import summary
from hubble_bridge.mapping.logs import LogConfig, flow_log
from hubble_bridge.mapping.summary import compact_summary, flow_line, stamp_milli

T = Timestamp(seconds=1714979289, nanos=123456789)
POD = fp.Endpoint(namespace="default", pod_name="xwing", identity=1234)
SVC_POD = fp.Endpoint(namespace="pods-ns", pod_name="api-1", identity=2)
IP4 = fp.IP(source="10.0.0.1", destination="10.0.0.2", ipVersion=fp.IPv4)
IP6 = fp.IP(source="fd00::1", destination="fd00::2", ipVersion=fp.IPv6)
TCP = fp.Layer4(TCP=fp.TCP(source_port=40000, destination_port=80, flags=fp.TCPFlags(SYN=True, ACK=True)))
UDP = fp.Layer4(UDP=fp.UDP(source_port=5353, destination_port=53))
ICMP4 = fp.Layer4(ICMPv4=fp.ICMPv4(type=8))
DROP = fp.CiliumEventType(type=1, sub_type=133)
TRACE = fp.CiliumEventType(type=4, sub_type=3)
POLICY = fp.CiliumEventType(type=5)


def flow(**fields: object) -> observer_pb2.GetFlowsResponse:
    return observer_pb2.GetFlowsResponse(flow=fp.Flow(**fields), node_name="n1")  # type: ignore[arg-type]


CASES = {
    "drop, pods, request": flow(
        time=T,
        verdict=fp.DROPPED,
        IP=IP4,
        l4=TCP,
        source=POD,
        destination=SVC_POD,
        event_type=DROP,
        is_reply=BoolValue(value=False),
        Summary="TCP Flags: SYN",
    ),
    "reply swaps the ends": flow(
        time=T,
        verdict=fp.FORWARDED,
        IP=IP4,
        l4=TCP,
        source=POD,
        destination=SVC_POD,
        event_type=TRACE,
        is_reply=BoolValue(value=True),
        Summary="s",
    ),
    "service namespace wins over the pod's": flow(
        time=T,
        IP=IP4,
        l4=UDP,
        source=POD,
        destination=SVC_POD,
        destination_service=fp.Service(name="api", namespace="svc-ns"),
        event_type=TRACE,
    ),
    "service without a pod": flow(
        time=T,
        IP=IP4,
        l4=UDP,
        destination=fp.Endpoint(identity=99999),
        destination_service=fp.Service(name="api"),
        source_service=fp.Service(namespace="only-ns"),
    ),
    "names, an empty name": flow(
        time=T,
        IP=IP6,
        l4=TCP,
        source_names=["a.example", "b.example"],
        destination_names=[""],
        event_type=TRACE,
    ),
    "ipv6 addresses in brackets": flow(time=T, IP=IP6, l4=TCP, event_type=TRACE),
    "pod name with a colon": flow(
        time=T, IP=IP4, l4=TCP, source=fp.Endpoint(pod_name="we:ird"), event_type=TRACE
    ),
    "ethernet only": flow(
        time=T, ethernet=fp.Ethernet(source="aa:bb", destination="cc:dd"), event_type=TRACE
    ),
    "nothing at all": flow(),
    "time from the response": observer_pb2.GetFlowsResponse(flow=fp.Flow(verdict=fp.FORWARDED), time=T),
    "zero flow time kept": observer_pb2.GetFlowsResponse(flow=fp.Flow(time=Timestamp()), time=T),
    "nanos out of range": flow(time=Timestamp(seconds=5, nanos=1_000_000_000)),
    "seconds out of range": flow(time=Timestamp(seconds=10**12)),
    "drop with an unnamed code": flow(
        time=T, verdict=fp.DROPPED, event_type=fp.CiliumEventType(type=1, sub_type=159)
    ),
    "drop with an unknown code": flow(
        time=T, verdict=fp.DROPPED, event_type=fp.CiliumEventType(type=1, sub_type=250)
    ),
    "trace with an unknown point": flow(time=T, event_type=fp.CiliumEventType(type=4, sub_type=77)),
    "policy verdict allowed": flow(
        time=T,
        verdict=fp.FORWARDED,
        event_type=POLICY,
        policy_match_type=2,
        traffic_direction=fp.INGRESS,
        IP=IP4,
        l4=TCP,
    ),
    "policy verdict denied, unknown match": flow(
        time=T, verdict=fp.DROPPED, event_type=POLICY, policy_match_type=42, traffic_direction=fp.EGRESS
    ),
    "policy verdict audited, unknown direction": flow(
        time=T, verdict=fp.AUDIT, event_type=POLICY, traffic_direction=7
    ),
    "policy verdict, unknown verdict": flow(time=T, verdict=99, event_type=POLICY),
    "capture": flow(
        time=T, event_type=fp.CiliumEventType(type=3), debug_capture_point=fp.DBG_CAPTURE_DELIVERY
    ),
    "trace-sock": flow(time=T, event_type=fp.CiliumEventType(type=7), sock_xlate_point=2),
    "trace-sock unknown": flow(time=T, event_type=fp.CiliumEventType(type=7), sock_xlate_point=9),
    "masked: drop reason": flow(time=T, verdict=fp.DROPPED, drop_reason_desc=fp.POLICY_DENIED, l4=ICMP4),
    "masked: old drop reason": flow(time=T, verdict=fp.DROPPED, drop_reason=181),
    "masked: observation point": flow(
        time=T, verdict=fp.FORWARDED, trace_observation_point=fp.TO_STACK, l4=TCP
    ),
    "masked: nothing": flow(time=T, verdict=fp.ERROR),
    "http request, url rewritten": flow(
        time=T,
        verdict=fp.FORWARDED,
        event_type=fp.CiliumEventType(type=129),
        l7=fp.Layer7(
            type=fp.REQUEST, http=fp.HTTP(method="GET", url="http://a/b?token=x", protocol="HTTP/1.1")
        ),
        Summary="HTTP/1.1 GET http://a/b?token=x",
    ),
    "http response derived": flow(
        time=T,
        l7=fp.Layer7(
            type=fp.RESPONSE,
            latency_ns=12_345_678,
            http=fp.HTTP(code=503, method="POST", url="/x", protocol="HTTP/2"),
        ),
    ),
    "dns with observation source": flow(
        time=T,
        l7=fp.Layer7(
            type=fp.RESPONSE,
            dns=fp.DNS(query="a.example.", qtypes=["A"], ips=["1.2.3.4"], ttl=30, observation_source="proxy"),
        ),
    ),
    "dns rcode": flow(
        time=T, l7=fp.Layer7(type=fp.RESPONSE, dns=fp.DNS(query="b.", qtypes=["AAAA"], rcode=3))
    ),
    "l7 without a record, unknown type": flow(time=T, l7=fp.Layer7(type=9)),
    "kafka keeps its url untouched": flow(
        time=T, l7=fp.Layer7(type=fp.REQUEST, kafka=fp.Kafka(topic="t")), Summary="Kafka request"
    ),
    "ip trace id and auth": flow(
        time=T, ip_trace_id=fp.IPTraceID(trace_id=77), auth_type=fp.SPIRE, Summary="s"
    ),
    "zero ip trace id, unknown auth": flow(time=T, ip_trace_id=fp.IPTraceID(), auth_type=9, Summary="s"),
    "reserved identities": flow(
        time=T,
        IP=IP4,
        source=fp.Endpoint(identity=2),
        destination=fp.Endpoint(identity=10),
        is_reply=BoolValue(value=False),
    ),
}
EXPECTED = {
    "drop, pods, request": (
        "May  6 07:08:09.123: default/xwing:40000 (ID:1234) -> pods-ns/api-1:80 (world) Policy denied"
        " DROPPED (TCP Flags: SYN)"
    ),
    "reply swaps the ends": (
        "May  6 07:08:09.123: pods-ns/api-1:80 (world) <- default/xwing:40000 (ID:1234) to-stack"
        " FORWARDED (s)"
    ),
    "service namespace wins over the pod's": (
        "May  6 07:08:09.123: default/xwing:5353 (ID:1234) <> svc-ns/api-1:53 (world) to-stack"
        " VERDICT_UNKNOWN (UDP)"
    ),
    "service without a pod": (
        "May  6 07:08:09.123: 10.0.0.1:5353 (unknown) <> api:53 (ID:99999) UNKNOWN VERDICT_UNKNOWN (UDP)"
    ),
    "names, an empty name": (
        "May  6 07:08:09.123: a.example,b.example:40000 (unknown) <> :80 (unknown) to-stack"
        " VERDICT_UNKNOWN (TCP Flags: SYN, ACK)"
    ),
    "ipv6 addresses in brackets": (
        "May  6 07:08:09.123: [fd00::1]:40000 (unknown) <> [fd00::2]:80 (unknown) to-stack"
        " VERDICT_UNKNOWN (TCP Flags: SYN, ACK)"
    ),
    "pod name with a colon": (
        "May  6 07:08:09.123: [we:ird]:40000 (unknown) <> 10.0.0.2:80 (unknown) to-stack"
        " VERDICT_UNKNOWN (TCP Flags: SYN, ACK)"
    ),
    "ethernet only": "May  6 07:08:09.123: aa:bb (unknown) <> cc:dd (unknown) to-stack VERDICT_UNKNOWN ()",
    "nothing at all": "Jan  1 00:00:00.000:  (unknown) <>  (unknown) UNKNOWN VERDICT_UNKNOWN ()",
    "time from the response": "May  6 07:08:09.123:  (unknown) <>  (unknown) UNKNOWN FORWARDED ()",
    "zero flow time kept": "Jan  1 00:00:00.000:  (unknown) <>  (unknown) UNKNOWN VERDICT_UNKNOWN ()",
    "nanos out of range": "N/A:  (unknown) <>  (unknown) UNKNOWN VERDICT_UNKNOWN ()",
    "seconds out of range": "N/A:  (unknown) <>  (unknown) UNKNOWN VERDICT_UNKNOWN ()",
    "drop with an unnamed code": "May  6 07:08:09.123:  (unknown) <>  (unknown) 159 DROPPED ()",
    "drop with an unknown code": "May  6 07:08:09.123:  (unknown) <>  (unknown) 250 DROPPED ()",
    "trace with an unknown point": "May  6 07:08:09.123:  (unknown) <>  (unknown) 77 VERDICT_UNKNOWN ()",
    "policy verdict allowed": (
        "May  6 07:08:09.123: 10.0.0.1:40000 (unknown) <> 10.0.0.2:80 (unknown) policy-verdict:L3-L4"
        " INGRESS ALLOWED (TCP Flags: SYN, ACK)"
    ),
    "policy verdict denied, unknown match": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) policy-verdict:unknown EGRESS DENIED ()"
    ),
    "policy verdict audited, unknown direction": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) policy-verdict:none 7 AUDITED ()"
    ),
    "policy verdict, unknown verdict": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) policy-verdict:none TRAFFIC_DIRECTION_UNKNOWN 99 ()"
    ),
    "capture": "May  6 07:08:09.123:  (unknown) <>  (unknown) DBG_CAPTURE_DELIVERY VERDICT_UNKNOWN ()",
    "trace-sock": "May  6 07:08:09.123:  (unknown) <>  (unknown) post-xlate-fwd VERDICT_UNKNOWN ()",
    "trace-sock unknown": "May  6 07:08:09.123:  (unknown) <>  (unknown) 9 VERDICT_UNKNOWN ()",
    "masked: drop reason": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) Policy denied DROPPED (ICMPv4 EchoRequest)"
    ),
    "masked: old drop reason": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) Policy denied by denylist DROPPED ()"
    ),
    "masked: observation point": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) to-stack FORWARDED (TCP Flags: SYN, ACK)"
    ),
    "masked: nothing": "May  6 07:08:09.123:  (unknown) <>  (unknown) UNKNOWN ERROR ()",
    "http request, url rewritten": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) http-request FORWARDED (HTTP/1.1 GET"
        " http://a/b?token=x)"
    ),
    "http response derived": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) http-response VERDICT_UNKNOWN (HTTP/2 503 12ms"
        " (POST /x))"
    ),
    "dns with observation source": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) dns-response proxy VERDICT_UNKNOWN (DNS Answer"
        ' "1.2.3.4" TTL: 30 (Proxy a.example. A))'
    ),
    "dns rcode": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) dns-response VERDICT_UNKNOWN (DNS Answer"
        " RCode: Non-Existent Domain TTL: 0 ( b. AAAA))"
    ),
    "l7 without a record, unknown type": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) l7-9 VERDICT_UNKNOWN ()"
    ),
    "kafka keeps its url untouched": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) kafka-request VERDICT_UNKNOWN (Kafka request)"
    ),
    "ip trace id and auth": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) UNKNOWN VERDICT_UNKNOWN (IP Trace ID: 77; s; SPIRE)"
    ),
    "zero ip trace id, unknown auth": (
        "May  6 07:08:09.123:  (unknown) <>  (unknown) UNKNOWN VERDICT_UNKNOWN (s; 9)"
    ),
    "reserved identities": (
        "May  6 07:08:09.123: 10.0.0.1 (world) -> 10.0.0.2 (world-ipv6) UNKNOWN VERDICT_UNKNOWN ()"
    ),
}
# The URL replaced wherever the rewriter is given one: HTTP only.
REWRITTEN = {
    "http request, url rewritten": "May  6 07:08:09.123:  (unknown) <>  (unknown) http-request FORWARDED "
    "(HTTP/1.1 GET HTTP://A/B?TOKEN=X)",
    "http response derived": "May  6 07:08:09.123:  (unknown) <>  (unknown) http-response VERDICT_UNKNOWN "
    "(HTTP/2 503 12ms (POST /X))",
}


@pytest.mark.parametrize("name", list(CASES))
def test_line(name: str) -> None:
    response = CASES[name]
    assert compact_summary(response) == EXPECTED[name]
    assert flow_line(response.flow, response) == EXPECTED[name]
    rewritten = REWRITTEN.get(name, EXPECTED[name])
    assert compact_summary(response, str.upper) == rewritten
    assert flow_line(response.flow, response, str.upper) == rewritten


def test_log_body_is_the_line() -> None:
    config = LogConfig(all_flows=True, verdicts=frozenset())
    for name, response in CASES.items():
        record = flow_log(response, config)
        assert record is not None
        assert record.body == compact_summary(response, config._rewrite_url), name


def test_stamps_stay_right_when_their_cache_starts_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary, "_STAMP_CACHE_SIZE", 3)
    stamps = [stamp_milli(Timestamp(seconds=1714979289 + 86400 * day, nanos=999_999_999)) for day in range(8)]
    assert stamps == [f"May {6 + day:>2} 07:08:09.999" for day in range(8)]
    assert len(summary._STAMP_SECONDS) <= 3
    assert stamp_milli(Timestamp(seconds=-62135596801)) == "N/A"  # before year 1
    assert stamp_milli(Timestamp(seconds=0, nanos=-1)) == "N/A"
