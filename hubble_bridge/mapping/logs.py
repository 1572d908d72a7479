"""Hubble events to log records: drops, policy denials, audits, lost events, node status.

Which flows make a record, and as what (event_name, severity):

- a PolicyVerdict event (event_type 5) that denies, when `policy_denials`:
  "hubble.policy.denied", WARN. Denying means verdict DROPPED/ERROR or a non-empty
  ingress/egress_denied_by list, whatever `verdicts` says; an AUDIT verdict is
  never a denial (audit mode does not enforce).
- a verdict listed in `verdicts`: DROPPED -> "hubble.flow.dropped" WARN,
  ERROR -> "hubble.flow.error" ERROR, AUDIT -> "hubble.flow.audit" INFO,
  any other listed verdict -> "hubble.flow" INFO.
- any other flow only with `all_flows`: "hubble.flow", INFO.

Lost events: "hubble.lost_events", WARN. Node status: "hubble.node_status",
WARN when nodes are unavailable or in error, else INFO.

The body is the line `hubble observe -o compact` prints (summary.py), URLs
redacted. The resource is the endpoint where the flow was observed: the
destination for INGRESS, the source for EGRESS, and with no direction the source
if it is a pod, else the destination. Node-level events get a node resource.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial

from hubble_bridge.api import flow_pb2, observer_pb2, relay_pb2
from hubble_bridge.configload import validate_parts
from hubble_bridge.errors import ConfigError
from hubble_bridge.flows.codec import timestamp_ns
from hubble_bridge.mapping import semconv as sc
from hubble_bridge.mapping.limits import AttributeLimits, apply_limits, clamp_int64, clamp_ns, limit_str
from hubble_bridge.mapping.metrics.names import DROP_REASON, TRAFFIC_DIRECTION, VERDICT
from hubble_bridge.mapping.redact import RedactConfig, redact_url
from hubble_bridge.mapping.resource import UNKNOWN_SERVICE, endpoint_resource, split_node_name, workload_name
from hubble_bridge.mapping.summary import compact_summary, enum_name, flow_line, policy_match_text
from hubble_bridge.telemetry import Attributes, LogRecord, Resource, Severity, make_resource

EVENT_FLOW_DROPPED = "hubble.flow.dropped"
EVENT_FLOW_ERROR = "hubble.flow.error"
EVENT_FLOW_AUDIT = "hubble.flow.audit"
EVENT_POLICY_DENIED = "hubble.policy.denied"
EVENT_FLOW = "hubble.flow"
EVENT_LOST_EVENTS = "hubble.lost_events"
EVENT_NODE_STATUS = "hubble.node_status"
# service.name of records about Hubble itself rather than a workload.
NODE_SERVICE_NAME = "hubble"

_Event = tuple[str, Severity]  # event_name, severity
_VERDICT_EVENTS: dict[int, _Event] = {
    flow_pb2.DROPPED: (EVENT_FLOW_DROPPED, Severity.WARN),
    flow_pb2.ERROR: (EVENT_FLOW_ERROR, Severity.ERROR),
    flow_pb2.AUDIT: (EVENT_FLOW_AUDIT, Severity.INFO),
}
_FLOW_EVENT: _Event = (EVENT_FLOW, Severity.INFO)
# An endpoint's bounded attributes as the source and as the destination (labels apart, they come last),
# its labels, and its resource by node name.
_EndpointEntry = tuple[Attributes, Attributes, tuple[str, ...] | None, dict[str, Resource]]
_POLICY_DENIED_EVENT: _Event = (EVENT_POLICY_DENIED, Severity.WARN)
_DENYING_VERDICTS = frozenset({flow_pb2.DROPPED, flow_pb2.ERROR})
_EVENT_POLICY_VERDICT = 5
# pkg/monitor/api MessageTypeName*: flow.event_type.type.
_EVENT_TYPE_NAMES = {1: "drop", 2: "debug", 3: "capture", 4: "trace", 5: "policy-verdict", 7: "trace-sock",
                     129: "l7", 130: "agent"}  # fmt: skip
# IANA protocol keywords, lower case, as network.transport values.
_TRANSPORTS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp", "ICMPv4": "icmp", "ICMPv6": "ipv6-icmp",
               "IGMP": "igmp", "VRRP": "vrrp"}  # fmt: skip
_NETWORK_TYPES = {flow_pb2.IPv4: "ipv4", flow_pb2.IPv6: "ipv6"}
_ENDPOINT_FIELDS = ("namespace", "pod", "workload", "identity", "labels")
_ENDPOINT_KEYS = {
    side: {f: sc.HUBBLE_ENDPOINT_TEMPLATE.format(side=side, field=f) for f in _ENDPOINT_FIELDS}
    for side in ("source", "destination")
}
_OBSERVATION_POINT = {v.number: v.name for v in flow_pb2.TraceObservationPoint.DESCRIPTOR.values}
_PORTED = frozenset({"TCP", "UDP", "SCTP"})
_ICMP = frozenset({"ICMPv4", "ICMPv6"})
_AUDIT = flow_pb2.AUDIT
_INGRESS = flow_pb2.INGRESS
_EGRESS = flow_pb2.EGRESS
# Distinct endpoints in a large cluster; beyond this the cache starts over.
_ENDPOINT_CACHE_SIZE = 8192
# Nodes one endpoint is seen on: its own, and a few more as it moves; beyond this its resources start over.
_NODES_PER_ENDPOINT = 16
_SOURCE_LABELS = _ENDPOINT_KEYS["source"]["labels"]
_DESTINATION_LABELS = _ENDPOINT_KEYS["destination"]["labels"]
_NODE_WARN_STATES = frozenset({relay_pb2.NODE_UNAVAILABLE, relay_pb2.NODE_ERROR})


@dataclass(frozen=True)
class LogConfig:
    verdicts: frozenset[str] = frozenset({"DROPPED", "ERROR", "AUDIT"})  # Verdict names that make a record
    policy_denials: bool = True  # denying PolicyVerdict events make a record whatever their verdict
    all_flows: bool = False  # one record per flow
    cluster_name: str = ""
    redact: RedactConfig = field(default_factory=RedactConfig)
    limits: AttributeLimits = field(default_factory=AttributeLimits)
    _verdict_events: dict[int, _Event] = field(init=False, repr=False, compare=False, default_factory=dict)
    _other_event: _Event | None = field(init=False, repr=False, compare=False, default=None)
    _rewrite_url: Callable[[str], str] | None = field(init=False, repr=False, compare=False, default=None)
    _value_limits: AttributeLimits = field(
        init=False, repr=False, compare=False, default_factory=AttributeLimits
    )
    # By serialized endpoint, bounded: see _endpoint_entry.
    _endpoints: dict[bytes, _EndpointEntry] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        # Resolved once so the per-flow check is one dict get; unknown names are validate()'s job.
        known = flow_pb2.Verdict.DESCRIPTOR.values_by_name
        codes = {known[v.upper()].number for v in self.verdicts if v.upper() in known}
        events = {code: _VERDICT_EVENTS.get(code, _FLOW_EVENT) for code in codes}
        object.__setattr__(self, "_verdict_events", events)
        object.__setattr__(self, "_other_event", _FLOW_EVENT if self.all_flows else None)
        object.__setattr__(self, "_rewrite_url", partial(redact_url, cfg=self.redact))
        # The limits on each value alone, for attributes bounded in parts before they are counted.
        object.__setattr__(self, "_value_limits", replace(self.limits, max_attributes=sys.maxsize))

    def validate(self) -> None:
        problems = []
        if isinstance(self.verdicts, str):
            problems.append(f"logs.verdicts: expected a list of verdict names, got {self.verdicts!r}")
        else:
            known = flow_pb2.Verdict.DESCRIPTOR.values_by_name
            unknown = sorted(v for v in self.verdicts if str(v).upper() not in known)
            if unknown:
                names = ", ".join(map(repr, unknown))
                problems.append(f"logs.verdicts: unknown verdict {names} (known: {', '.join(known)})")
        validate_parts((self.redact, self.limits), problems)
        if problems:
            raise ConfigError("; ".join(problems))


def event_log(response: observer_pb2.GetFlowsResponse, config: LogConfig) -> LogRecord | None:
    """The record for any GetFlowsResponse: a flow (if selected), lost events or node status."""
    kind = response.WhichOneof("response_types")
    if kind == "flow":
        return flow_log(response, config)
    if kind == "lost_events":
        return lost_events_log(response, config)
    if kind == "node_status":
        return node_status_log(response, config)
    return None


def flow_log(response: observer_pb2.GetFlowsResponse, config: LogConfig) -> LogRecord | None:
    """The record for a flow, or None when the configuration does not select it."""
    # A response without a flow reads as an empty Flow, turned away by flow_log_of's HasField.
    return flow_log_of(response.flow, response, config)


def flow_log_of(
    flow: flow_pb2.Flow, response: observer_pb2.GetFlowsResponse, config: LogConfig
) -> LogRecord | None:
    """`flow_log` for a caller that has read `flow = response.flow` already (each read costs)."""
    # Most flows make no record: decided from the verdict, plus the event type when a denial could count.
    verdict = flow.verdict
    event = config._verdict_events.get(verdict, config._other_event)
    # Audit mode does not enforce: an AUDIT verdict is never a denial, and needs no event type read.
    if (
        config.policy_denials
        and verdict != _AUDIT
        and flow.event_type.type == _EVENT_POLICY_VERDICT
        and (verdict in _DENYING_VERDICTS or flow.ingress_denied_by or flow.egress_denied_by)
    ):
        event = _POLICY_DENIED_EVENT
    if event is None or not response.HasField("flow"):
        return None
    return _flow_record(flow, response, config, verdict, event)


def lost_events_log(response: observer_pb2.GetFlowsResponse, config: LogConfig) -> LogRecord:
    lost = response.lost_events
    attributes: Attributes = {
        sc.HUBBLE_LOST_EVENTS_SOURCE: enum_name(flow_pb2.LostEventSource, lost.source),
        sc.HUBBLE_LOST_EVENTS_COUNT: clamp_int64(lost.num_events_lost),
    }
    if lost.HasField("cpu"):
        attributes[sc.HUBBLE_LOST_EVENTS_CPU] = lost.cpu.value
    if response.node_name:
        attributes[sc.HUBBLE_NODE_NAME] = response.node_name
    if response.HasField("time"):
        time_ns = timestamp_ns(response.time)
    else:
        time_ns = timestamp_ns(lost.last if lost.HasField("last") else lost.first)
    return _node_record(response, config, time_ns, Severity.WARN, EVENT_LOST_EVENTS, attributes)


def node_status_log(response: observer_pb2.GetFlowsResponse, config: LogConfig) -> LogRecord:
    status = response.node_status
    attributes: Attributes = {
        sc.HUBBLE_NODE_STATE: enum_name(relay_pb2.NodeState, status.state_change),
        sc.HUBBLE_NODE_NAMES: list(status.node_names),
    }
    if status.message:
        attributes[sc.HUBBLE_NODE_STATUS_MESSAGE] = status.message
    if response.node_name:
        attributes[sc.HUBBLE_NODE_NAME] = response.node_name
    severity = Severity.WARN if status.state_change in _NODE_WARN_STATES else Severity.INFO
    return _node_record(
        response, config, timestamp_ns(response.time), severity, EVENT_NODE_STATUS, attributes
    )


def _node_record(
    response: observer_pb2.GetFlowsResponse,
    config: LogConfig,
    time_ns: int,
    severity: Severity,
    event: str,
    attributes: Attributes,
) -> LogRecord:
    limits = config.limits
    return LogRecord(
        resource=_node_resource(response.node_name, config.cluster_name, limits.max_value_length),
        time_ns=clamp_ns(time_ns),
        severity=severity,
        body=limit_str(compact_summary(response), limits.max_value_length),
        attributes=apply_limits(attributes, limits),
        event_name=event,
    )


def _node_resource(node_name: str, cluster_name: str, max_value_length: int) -> Resource:
    cluster, node = split_node_name(node_name)
    return make_resource(
        {
            sc.SERVICE_NAME: NODE_SERVICE_NAME,
            sc.K8S_NODE_NAME: limit_str(node, max_value_length),
            sc.K8S_CLUSTER_NAME: limit_str(cluster or cluster_name, max_value_length),
        }
    )


def _flow_record(
    flow: flow_pb2.Flow,
    response: observer_pb2.GetFlowsResponse,
    config: LogConfig,
    verdict: int,
    event: _Event,
) -> LogRecord:
    limits = config.limits
    max_len = limits.max_value_length
    node_name = flow.node_name or response.node_name
    # Each endpoint serialized once: the key of both the resource and the endpoint attribute caches.
    source, destination = flow.source, flow.destination
    source_key, destination_key = source.SerializeToString(), destination.SerializeToString()
    endpoints = config._endpoints
    source_entry = endpoints.get(source_key) or _endpoint_entry(endpoints, source_key, limits)
    destination_entry = endpoints.get(destination_key) or _endpoint_entry(endpoints, destination_key, limits)
    direction = flow.traffic_direction
    if direction == _INGRESS:
        observed, observed_key = destination_entry, destination_key
    elif direction == _EGRESS or source.pod_name:
        observed, observed_key = source_entry, source_key
    else:
        observed, observed_key = destination_entry, destination_key

    attrs: Attributes = {}
    ip = flow.IP
    source_ip, destination_ip = ip.source, ip.destination
    if source_ip:
        attrs[sc.SOURCE_ADDRESS] = source_ip
    if destination_ip:
        attrs[sc.DESTINATION_ADDRESS] = destination_ip
    network_type = _NETWORK_TYPES.get(ip.ipVersion)
    if network_type:
        attrs[sc.NETWORK_TYPE] = network_type
    l4 = flow.l4
    proto = l4.WhichOneof("protocol")
    if proto is not None:
        attrs[sc.NETWORK_TRANSPORT] = _TRANSPORTS.get(proto, proto.lower())
        if proto in _PORTED:
            ports = getattr(l4, proto)
            source_port, destination_port = ports.source_port, ports.destination_port
            if source_port:
                attrs[sc.SOURCE_PORT] = source_port
            if destination_port:
                attrs[sc.DESTINATION_PORT] = destination_port
        elif proto in _ICMP:
            icmp = getattr(l4, proto)
            attrs[sc.HUBBLE_ICMP_TYPE] = icmp.type
            attrs[sc.HUBBLE_ICMP_CODE] = icmp.code
    attrs[sc.HUBBLE_VERDICT] = VERDICT.get(verdict) or str(verdict)
    reason = flow.drop_reason_desc or flow.drop_reason
    if reason:
        attrs[sc.HUBBLE_DROP_REASON] = DROP_REASON.get(reason) or str(reason)
        attrs[sc.HUBBLE_DROP_REASON_CODE] = reason
    if direction:
        attrs[sc.HUBBLE_TRAFFIC_DIRECTION] = TRAFFIC_DIRECTION.get(direction) or str(direction)
    # Sub-messages stay referenced until flow_line has read them too: a live one reads back cheaper.
    event_type_message = flow.event_type
    event_type = event_type_message.type
    # A non-zero type is only read from a present event_type: HasField only for the zero.
    if event_type or flow.HasField("event_type"):
        attrs[sc.HUBBLE_EVENT_TYPE] = _EVENT_TYPE_NAMES.get(event_type) or str(event_type)
    point = flow.trace_observation_point
    if point:
        attrs[sc.HUBBLE_TRACE_OBSERVATION_POINT] = _OBSERVATION_POINT.get(point) or str(point)
    match_type = flow.policy_match_type
    if event_type == _EVENT_POLICY_VERDICT or match_type:
        attrs[sc.HUBBLE_POLICY_MATCH_TYPE] = policy_match_text(match_type)
    ingress_denied, egress_denied = flow.ingress_denied_by, flow.egress_denied_by
    ingress_allowed, egress_allowed = flow.ingress_allowed_by, flow.egress_allowed_by
    if ingress_denied or egress_denied or ingress_allowed or egress_allowed:
        policies = _policy_names((ingress_denied, egress_denied, ingress_allowed, egress_allowed))
        if policies:
            attrs[sc.HUBBLE_POLICY_NAMES] = policies
    if flow.HasField("is_reply"):
        is_reply = flow.is_reply
        attrs[sc.HUBBLE_IS_REPLY] = is_reply.value
    if node_name:
        attrs[sc.HUBBLE_NODE_NAME] = node_name
    uuid = flow.uuid
    if uuid:
        attrs[sc.HUBBLE_FLOW_UUID] = uuid
    # Endpoint attributes come bounded from their cache: only the flow's own values need the check here,
    # and the count once all are in (bounding is idempotent, so a second pass changes nothing else).
    apply_limits(attrs, config._value_limits)
    attrs.update(source_entry[0])
    labels = source_entry[2]
    if labels is not None:
        attrs[_SOURCE_LABELS] = list(labels)  # a list of its own: records are mutable
    attrs.update(destination_entry[1])
    labels = destination_entry[2]
    if labels is not None:
        attrs[_DESTINATION_LABELS] = list(labels)
    if len(attrs) > limits.max_attributes:
        apply_limits(attrs, limits)
    time = flow.time if flow.HasField("time") else response.time

    resource = observed[3].get(node_name)
    if resource is None:
        resource = _observed_resource(observed, observed_key, node_name, config.cluster_name, max_len)
    return LogRecord(
        resource,
        clamp_ns(timestamp_ns(time)),
        event[1],
        limit_str(flow_line(flow, response, config._rewrite_url), max_len),
        attrs,
        event[0],
        _trace_id(flow.trace_context.parent.trace_id) if flow.HasField("trace_context") else b"",
    )


def _observed_resource(
    entry: _EndpointEntry, serialized: bytes, node_name: str, cluster_name: str, max_value_length: int
) -> Resource:
    resources = entry[3]
    if len(resources) >= _NODES_PER_ENDPOINT:
        resources.clear()
    endpoint = flow_pb2.Endpoint.FromString(serialized)
    resource = resources[node_name] = endpoint_resource(endpoint, node_name, cluster_name, max_value_length)
    return resource


def _endpoint_entry(
    endpoints: dict[bytes, _EndpointEntry], serialized: bytes, limits: AttributeLimits
) -> _EndpointEntry:
    """The endpoint's cache entry, made and kept.

    Keyed on the serialized endpoint, as endpoint_resource is: the workload fallback chain
    walks every label, and the same few endpoints recur in flow after flow.
    """
    if len(endpoints) >= _ENDPOINT_CACHE_SIZE:
        endpoints.clear()
    endpoint = flow_pb2.Endpoint.FromString(serialized)
    facts: list[tuple[str, str | int]] = []
    if endpoint.namespace:
        facts.append(("namespace", endpoint.namespace))
    if endpoint.pod_name:
        facts.append(("pod", endpoint.pod_name))
    workload = workload_name(endpoint)
    if workload != UNKNOWN_SERVICE:
        facts.append(("workload", workload))
    if endpoint.identity:
        facts.append(("identity", endpoint.identity))
    bounded: Attributes = {name: value for name, value in facts}
    if endpoint.labels:
        bounded["labels"] = list(endpoint.labels)
    apply_limits(bounded, replace(limits, max_attributes=sys.maxsize))
    labels = bounded.pop("labels", None)
    as_source, as_destination = _ENDPOINT_KEYS["source"], _ENDPOINT_KEYS["destination"]
    entry: _EndpointEntry = (
        {as_source[name]: value for name, value in bounded.items()},
        {as_destination[name]: value for name, value in bounded.items()},
        None if labels is None else tuple(labels),
        {},
    )
    endpoints[serialized] = entry
    return entry


def _policy_names(lists: tuple[Iterable[flow_pb2.Policy], ...]) -> list[str]:
    names: list[str] = []
    for policies in lists:
        for policy in policies:
            name = f"{policy.namespace}/{policy.name}" if policy.namespace else policy.name
            if name and name not in names:
                names.append(name)
    return names


def _trace_id(hex_id: str) -> bytes:
    """The W3C trace id as 16 bytes; b"" when absent, malformed or all zero (invalid per W3C)."""
    if len(hex_id) != 32:
        return b""
    try:
        raw = bytes.fromhex(hex_id)
    except ValueError:
        return b""
    return raw if len(raw) == 16 and any(raw) else b""
