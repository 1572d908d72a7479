"""Hubble's option syntax: errors at construction, context options, fallbacks, labelsContext."""

from __future__ import annotations

import pytest

from hubble_bridge.errors import ConfigError
from hubble_bridge.mapping.metrics import DEFAULT_FAMILIES, MetricsAggregator, MetricsConfig
from tests.test_metrics_support import POD_A, POD_B, TCP_SYN, WORLD, aggregate, counts, response


def flow(**extra: object):
    fields: dict[str, object] = {
        "verdict": "DROPPED",
        "IP": {"source": "10.0.0.1", "destination": "10.0.0.2", "ipVersion": "IPv4"},
        "l4": TCP_SYN,
        "source": POD_A,
        "destination": POD_B,
        "event_type": {"type": 1},
        "drop_reason_desc": "POLICY_DENIED",
        "traffic_direction": "EGRESS",
    }
    fields.update(extra)
    return response(**fields)


def drop_context(options: str, *flows: object) -> list[tuple[tuple[str, str], ...]]:
    """The context part (labels before reason/protocol) of each drop series."""
    agg = aggregate([f"drop:{options}"], *(flows or (flow(),)))
    return [attrs[:-2] for attrs in counts(agg, "hubble.drop")]


def test_defaults_are_hubbles_common_set_and_valid() -> None:
    config = MetricsConfig()
    assert config.families == list(DEFAULT_FAMILIES)
    assert "httpV2" in config.families and "http" not in config.families
    config.validate()
    assert MetricsAggregator(config, 0).snapshot() == []


@pytest.mark.parametrize(
    ("families", "message"),
    [
        (["flows"], "unknown family 'flows'"),
        (["dns:qeury"], "unknown option(s) ['qeury']"),
        (["flow:query"], "unknown option(s) ['query']"),
        (["drop:sourceContext=namespace|pods"], "unknown context ['pods'] in sourcecontext"),
        (["drop:destinationContext="], "unknown context"),
        (
            ["flow:labelsContext=source_namespace,source_team"],
            "invalid labelsContext value(s) ['source_team']",
        ),
        (["httpV2:exemplars=yes"], "exemplars must be true or false"),
        (["http", "httpV2"], "'http' conflicts with 'httpV2'"),
        (["flow", "flow:sourceContext=pod"], "'flow' is listed twice"),
        ([""], "invalid family entry"),
    ],
)
def test_bad_configuration_fails_at_construction(families: list[str], message: str) -> None:
    config = MetricsConfig(families=families)
    with pytest.raises(ConfigError, match="invalid metrics configuration") as raised:
        MetricsAggregator(config, 0)
    assert message in str(raised.value)
    with pytest.raises(ConfigError):
        config.validate()


def test_every_problem_is_reported_at_once() -> None:
    config = MetricsConfig(families=["nope", "dns:bogus"], cardinality_limit=0)
    with pytest.raises(ConfigError) as raised:
        config.validate()
    text = str(raised.value)
    assert "'nope'" in text and "['bogus']" in text and "cardinality_limit" in text
    assert "\n" not in text


def test_option_keys_and_identifiers_are_case_insensitive() -> None:
    assert drop_context("SourceContext=Namespace;DESTINATIONCONTEXT=namespace") == [
        (("source", "shop"), ("destination", "db"))
    ]


@pytest.mark.parametrize(
    ("identifiers", "source", "destination"),
    [
        ("namespace", "shop", "db"),
        ("pod", "shop/cart-7d9f8b6c5-x2x4z", "db/redis-0"),
        ("pod-name", "cart-7d9f8b6c5-x2x4z", "redis-0"),
        ("pod-short", "shop/cart", "db/redis"),
        ("workload-name", "", "redis"),
        ("workload-name|pod-name", "cart-7d9f8b6c5-x2x4z", "redis"),
        ("app", "cart", "redis"),  # app.kubernetes.io/name is checked with k8s-app and app, in label order
        ("ip", "10.0.0.1", "10.0.0.2"),
        ("identity", "k8s:app=cart", "k8s:app.kubernetes.io/name=redis,k8s:app=cache"),
        ("dns", "", ""),
        ("dns|reserved-identity|namespace", "shop", "db"),
    ],
)
def test_context_identifiers_and_first_non_empty_fallback(
    identifiers: str, source: str, destination: str
) -> None:
    options = f"sourceContext={identifiers};destinationContext={identifiers}"
    assert drop_context(options) == [(("source", source), ("destination", destination))]


def test_pod_of_an_endpoint_without_pod_is_its_namespace_and_a_slash() -> None:
    # cilium pkg/hubble/metrics/api/context.go getContextIDLabelValue: pod name, prefixed with
    # "namespace/" whenever the namespace is set; "" only without both, where `|` falls back.
    world = {"identity": 2, "namespace": "", "labels": ["reserved:world"]}
    node = {"identity": 1, "namespace": "kube-system", "labels": ["reserved:host"]}
    got = drop_context(
        "sourceContext=pod|namespace;destinationContext=pod|reserved-identity",
        flow(source=node, destination=world),
    )
    assert got == [(("source", "kube-system/"), ("destination", "reserved:world"))]
    apiserver = {"labels": ["reserved:world", "reserved:kube-apiserver"]}
    got = drop_context("destinationContext=reserved-identity", flow(destination=apiserver))
    assert got == [(("destination", "reserved:kube-apiserver"),)]


def test_dns_context_uses_the_fqdn_names() -> None:
    got = drop_context(
        "destinationContext=dns|ip", flow(destination=WORLD, destination_names=["api.example.com"])
    )
    assert got == [(("destination", "api.example.com"),)]


def test_labels_context_in_hubbles_order_whatever_the_given_order() -> None:
    options = (
        "labelsContext=traffic_direction,destination_workload,source_namespace,source_app,destination_ip"
    )
    assert drop_context(options) == [
        (
            ("source_namespace", "shop"),
            ("source_app", "cart"),
            ("destination_ip", "10.0.0.2"),
            ("destination_workload", "redis"),
            ("traffic_direction", "egress"),
        )
    ]
    assert drop_context(
        "labelsContext=traffic_direction", flow(traffic_direction="TRAFFIC_DIRECTION_UNKNOWN")
    ) == [(("traffic_direction", "unknown"),)]


def test_labels_context_comes_before_source_and_destination() -> None:
    got = drop_context("destinationContext=pod-name;labelsContext=source_pod")
    assert got == [(("source_pod", "cart-7d9f8b6c5-x2x4z"), ("destination", "redis-0"))]


def test_direction_specific_contexts_override_the_generic_one() -> None:
    # cilium pkg/hubble/metrics/api/context.go: the label exists only with sourceContext /
    # destinationContext; a direction-specific context overrides it for that direction.
    options = "sourceContext=namespace;sourceEgressContext=pod-name;destinationIngressContext=ip"
    egress, ingress = flow(traffic_direction="EGRESS"), flow(traffic_direction="INGRESS")
    assert drop_context(options, egress, ingress) == [
        (("source", "cart-7d9f8b6c5-x2x4z"),),
        (("source", "shop"),),
    ]
    both = "sourceContext=namespace;destinationContext=namespace;destinationIngressContext=ip"
    assert drop_context(both, egress, ingress) == [
        (("source", "shop"), ("destination", "db")),
        (("source", "shop"), ("destination", "10.0.0.2")),
    ]


def test_http_v2_reads_the_context_from_the_request_side() -> None:
    # A response flows server (source) -> client (destination); httpV2 labels it as the request.
    server = {"namespace": "db", "pod_name": "redis-0", "workloads": [{"name": "redis"}]}
    client = {"namespace": "shop", "pod_name": "cart-1", "workloads": [{"name": "cart"}]}
    reply = response(
        source=server,
        destination=client,
        traffic_direction="INGRESS",
        event_type={"type": 129},
        l7={"type": "RESPONSE", "latency_ns": "1000", "http": {"code": 200, "method": "GET"}},
    )
    labels = "labelsContext=source_namespace,source_workload,destination_namespace,destination_workload"
    agg = aggregate([f"httpV2:{labels};sourceContext=pod;destinationContext=namespace"], reply)
    (attrs,) = counts(agg, "hubble.http_requests")
    # cilium pkg/hubble/metrics/api/context.go getLabelValues(invert=true): labelsContext reads
    # the swapped sides, while source/destination are computed on the flow as it is (sourceContext
    # on the server, destinationContext on the client) and the two values then swapped.
    assert attrs[:6] == (
        ("source_namespace", "shop"),
        ("source_workload", "cart"),
        ("destination_namespace", "db"),
        ("destination_workload", "redis"),
        ("source", "shop"),
        ("destination", "db/redis-0"),
    )


def test_families_with_the_same_context_share_label_values() -> None:
    agg = aggregate(["flow:sourceContext=namespace", "drop:sourceContext=namespace"], flow())
    assert counts(agg, "hubble.flows_processed") == {
        (
            ("protocol", "TCP"),
            ("type", "Drop"),
            ("subtype", ""),
            ("verdict", "DROPPED"),
            ("source", "shop"),
        ): 1
    }
    assert counts(agg, "hubble.drop") == {
        (("source", "shop"), ("reason", "POLICY_DENIED"), ("protocol", "TCP")): 1
    }
