"""Optional INTERNAL spans for L3/L4 flows (SpanConfig.l3l4_spans, off by default).

One zero-duration span per flow at the flow's time: a marker on a timeline, not
a measured operation. Name "{L4 protocol} {verdict}" ("TCP FORWARDED", "ICMPv6
DROPPED"); status ERROR for DROPPED and ERROR verdicts with the drop reason.

| attribute | value |
|---|---|
| source.address, source.port, destination.address, destination.port | the flow's 5-tuple |
| network.transport, network.type | "tcp"/"udp"/"sctp"/"icmp", "ipv4"/"ipv6" |
| hubble.verdict, hubble.traffic_direction, hubble.node.name | as for L7 spans |
| hubble.drop.reason, error.type | DropReason name, when dropped |
| hubble.trace_observation_point | e.g. TO_STACK, on trace events |
| hubble.tcp.flags | ["SYN", "ACK"], set flags only |
| hubble.is_reply | when Hubble knows |
| hubble.source.identity, hubble.destination.identity | as for L7 spans |
| hubble.policy.names, hubble.flow.uuid | as for L7 spans |
"""

from __future__ import annotations

from hubble_bridge.api import flow_pb2
from hubble_bridge.mapping import semconv as sc
from hubble_bridge.mapping.metrics.names import DROP_REASON, VERDICT
from hubble_bridge.mapping.spans_attrs import Fields, hubble_attributes
from hubble_bridge.telemetry import Attributes, StatusCode

_PORTED = ("TCP", "UDP", "SCTP")
_TRANSPORT = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp", "ICMPv4": "icmp", "ICMPv6": "icmp"}
_NETWORK_TYPE = {flow_pb2.IPv4: "ipv4", flow_pb2.IPv6: "ipv6"}
_TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")
_OBSERVATION_POINT = {v.number: v.name for v in flow_pb2.TraceObservationPoint.DESCRIPTOR.values}
_FAILED = frozenset({flow_pb2.DROPPED, flow_pb2.ERROR})


def l3l4_fields(flow: flow_pb2.Flow, node: str) -> Fields:
    attrs: Attributes = {}
    ip = flow.IP
    if ip.source:
        attrs[sc.SOURCE_ADDRESS] = ip.source
    l4 = flow.l4
    arm = l4.WhichOneof("protocol")
    if arm in _PORTED:
        ports = getattr(l4, arm)
        if ports.source_port:
            attrs[sc.SOURCE_PORT] = ports.source_port
    if ip.destination:
        attrs[sc.DESTINATION_ADDRESS] = ip.destination
    if arm in _PORTED and ports.destination_port:
        attrs[sc.DESTINATION_PORT] = ports.destination_port
    if arm in _TRANSPORT:
        attrs[sc.NETWORK_TRANSPORT] = _TRANSPORT[arm]
    network_type = _NETWORK_TYPE.get(ip.ipVersion)
    if network_type:
        attrs[sc.NETWORK_TYPE] = network_type
    verdict = flow.verdict
    verdict_name = VERDICT.get(verdict) or str(verdict)
    attrs[sc.HUBBLE_VERDICT] = verdict_name
    if arm == "TCP" and l4.TCP.HasField("flags"):
        flags = l4.TCP.flags
        attrs[sc.HUBBLE_TCP_FLAGS] = [name for name in _TCP_FLAGS if getattr(flags, name)]
    if flow.trace_observation_point:
        point = flow.trace_observation_point
        attrs[sc.HUBBLE_TRACE_OBSERVATION_POINT] = _OBSERVATION_POINT.get(point) or str(point)
    if flow.HasField("is_reply"):
        attrs[sc.HUBBLE_IS_REPLY] = flow.is_reply.value
    hubble_attributes(
        flow, flow.traffic_direction, node, flow.source.identity, flow.destination.identity, attrs
    )
    name = f"{arm or 'IP'} {verdict_name}"
    if verdict not in _FAILED:
        return name, attrs, StatusCode.UNSET, ""
    reason = flow.drop_reason_desc
    reason_name = (DROP_REASON.get(reason) or str(reason)) if reason else verdict_name
    attrs[sc.HUBBLE_DROP_REASON] = reason_name
    attrs[sc.ERROR_TYPE] = reason_name
    return name, attrs, StatusCode.ERROR, reason_name
