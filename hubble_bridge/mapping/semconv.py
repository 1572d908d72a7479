"""Attribute keys: OpenTelemetry semantic conventions (v1.3x, stable HTTP) and the bridge's own.

One place owns each key. Hubble facts that have no semantic-convention home go
under the `hubble.` prefix, documented in docs/telemetry.md.
"""

from __future__ import annotations

# Resource
SERVICE_NAME = "service.name"
SERVICE_NAMESPACE = "service.namespace"
K8S_CLUSTER_NAME = "k8s.cluster.name"
K8S_NAMESPACE_NAME = "k8s.namespace.name"
K8S_POD_NAME = "k8s.pod.name"
K8S_NODE_NAME = "k8s.node.name"
# k8s.<kind>.name for a workload kind: deployment, statefulset, daemonset, replicaset, job, cronjob
K8S_WORKLOAD_NAME_TEMPLATE = "k8s.{kind}.name"

# HTTP
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_REQUEST_METHOD_ORIGINAL = "http.request.method_original"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
HTTP_REQUEST_HEADER_TEMPLATE = "http.request.header.{name}"  # lower-case header name
URL_FULL = "url.full"
URL_PATH = "url.path"
URL_QUERY = "url.query"
URL_SCHEME = "url.scheme"
USER_AGENT_ORIGINAL = "user_agent.original"
ERROR_TYPE = "error.type"

# Network
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
CLIENT_ADDRESS = "client.address"
CLIENT_PORT = "client.port"
NETWORK_TRANSPORT = "network.transport"  # tcp, udp, icmp...
NETWORK_TYPE = "network.type"  # ipv4, ipv6
NETWORK_PROTOCOL_NAME = "network.protocol.name"  # http, dns, kafka
NETWORK_PROTOCOL_VERSION = "network.protocol.version"  # "1.1", "2"
NETWORK_PEER_ADDRESS = "network.peer.address"
NETWORK_PEER_PORT = "network.peer.port"
NETWORK_LOCAL_ADDRESS = "network.local.address"
NETWORK_LOCAL_PORT = "network.local.port"

# DNS
DNS_QUESTION_NAME = "dns.question.name"
DNS_ANSWERS = "dns.answers"

# Messaging (Kafka)
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
MESSAGING_KAFKA_ERROR_CODE = "hubble.kafka.error_code"

# The bridge's own prefix for Hubble facts.
HUBBLE_PREFIX = "hubble."

# Flow 5-tuple (logs)
SOURCE_ADDRESS = "source.address"
SOURCE_PORT = "source.port"
DESTINATION_ADDRESS = "destination.address"
DESTINATION_PORT = "destination.port"

# Hubble flow facts (logs); endpoint keys are "hubble.<source|destination>.<field>".
HUBBLE_VERDICT = "hubble.verdict"
HUBBLE_DROP_REASON = "hubble.drop.reason"  # DropReason name, e.g. POLICY_DENIED
HUBBLE_DROP_REASON_CODE = "hubble.drop.reason_code"
HUBBLE_POLICY_NAMES = "hubble.policy.names"  # ["ns/name", ...] from the allowed_by / denied_by lists
HUBBLE_POLICY_MATCH_TYPE = "hubble.policy.match_type"  # L3-Only, L3-L4, ...
HUBBLE_TRAFFIC_DIRECTION = "hubble.traffic_direction"
HUBBLE_NODE_NAME = "hubble.node.name"
HUBBLE_EVENT_TYPE = "hubble.event_type"  # monitor message type: drop, trace, policy-verdict, l7...
HUBBLE_TRACE_OBSERVATION_POINT = "hubble.trace_observation_point"
HUBBLE_IS_REPLY = "hubble.is_reply"
HUBBLE_FLOW_UUID = "hubble.flow.uuid"
HUBBLE_ICMP_TYPE = "hubble.icmp.type"
HUBBLE_ICMP_CODE = "hubble.icmp.code"
HUBBLE_ENDPOINT_TEMPLATE = "hubble.{side}.{field}"  # namespace, pod, workload, identity, labels
HUBBLE_LOST_EVENTS_SOURCE = "hubble.lost_events.source"
HUBBLE_LOST_EVENTS_COUNT = "hubble.lost_events.count"
HUBBLE_LOST_EVENTS_CPU = "hubble.lost_events.cpu"
HUBBLE_NODE_STATE = "hubble.node_status.state"
HUBBLE_NODE_NAMES = "hubble.node_status.node_names"
HUBBLE_NODE_STATUS_MESSAGE = "hubble.node_status.message"

# Spans (mapping/spans_attrs.py); source/destination are the request's, i.e. client/server.
MESSAGING_OPERATION_TYPE = "messaging.operation.type"  # send, receive
HUBBLE_SOURCE_IDENTITY = "hubble.source.identity"
HUBBLE_DESTINATION_IDENTITY = "hubble.destination.identity"
HUBBLE_DNS_QTYPES = "hubble.dns.qtypes"
HUBBLE_DNS_RRTYPES = "hubble.dns.rrtypes"
HUBBLE_DNS_CNAMES = "hubble.dns.cnames"
HUBBLE_DNS_RCODE = "hubble.dns.rcode"
HUBBLE_DNS_TTL = "hubble.dns.ttl"
HUBBLE_DNS_OBSERVATION_SOURCE = "hubble.dns.observation_source"
HUBBLE_KAFKA_API_VERSION = "hubble.kafka.api_version"
HUBBLE_KAFKA_CORRELATION_ID = "hubble.kafka.correlation_id"
HUBBLE_L7_UNANSWERED = "hubble.l7.unanswered"  # the request got no response within the join window
HUBBLE_TCP_FLAGS = "hubble.tcp.flags"  # ["SYN", "ACK"]
