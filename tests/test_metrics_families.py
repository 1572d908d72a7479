"""Each Hubble metric family on hand-built flows: exact names, label sets and counts."""

from __future__ import annotations

from hubble_bridge.api import observer_pb2
from hubble_bridge.telemetry import MetricKind
from tests.test_metrics_support import (
    POD_A,
    POD_B,
    TCP_SYN,
    WORLD,
    aggregate,
    counts,
    family,
    names,
    response,
)


def trace(**extra: object) -> observer_pb2.GetFlowsResponse:
    fields: dict[str, object] = {
        "verdict": "FORWARDED",
        "IP": {"source": "10.0.0.1", "destination": "10.0.0.2", "ipVersion": "IPv4"},
        "l4": TCP_SYN,
        "source": POD_A,
        "destination": POD_B,
        "event_type": {"type": 4, "sub_type": 0},
        "is_reply": False,
        "traffic_direction": "EGRESS",
    }
    fields.update(extra)
    return response(**fields)


def test_flow_family_labels_by_event_type() -> None:
    agg = aggregate(
        ["flow"],
        trace(),
        trace(),
        trace(event_type={"type": 4, "sub_type": 3}),
        trace(verdict="DROPPED", event_type={"type": 1, "sub_type": 133}, drop_reason_desc="POLICY_DENIED"),
        trace(event_type={"type": 5}, l4={"UDP": {"destination_port": 53}}),
        trace(event_type={"type": 129}, Type="L7", l7={"type": "REQUEST", "dns": {"query": "a."}}),
        trace(event_type={"type": 7}),
    )
    fam = family(agg, "hubble.flows_processed")
    assert (fam.kind, fam.unit) == (MetricKind.COUNTER, "1")
    assert counts(agg, "hubble.flows_processed") == {
        (("protocol", "TCP"), ("type", "Trace"), ("subtype", "to-endpoint"), ("verdict", "FORWARDED")): 2,
        (("protocol", "TCP"), ("type", "Trace"), ("subtype", "to-stack"), ("verdict", "FORWARDED")): 1,
        (("protocol", "TCP"), ("type", "Drop"), ("subtype", ""), ("verdict", "DROPPED")): 1,
        (("protocol", "UDP"), ("type", "PolicyVerdict"), ("subtype", ""), ("verdict", "FORWARDED")): 1,
        (("protocol", "DNS"), ("type", "L7"), ("subtype", "DNS"), ("verdict", "FORWARDED")): 1,
        (("protocol", "Unknown flow"), ("type", "Unknown"), ("subtype", "7"), ("verdict", "FORWARDED")): 1,
    }


def test_flow_without_event_type_is_inferred_from_the_rest() -> None:
    # Field-masked exporter output drops event_type; a drop is still a drop and TCP still TCP.
    agg = aggregate(
        ["flow"], response(verdict="DROPPED", l4=TCP_SYN), response(verdict="FORWARDED", l4=TCP_SYN)
    )
    assert counts(agg, "hubble.flows_processed") == {
        (("protocol", "TCP"), ("type", "Drop"), ("subtype", ""), ("verdict", "DROPPED")): 1,
        (("protocol", "TCP"), ("type", "Unknown"), ("subtype", "0"), ("verdict", "FORWARDED")): 1,
    }


def test_drop_counts_reasons_with_context_first() -> None:
    agg = aggregate(
        ["drop:sourceContext=namespace;destinationContext=namespace"],
        trace(verdict="DROPPED", event_type={"type": 1}, drop_reason_desc="POLICY_DENIED"),
        trace(verdict="DROPPED", event_type={"type": 1}, drop_reason_desc="POLICY_DENIED"),
        trace(verdict="DROPPED", event_type={"type": 1}, drop_reason=181),  # old agents: numeric only
        trace(),  # forwarded: not a drop
    )
    assert counts(agg, "hubble.drop") == {
        (("source", "shop"), ("destination", "db"), ("reason", "POLICY_DENIED"), ("protocol", "TCP")): 2,
        (("source", "shop"), ("destination", "db"), ("reason", "POLICY_DENY"), ("protocol", "TCP")): 1,
    }


def test_tcp_flags_split_syn_and_syn_ack_and_skip_drops() -> None:
    agg = aggregate(
        ["tcp"],
        trace(),
        trace(l4={"TCP": {"flags": {"SYN": True, "ACK": True}}}),
        trace(l4={"TCP": {"flags": {"FIN": True, "RST": True, "ACK": True}}}),
        trace(l4={"TCP": {"flags": {"ACK": True}}}),
        trace(verdict="DROPPED", event_type={"type": 1}),
        trace(IP={"source": "fd00::1", "destination": "fd00::2", "ipVersion": "IPv6"}),
    )
    assert counts(agg, "hubble.tcp_flags") == {
        (("flag", "SYN"), ("family", "IPv4")): 1,
        (("flag", "SYN-ACK"), ("family", "IPv4")): 1,
        (("flag", "FIN"), ("family", "IPv4")): 1,
        (("flag", "RST"), ("family", "IPv4")): 1,
        (("flag", "SYN"), ("family", "IPv6")): 1,
    }


def test_port_distribution_counts_only_known_non_replies() -> None:
    agg = aggregate(
        ["port-distribution"],
        trace(),
        trace(l4={"UDP": {"source_port": 5353, "destination_port": 53}}),
        trace(l4={"ICMPv4": {"type": 8}}),
        trace(is_reply=True),
        response(verdict="FORWARDED", l4=TCP_SYN),  # is_reply unknown: skipped
        trace(verdict="DROPPED"),
    )
    assert counts(agg, "hubble.port_distribution") == {
        (("protocol", "TCP"), ("port", "80")): 1,
        (("protocol", "UDP"), ("port", "53")): 1,
        (("protocol", "ICMPv4"), ("port", "0")): 1,
    }


def test_icmp_type_names_as_gopacket_prints_them() -> None:
    agg = aggregate(
        ["icmp"],
        trace(l4={"ICMPv4": {"type": 8}}),
        trace(l4={"ICMPv4": {"type": 3, "code": 3}}),
        trace(l4={"ICMPv4": {"type": 8, "code": 1}}),
        trace(l4={"ICMPv4": {"type": 42, "code": 2}}),
        trace(l4={"ICMPv6": {"type": 135}}),
        trace(),
    )
    assert counts(agg, "hubble.icmp") == {
        (("family", "IPv4"), ("type", "EchoRequest")): 1,
        (("family", "IPv4"), ("type", "DestinationUnreachable(Port)")): 1,
        (("family", "IPv4"), ("type", "EchoRequest(Code: 1)")): 1,
        (("family", "IPv4"), ("type", "42(2)")): 1,
        (("family", "IPv4"), ("type", "NeighborSolicitation")): 1,
    }


def dns(l7_type: str, reply: bool, **record: object) -> observer_pb2.GetFlowsResponse:
    return trace(
        event_type={"type": 129},
        Type="L7",
        is_reply=reply,
        l7={"type": l7_type, "dns": {"query": "example.com.", **record}},
    )


def test_dns_queries_responses_and_response_types() -> None:
    agg = aggregate(
        ["dns:query"],
        dns("REQUEST", False, qtypes=["A"]),
        dns("RESPONSE", True, qtypes=["A"], rcode=0, ips=["1.2.3.4", "1.2.3.5"], rrtypes=["A", "A"]),
        dns("RESPONSE", True, qtypes=["A"], rcode=3),
        trace(
            verdict="DROPPED",
            event_type={"type": 129},
            l7={"type": "REQUEST", "dns": {"query": "x.", "qtypes": ["A"]}},
        ),
    )
    q = (("query", "example.com."),)
    assert counts(agg, "hubble.dns_queries") == {
        (("rcode", ""), ("qtypes", "A"), ("ips_returned", "0"), *q): 1,
        (("rcode", "Policy denied"), ("qtypes", "A"), ("ips_returned", "0"), ("query", "x.")): 1,
    }
    assert counts(agg, "hubble.dns_responses") == {
        (("rcode", "No Error"), ("qtypes", "A"), ("ips_returned", "2"), *q): 1,
        (("rcode", "Non-Existent Domain"), ("qtypes", "A"), ("ips_returned", "0"), *q): 1,
    }
    assert counts(agg, "hubble.dns_response_types") == {(("type", "A"), ("qtypes", "A"), *q): 2}


def test_dns_ignore_aaaa_and_missing_is_reply() -> None:
    only_aaaa = dns("REQUEST", False, qtypes=["AAAA"])
    no_is_reply = response(
        event_type={"type": 129}, l7={"type": "RESPONSE", "dns": {"rcode": 3, "qtypes": ["A"]}}
    )
    agg = aggregate(["dns:ignoreAAAA"], only_aaaa, no_is_reply)
    assert "hubble.dns_queries" not in names(agg)
    assert counts(agg, "hubble.dns_responses") == {
        (("rcode", "Non-Existent Domain"), ("qtypes", "A"), ("ips_returned", "0")): 1
    }


def http(
    l7_type: str, direction: str, code: int = 0, latency_ns: int = 0, **extra: object
) -> observer_pb2.GetFlowsResponse:
    record = {"method": "GET", "url": "http://cart/", "protocol": "HTTP/1.1", "code": code}
    l7: dict[str, object] = {"type": l7_type, "http": record}
    if latency_ns:
        l7["latency_ns"] = str(latency_ns)
    return trace(event_type={"type": 129}, Type="L7", traffic_direction=direction, l7=l7, **extra)


def test_http_v2_counts_responses_with_status_and_reporter() -> None:
    agg = aggregate(
        ["httpV2"],
        http("REQUEST", "EGRESS"),  # requests are not counted by httpV2
        http("RESPONSE", "EGRESS", 200, 20_000_000),
        http("RESPONSE", "INGRESS", 503, 2_000_000_000),
        http("RESPONSE", "TRAFFIC_DIRECTION_UNKNOWN", 200, 1),
    )
    assert counts(agg, "hubble.http_requests") == {
        (("method", "GET"), ("protocol", "HTTP/1.1"), ("status", "200"), ("reporter", "client")): 1,
        (("method", "GET"), ("protocol", "HTTP/1.1"), ("status", "503"), ("reporter", "server")): 1,
        (("method", "GET"), ("protocol", "HTTP/1.1"), ("status", "200"), ("reporter", "unknown")): 1,
    }
    duration = family(agg, "hubble.http_request_duration")
    assert (duration.kind, duration.unit) == (MetricKind.HISTOGRAM, "s")
    assert duration.bounds == (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    by_reporter = {dict(p.attributes)["reporter"]: p for p in duration.points}
    assert by_reporter["client"].bucket_counts == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # 0.02 s
    assert by_reporter["server"].bucket_counts == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]  # 2 s
    assert by_reporter["server"].sum == 2.0


def test_http_v1_counts_requests_and_responses_apart() -> None:
    agg = aggregate(
        ["http"], http("REQUEST", "EGRESS"), http("REQUEST", "EGRESS"), http("RESPONSE", "EGRESS", 404, 5)
    )
    assert counts(agg, "hubble.http_requests") == {
        (("method", "GET"), ("protocol", "HTTP/1.1"), ("reporter", "client")): 2
    }
    assert counts(agg, "hubble.http_responses") == {
        (("method", "GET"), ("protocol", "HTTP/1.1"), ("status", "404"), ("reporter", "client")): 1
    }


def test_kafka_requests_and_duration() -> None:
    kafka = {"error_code": 3, "api_key": "produce", "topic": "orders"}
    agg = aggregate(
        ["kafka"],
        trace(
            event_type={"type": 129},
            traffic_direction="INGRESS",
            l7={"type": "REQUEST", "latency_ns": "3000000", "kafka": kafka},
        ),
        trace(event_type={"type": 129}, l7={"type": "RESPONSE", "kafka": kafka}),
    )
    assert counts(agg, "hubble.kafka_requests") == {
        (("topic", "orders"), ("api_key", "produce"), ("error_code", "\x03"), ("reporter", "server")): 1
    }
    (point,) = family(agg, "hubble.kafka_request_duration").points
    assert point.attributes == (("topic", "orders"), ("api_key", "produce"), ("reporter", "server"))
    assert point.bucket_counts[0] == 1 and point.count == 1  # 3 ms <= 5 ms


def test_policy_verdicts_l3l4_and_l7() -> None:
    agg = aggregate(
        ["policy"],
        trace(event_type={"type": 5}, policy_match_type=2, traffic_direction="INGRESS"),
        trace(event_type={"type": 5}, verdict="DROPPED", traffic_direction="EGRESS"),
        trace(event_type={"type": 5}, source={"identity": 1, "labels": ["reserved:host"]}),  # host: skipped
        http("REQUEST", "EGRESS"),
        trace(),  # a trace event is no verdict
    )
    assert counts(agg, "hubble.policy_verdicts") == {
        (("direction", "ingress"), ("match", "l3-l4"), ("action", "forwarded")): 1,
        (("direction", "egress"), ("match", "none"), ("action", "dropped")): 1,
        (("direction", "egress"), ("match", "l7/http"), ("action", "forwarded")): 1,
    }


def test_flows_to_world_options() -> None:
    flows = [
        trace(destination=WORLD),
        trace(destination=WORLD, l4={"TCP": {"destination_port": 443, "flags": {"ACK": True}}}),
        trace(destination=WORLD, is_reply=True),  # forwarded reply: skipped
        trace(destination=WORLD, verdict="DROPPED", drop_reason_desc="POLICY_DENIED"),
        trace(destination=WORLD, verdict="DROPPED", drop_reason_desc="CT_MAP_INSERTION_FAILED"),
        trace(),  # not to world
    ]
    plain = aggregate(["flows-to-world"], *flows)
    assert counts(plain, "hubble.flows_to_world") == {
        (("protocol", "TCP"), ("verdict", "FORWARDED")): 2,
        (("protocol", "TCP"), ("verdict", "DROPPED")): 1,
    }
    tuned = aggregate(["flows-to-world:any-drop;port;syn-only"], *flows)
    assert counts(tuned, "hubble.flows_to_world") == {
        (("protocol", "TCP"), ("verdict", "FORWARDED"), ("port", "80")): 1,
        (("protocol", "TCP"), ("verdict", "DROPPED"), ("port", "80")): 2,
    }


def test_lost_events_count_events_lost_by_source() -> None:
    lost = observer_pb2.GetFlowsResponse()
    lost.lost_events.source = 1
    lost.lost_events.num_events_lost = 7
    again = observer_pb2.GetFlowsResponse()
    again.lost_events.CopyFrom(lost.lost_events)
    queue = observer_pb2.GetFlowsResponse()
    queue.lost_events.source = 3
    queue.lost_events.num_events_lost = 1
    status = observer_pb2.GetFlowsResponse()
    status.node_status.message = "connected"
    agg = aggregate([], lost, again, queue, status)
    assert counts(agg, "hubble.lost_events") == {
        (("source", "perf_event_ring_buffer"),): 14,
        (("source", "hubble_ring_buffer"),): 1,
    }


def test_families_not_enabled_produce_nothing() -> None:
    agg = aggregate(["drop"], trace(), http("RESPONSE", "EGRESS", 200, 5))
    assert names(agg) == set()  # nothing dropped, and the http families are off
