"""The Helm chart, rendered by the real Helm engine and validated against Kubernetes' own schemas.

helm-python-sdk drives Helm's Go SDK through its C library: rendering, values.schema.json
checks and lint are Helm's own, offline (no cluster, no chart dependencies to fetch). Every
manifest is then validated strictly (unknown fields are errors) with kubernetes-validate
against the newest Kubernetes version it ships. The ServiceMonitor is a Prometheus Operator
CRD with no schema there; its shape is checked against the Service it scrapes instead.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from hubble_bridge.cli import build_parser
from hubble_bridge.config import BridgeConfig, load_config
from hubble_bridge.configload import build
from hubble_bridge.k8s.leader import LeaderElectionConfig

CHART = Path(__file__).resolve().parents[1] / "helm" / "hubble-otlp"
NAMESPACE = "monitoring"
K8S_VERSION = kubernetes_validate.latest_version()
SIDECAR_CAPS = {"BPF", "PERFMON", "NET_ADMIN", "SYS_RESOURCE", "NET_RAW"}
CRDS = {"monitoring.coreos.com/v1"}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values, name="obs", namespace=NAMESPACE, is_install=True)
    docs = []
    for name, text in sorted(out.items()):
        if name.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def validated(values: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Render, validate every manifest strictly, and index them by (kind, name)."""
    manifests = render(values)
    for m in manifests:
        if m["apiVersion"] in CRDS:
            continue
        kubernetes_validate.validate(m, K8S_VERSION, strict=True)
    index = {(m["kind"], m["metadata"]["name"]): m for m in manifests}
    assert len(index) == len(manifests), "two manifests share a kind and name"
    return index


def kinds(index: dict[tuple[str, str], dict[str, Any]]) -> set[str]:
    return {kind for kind, _ in index}


def workload(index: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    (found,) = [m for (kind, _), m in index.items() if kind in ("Deployment", "DaemonSet")]
    return found


def containers(index: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in workload(index)["spec"]["template"]["spec"]["containers"]}


def bridge_config(index: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(index[("ConfigMap", "obs-hubble-otlp")]["data"]["config.yaml"])


def arg(container: dict[str, Any], flag: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith(flag + "=")]
    return value


def check_bridge_config(config: dict[str, Any]) -> BridgeConfig:
    """The rendered file must build the bridge's own dataclasses, which reject unknown keys."""
    config = dict(config)
    election = config.pop("leader_election", None)
    if election is not None:
        LeaderElectionConfig(**election).validate()
        if "leader_election" in {f.name for f in dataclasses.fields(BridgeConfig)}:
            config["leader_election"] = election
    return build(BridgeConfig, config)


def assert_locked_down(container: dict[str, Any]) -> None:
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert sc.get("runAsUser", 65532) != 0


def test_chart_passes_helm_lint_in_strict_mode() -> None:
    for values in (None, {"mode": "node"}, {"mode": "node", "sidecar": {"enabled": True}}):
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{K8S_VERSION}")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["total_charts_linted"] == 1
        assert not problems and not report["errors"], (values, problems, report["errors"])


def test_relay_mode_is_a_leader_elected_deployment(tmp_path: Path) -> None:
    index = validated()
    assert kinds(index) == {
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "PodDisruptionBudget",
    }
    deployment = index[("Deployment", "obs-hubble-otlp")]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True  # the Lease needs the API server
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "hostNetwork" not in pod
    (bridge,) = pod["containers"]
    assert bridge["args"][0] == "bridge"
    assert arg(bridge, "--relay") == "hubble-relay.kube-system.svc.cluster.local:80"
    assert arg(bridge, "--config") == "/etc/hubble-otlp/config.yaml"
    assert bridge["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert bridge["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in bridge["ports"]}
    assert ports == {"metrics": 9965, "health": 8080}
    assert arg(bridge, "--metrics-listen") == ":9965" and arg(bridge, "--health-listen") == ":8080"
    env = {e["name"]: e for e in bridge["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert "service.instance.id=$(POD_NAME)/bridge" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
    assert_locked_down(bridge)

    role = index[("Role", "obs-hubble-otlp-leader-election")]
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["obs-hubble-otlp"],
            "verbs": ["get", "update"],
        },
    ]
    binding = index[("RoleBinding", "obs-hubble-otlp-leader-election")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "obs-hubble-otlp", "namespace": NAMESPACE}
    ]
    assert index[("PodDisruptionBudget", "obs-hubble-otlp")]["spec"]["maxUnavailable"] == 1
    service = index[("Service", "obs-hubble-otlp-metrics")]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9965, "targetPort": "metrics", "protocol": "TCP"}
    ]

    config = bridge_config(index)
    assert config["leader_election"] == {
        "enabled": True,
        "lease_name": "obs-hubble-otlp",
        "lease_duration_s": 15,
        "renew_deadline_s": 10,
        "retry_period_s": 2,
    }
    check_bridge_config(config)
    # The file plus the container's flags load as the bridge loads them.
    config.pop("leader_election")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    args = build_parser().parse_args(bridge["args"])
    assert (args.command, args.config) == ("bridge", "/etc/hubble-otlp/config.yaml")
    flags = {
        "source": {"relay": args.relay[0]},
        "metrics_listen": args.metrics_listen,
        "health_listen": args.health_listen,
    }
    loaded = load_config(flags, str(path), environ={})
    assert (loaded.metrics_listen, loaded.health_listen) == (":9965", ":8080")
    assert loaded.otlp.endpoint == "http://opentelemetry-collector.opentelemetry.svc.cluster.local:4317"
    assert loaded.source.relay == "hubble-relay.kube-system.svc.cluster.local:80"


def test_relay_mode_tls_headers_filters_and_config_from_values() -> None:
    values = {
        "relay": {
            "address": "hubble-relay.kube-system.svc.cluster.local:443",
            "tls": {"enabled": True, "existingSecret": "hubble-relay-client-certs"},
        },
        "otlp": {
            "endpoint": "https://otel-gateway.example.com:4317",
            "headersSecret": {"name": "otlp-auth", "key": "headers"},
            "tls": {"existingSecret": "otlp-ca", "clientCertificate": True},
        },
        "filters": {"allow": [{"source_pod": ["shop/"]}], "deny": [{"destination_port": ["53"]}]},
        "clusterName": "prod-eu",
        "config": {
            "metrics": {"families": ["flow", "drop:sourceContext=namespace"]},
            "logs": {"all_flows": True},
            "export": {"metric_interval_s": 30},
            "otlp": {"traces_endpoint": "https://traces.example.com:4317"},
        },
        "leaderElection": {"leaseDurationSeconds": 30, "renewDeadlineSeconds": 20, "retryPeriodSeconds": 4},
    }
    index = validated(values)
    pod = index[("Deployment", "obs-hubble-otlp")]["spec"]["template"]["spec"]
    (bridge,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["relay-tls"]["secret"]["secretName"] == "hubble-relay-client-certs"
    assert volumes["otlp-tls"]["secret"]["secretName"] == "otlp-ca"
    mounts = {m["name"]: m["mountPath"] for m in bridge["volumeMounts"]}
    assert (
        mounts["relay-tls"] == "/etc/hubble-otlp/tls/relay"
        and mounts["otlp-tls"] == "/etc/hubble-otlp/tls/otlp"
    )
    env = {e["name"]: e for e in bridge["env"]}
    assert env["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"] == {
        "secretKeyRef": {"name": "otlp-auth", "key": "headers"}
    }

    config = bridge_config(index)
    assert config["source"]["tls"] == {
        "enabled": True,
        "server_name": "instance.hubble-relay.cilium.io",
        "ca_file": "/etc/hubble-otlp/tls/relay/ca.crt",
        "cert_file": "/etc/hubble-otlp/tls/relay/tls.crt",
        "key_file": "/etc/hubble-otlp/tls/relay/tls.key",
    }
    assert config["source"]["whitelist"] == [{"source_pod": ["shop/"]}]
    assert config["source"]["blacklist"] == [{"destination_port": ["53"]}]
    assert config["otlp"]["cert_file"] == "/etc/hubble-otlp/tls/otlp/tls.crt"
    # User settings merge under the chart-managed ones instead of replacing the section.
    assert config["otlp"]["traces_endpoint"] == "https://traces.example.com:4317"
    assert config["otlp"]["endpoint"] == "https://otel-gateway.example.com:4317"
    assert "headers" not in config["otlp"]  # secrets stay out of the ConfigMap
    built = check_bridge_config(config)
    assert built.cluster_name == "prod-eu"
    assert built.metrics.families == ["flow", "drop:sourceContext=namespace"]
    assert built.logs.all_flows is True and built.export.metric_interval_s == 30
    assert built.source.tls.server_name == "instance.hubble-relay.cilium.io"
    assert config["leader_election"]["lease_duration_s"] == 30


def test_node_mode_is_a_daemonset_on_the_hubble_socket() -> None:
    index = validated({"mode": "node"})
    assert kinds(index) == {"ServiceAccount", "ConfigMap", "DaemonSet", "Service"}  # no Lease, no PDB
    pod = workload(index)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # nothing talks to the API server
    assert "hostNetwork" not in pod
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["securityContext"]["supplementalGroups"] == [0]  # the socket is 0660 root:root
    (bridge,) = pod["containers"]
    assert arg(bridge, "--relay") == "unix:///var/run/cilium/hubble.sock"
    mounts = {m["name"]: m for m in bridge["volumeMounts"]}
    assert mounts["hubble-socket"] == {
        "name": "hubble-socket",
        "mountPath": "/var/run/cilium",
        "readOnly": True,
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["hubble-socket"]["hostPath"] == {"path": "/var/run/cilium", "type": "Directory"}
    assert_locked_down(bridge)
    assert "leader_election" not in bridge_config(index)
    check_bridge_config(bridge_config(index))


def test_node_mode_with_the_sidecar() -> None:
    index = validated({"mode": "node", "sidecar": {"enabled": True, "interfaces": ["eth0", "ens5"]}})
    assert kinds(index) == {
        "ServiceAccount",
        "ConfigMap",
        "DaemonSet",
        "Service",
        "ClusterRole",
        "ClusterRoleBinding",
    }
    pod = workload(index)["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["automountServiceAccountToken"] is True  # the sidecar reads pods and services
    by_name = containers(index)
    assert set(by_name) == {"bridge", "bridge-sidecar", "sidecar"}
    assert arg(by_name["bridge"], "--relay") == "unix:///var/run/cilium/hubble.sock"
    assert arg(by_name["bridge-sidecar"], "--relay") == "127.0.0.1:4250"
    for name in ("bridge", "bridge-sidecar"):
        assert_locked_down(by_name[name])

    sidecar = by_name["sidecar"]
    assert sidecar["args"] == [
        "sidecar",
        "--listen=127.0.0.1:4250",
        "--interval=10",
        "--health-listen=:9979",
        "--interface=eth0",
        "--interface=ens5",
    ]
    # Every probe is an HTTP GET the kubelet sends to a port the container declares: no process is
    # started per probe, and on the host network the kubelet reaches `:9979` (all addresses).
    for container in by_name.values():
        declared = {port["name"] for port in container.get("ports", [])}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(kind)
            if probe is not None:
                assert set(probe) - {"periodSeconds", "failureThreshold", "timeoutSeconds"} == {"httpGet"}, (
                    kind
                )
                assert probe["httpGet"]["port"] in declared, (container["name"], kind)
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "sidecar-health"}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "sidecar-health"}
    sc = sidecar["securityContext"]
    assert set(sc["capabilities"]["add"]) == SIDECAR_CAPS and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    host_paths = {m["mountPath"] for m in sidecar["volumeMounts"] if "hostPath" in volumes[m["name"]]}
    assert host_paths == {
        "/sys/fs/bpf",
        "/sys/kernel/tracing",
        "/sys/kernel/debug",
        "/lib/modules",
        "/usr/src",
    }
    assert all(
        m.get("readOnly") for m in sidecar["volumeMounts"] if m["mountPath"] in ("/lib/modules", "/usr/src")
    )

    # On the host network every port is a host port: none may collide, nor sit on Cilium's.
    ports = [p["containerPort"] for c in by_name.values() for p in c.get("ports", [])]
    assert len(ports) == len(set(ports)) and not set(ports) & {4244, 9879, 9962, 9963, 9964, 9965}
    service_ports = {p["name"] for p in index[("Service", "obs-hubble-otlp-metrics")]["spec"]["ports"]}
    assert service_ports == {"metrics", "metrics-sidecar"}

    role = index[("ClusterRole", "obs-hubble-otlp-metadata")]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]}
    ]


def test_sidecar_without_l7_gets_no_raw_sockets() -> None:
    index = validated({"mode": "node", "sidecar": {"enabled": True, "l7": {"enabled": False}}})
    sidecar = containers(index)["sidecar"]
    assert set(sidecar["securityContext"]["capabilities"]["add"]) == SIDECAR_CAPS - {"NET_RAW"}
    assert "--no-l7" in sidecar["args"]
    assert build_parser().parse_args(sidecar["args"]).no_l7


def test_sidecar_alone_without_metadata_needs_no_token() -> None:
    index = validated(
        {
            "mode": "node",
            "node": {"hubble": {"enabled": False}},
            "sidecar": {"enabled": True, "kubernetesMetadata": False},
        }
    )
    assert "ClusterRole" not in kinds(index)
    assert set(containers(index)) == {"bridge-sidecar", "sidecar"}
    assert workload(index)["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_service_monitor_and_network_policy() -> None:
    index = validated(
        {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
            "networkPolicy": {"enabled": True},
        }
    )
    monitor = index[("ServiceMonitor", "obs-hubble-otlp")]
    service = index[("Service", "obs-hubble-otlp-metrics")]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    policy = index[("NetworkPolicy", "obs-hubble-otlp")]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    ingress_ports = {p["port"] for p in policy["spec"]["ingress"][0]["ports"]}
    assert ingress_ports == {9965, 8080}
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {53, 80, 4317, 6443} <= egress_ports


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "cluster"}, "/mode"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"bogus": True}, "'bogus' not allowed"),
        ({"otlp": {"protocol": "http"}}, "/otlp/protocol"),
        ({"otlp": {"compression": "zstd"}}, "/otlp/compression"),
        ({"relay": {"address": "hubble-relay"}}, "/relay/address"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"ports": {"metrics": 70000}}, "/ports/metrics"),
        ({"sidecar": {"enabled": True}}, "/mode"),  # the sidecar lives in the DaemonSet
        ({"replicaCount": 3, "leaderElection": {"enabled": False}}, "/leaderElection/enabled"),
        ({"mode": "node", "node": {"hubble": {"enabled": False}}}, "/node/hubble/enabled"),
        ({"config": {"metrics_listen": ":1"}}, "'metrics_listen' not allowed"),  # chart-managed
        ({"config": {"export": {"overflow": "spill"}}}, "/config/export/overflow"),
        ({"config": {"source": {"reader_process": "sometimes"}}}, "/config/source/reader_process"),
        ({"sidecar": {"interfaces": []}, "mode": "node"}, "/sidecar/interfaces"),
        ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
    ],
)
def test_bad_values_are_rejected_by_the_schema(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema(chart.merge_values(values))
    assert message in str(caught.value)
    with pytest.raises(helm.HelmError):
        render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"leaderElection": {"leaseDurationSeconds": 10}}, "leaseDurationSeconds must be greater"),
        ({"leaderElection": {"retryPeriodSeconds": 9}}, "renewDeadlineSeconds must be greater than 1.2"),
        ({"otlp": {"tls": {"existingSecret": "ca"}}}, "otlp.endpoint is plaintext"),
    ],
)
def test_rules_beyond_json_schema_fail_the_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(values)


def test_schema_config_keys_are_bridge_config_fields() -> None:
    """`config` in values.schema.json must not drift from the bridge's own configuration."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    config_schema = schema["properties"]["config"]["properties"]
    bridge_fields = {f.name: f for f in dataclasses.fields(BridgeConfig)}
    assert set(config_schema) <= set(bridge_fields)
    for key, sub in config_schema.items():
        nested = sub.get("properties")
        if not nested:
            continue
        owner = type(getattr(BridgeConfig(), key))
        assert set(nested) <= {f.name for f in dataclasses.fields(owner)}, key


def test_container_arguments_parse_with_the_real_command_line() -> None:
    parser = build_parser()
    index = validated({"mode": "node", "verbose": True, "sidecar": {"enabled": True}})
    by_name = containers(index)
    for name in ("bridge", "bridge-sidecar"):
        args = parser.parse_args(by_name[name]["args"])
        assert args.command == "bridge" and args.verbose and args.relay == [arg(by_name[name], "--relay")]
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    if "sidecar" not in commands:
        pytest.skip("`hubble-otlp sidecar` is not in this build yet; bridge arguments checked")
    args = parser.parse_args(by_name["sidecar"]["args"])
    assert args.command == "sidecar" and args.verbose


def test_service_graph_is_on_by_default_and_follows_the_bridge_defaults() -> None:
    from hubble_bridge.mapping.metrics.aggregator import DEFAULT_FAMILIES

    built = check_bridge_config(bridge_config(validated()))
    # The chart's copy of the bridge's defaults must not drift from them.
    assert built.metrics.families == [*DEFAULT_FAMILIES, "service-graph:dimensions=namespace"]
    built.metrics.validate()
    options = {"serviceGraph": {"options": "dimensions=cluster;window=5"}}
    assert (
        bridge_config(validated(options))["metrics"]["families"][-1]
        == "service-graph:dimensions=cluster;window=5"
    )
    bare = bridge_config(validated({"serviceGraph": {"options": ""}}))
    assert bare["metrics"]["families"][-1] == "service-graph"
    off = bridge_config(validated({"serviceGraph": {"enabled": False}}))
    assert "families" not in off.get("metrics", {})  # the bridge's own defaults, without the family
    # Node mode: each bridge sees one node, so it is off unless asked for (it would count twice).
    node = bridge_config(validated({"mode": "node"}))
    assert "families" not in node.get("metrics", {})
    asked = bridge_config(validated({"mode": "node", "serviceGraph": {"enabled": True}}))
    assert asked["metrics"]["families"][-1] == "service-graph:dimensions=namespace"
    # Other metrics settings keep the family; an explicit list is used as given.
    limit = bridge_config(validated({"config": {"metrics": {"cardinality_limit": 500}}}))["metrics"]
    assert limit["cardinality_limit"] == 500 and limit["families"][-1].startswith("service-graph")
    own = bridge_config(validated({"config": {"metrics": {"families": ["flow"]}}}))
    assert own["metrics"]["families"] == ["flow"]
    with pytest.raises(Exception, match="serviceGraph"):
        render({"serviceGraph": {"enabled": "yes"}})
