"""The demo stacks: the docker-compose file and its configs, and the kind demo.

No Docker engine runs here, so nothing is started: the compose file is validated against the
compose-spec schema with check-jsonschema (offline, its vendored copy), and every part is
checked against what it plugs into - the commands against the real hubble-otlp command line,
the bridge's config against its loader, the Collector's pipelines against its components,
Prometheus' config with promtool, and the Grafana dashboard's queries against the metric and
label names the bridge really produces from generated flows. The kind demo's manifests are
validated strictly against a current Kubernetes schema and the script with shellcheck.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from hubble_bridge.cli import build_parser
from hubble_bridge.config import load_config
from hubble_bridge.generator import generate_responses
from hubble_bridge.mapping.metrics.aggregator import MetricsAggregator
from hubble_bridge.sinks.prometheus import label_name, prometheus_name
from hubble_bridge.telemetry import MetricKind

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yaml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hubble-otlp.json"
PROMQL_WORDS = {"sum", "rate", "topk", "histogram_quantile", "by", "le"}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_matches_the_compose_spec(tmp_path: Path) -> None:
    result = check_jsonschema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The same check on a broken copy fails, so the pass above means something.
    broken = compose()
    broken["services"]["bridge"]["restart_policy"] = "always"
    bad = tmp_path / "docker-compose.yaml"
    bad.write_text(yaml.safe_dump(broken))
    assert check_jsonschema(bad).returncode != 0


def test_images_are_pinned_and_bind_mounts_exist() -> None:
    services = compose()["services"]
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
    built = [s for s in services.values() if "build" in s]
    assert [s["build"] for s in built] == [{"context": "..", "target": "bridge"}]
    assert (DEPLOY / ".." / "Dockerfile").is_file()
    own = {n for n, s in services.items() if s["image"] == built[0]["image"]}
    assert own == {"flowgen", "replay", "bridge"}
    assert all(services[n]["profiles"] == ["no-cluster"] for n in own)
    assert not any("profiles" in services[n] for n in set(services) - own)  # backends start by default


def test_no_cluster_profile_commands_fit_together() -> None:
    services = compose()["services"]
    parser = build_parser()
    gen = parser.parse_args(services["flowgen"]["command"])
    replay = parser.parse_args(services["replay"]["command"])
    bridge = parser.parse_args(services["bridge"]["command"])
    assert gen.command == "generate" and replay.command == "replay" and bridge.command == "bridge"
    assert replay.files == [gen.output] and replay.loop
    host, _, port = bridge.relay[0].rpartition(":")
    assert host == "replay" and replay.listen.endswith(":" + port)
    assert services["replay"]["depends_on"]["flowgen"]["condition"] == "service_completed_successfully"

    environ = services["bridge"]["environment"]
    endpoint = urlsplit(environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (
        endpoint.hostname == "otel-collector"
        and f"{endpoint.port}:{endpoint.port}" in services["otel-collector"]["ports"]
    )
    config_mount = next(v for v in services["bridge"]["volumes"] if v.endswith(":" + bridge.config + ":ro"))
    flags = {
        "source": {"relay": bridge.relay[0]},
        "metrics_listen": bridge.metrics_listen,
        "health_listen": bridge.health_listen,
    }
    config = load_config(flags, str(DEPLOY / config_mount.split(":")[0]), environ=environ)
    assert config.otlp.endpoint == "http://otel-collector:4317"
    assert config.resource_attributes["service.instance.id"] == "compose-bridge"
    assert config.health_listen.endswith(":8080")
    assert "8080/healthz" in " ".join(services["bridge"]["healthcheck"]["test"])


def collector_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    service = config["service"]
    for pipeline, spec in service["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in spec.get(kind, []):
                if component not in config.get(kind, {}):
                    problems.append(f"{pipeline}: {kind[:-1]} {component} is not defined")
    for extension in service.get("extensions", []):
        if extension not in config.get("extensions", {}):
            problems.append(f"extension {extension} is not defined")
    return problems


def test_collector_prometheus_and_grafana_point_at_each_other() -> None:
    services = compose()["services"]
    collector = yaml.safe_load((DEPLOY / "otel-collector" / "config.yaml").read_text())
    assert collector_problems(collector) == []
    assert set(collector["service"]["pipelines"]) == {"traces", "metrics", "logs"}
    jaeger = collector["exporters"]["otlp/jaeger"]["endpoint"]
    assert jaeger.split(":")[0] in services
    metrics_port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]

    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"otel-collector:{metrics_port}"]  # the bridge itself is not scraped: no double count

    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text()
    )["datasources"]
    for source in datasources:
        url = urlsplit(source["url"])
        assert url.hostname in services, source["url"]
        published = {p.split(":")[0] for p in services[url.hostname].get("ports", [])}
        assert str(url.port) in published
    uids = {d["uid"] for d in datasources}
    exemplar_links = datasources[0]["jsonData"]["exemplarTraceIdDestinations"]
    assert {link["datasourceUid"] for link in exemplar_links} <= uids
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml").read_text()
    )["providers"]
    mounted = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert providers[0]["options"]["path"] in mounted


@pytest.mark.prerequisite(
    None if shutil.which("promtool") else "promtool (Debian package prometheus) is not installed"
)
def test_prometheus_config_passes_promtool() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def produced_metrics() -> dict[str, set[str]]:
    """Prometheus metric name -> label names, from the demo's bridge config on generated flows."""
    config = load_config(
        {"source": {"relay": "replay:4245"}}, str(DEPLOY / "bridge" / "config.yaml"), environ={}
    )
    aggregator = MetricsAggregator(config.metrics, start_time_ns=time.time_ns())
    for response in generate_responses(20_000, seed=7):
        aggregator.process(response)
    names: dict[str, set[str]] = {}
    for family in aggregator.snapshot():
        labels = {label_name(k) for point in family.points for k, _ in point.attributes}
        base = prometheus_name(family)
        if family.kind is MetricKind.HISTOGRAM:
            for suffix in ("_bucket", "_sum", "_count"):
                names[base + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        else:
            names[base] = labels
    return names


def test_dashboard_queries_use_metrics_and_labels_the_bridge_produces() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    produced = produced_metrics()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert len(panels) >= 15
    used: set[str] = set()
    for panel in panels:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            expr = target["expr"]
            metrics = set(re.findall(r"\b((?:hubble|http|traces)_[a-z_]+)\s*[{[]", expr))
            assert metrics, (panel["title"], expr)
            unknown = metrics - set(produced)
            assert not unknown, f"{panel['title']}: the bridge does not produce {unknown}"
            # Labels the query makes: label_replace(v, "dst", "repl", ...), label_join(v, "dst", "sep", ...).
            created = set(re.findall(r'"([a-z_]+)",\s*"[^"]*",\s*"', expr))
            available = set().union(*(produced[m] for m in metrics)) | created
            grouped = {x.strip() for group in re.findall(r"by \(([^)]*)\)", expr) for x in group.split(",")}
            matched = set(re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"", expr))
            missing = (grouped | matched) - available - PROMQL_WORDS
            assert not missing, f"{panel['title']}: no label {missing} on {metrics}"
            for legend in re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]):
                assert legend in grouped, f"{panel['title']}: legend {legend} is not grouped by"
            used |= metrics
    # Every Hubble counter the demo produces has a panel (response types aside).
    counters = {
        n for n in produced if n.startswith("hubble_") and not n.endswith(("_bucket", "_sum", "_count"))
    }
    assert counters - used <= {"hubble_dns_response_types_total"}


# ---- the kind demo ----------------------------------------------------------------------------


def kind_manifests(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kind" / name).read_text()) if d]


def test_kind_demo_manifests_validate_strictly() -> None:
    version = kubernetes_validate.latest_version()
    for name in ("otel-collector.yaml", "demo-app.yaml"):
        for manifest in kind_manifests(name):
            if manifest["apiVersion"] == "cilium.io/v2":
                continue  # a Cilium CRD, checked below
            kubernetes_validate.validate(manifest, version, strict=True)


def test_kind_demo_pieces_fit_together() -> None:
    kind = yaml.safe_load((DEPLOY / "kind" / "kind-config.yaml").read_text())
    assert kind["networking"]["disableDefaultCNI"] is True  # Cilium is the CNI
    cilium = yaml.safe_load((DEPLOY / "kind" / "cilium-values.yaml").read_text())
    assert cilium["hubble"]["enabled"] and cilium["hubble"]["relay"]["enabled"]

    # The chart's default OTLP endpoint is the demo Collector's Service.
    values = yaml.safe_load((REPO / "helm" / "hubble-otlp" / "values.yaml").read_text())
    endpoint = urlsplit(values["otlp"]["endpoint"])
    collector = {(m["kind"], m["metadata"]["name"]): m for m in kind_manifests("otel-collector.yaml")}
    service = collector[("Service", "opentelemetry-collector")]
    assert (
        endpoint.hostname == f"opentelemetry-collector.{service['metadata']['namespace']}.svc.cluster.local"
    )
    assert endpoint.port in {p["port"] for p in service["spec"]["ports"]}
    config = yaml.safe_load(collector[("ConfigMap", "opentelemetry-collector")]["data"]["config.yaml"])
    assert collector_problems(config) == []

    app = {(m["kind"], m["metadata"]["name"]): m for m in kind_manifests("demo-app.yaml")}
    policy = app[("CiliumNetworkPolicy", "client-egress")]["spec"]
    client_labels = app[("Deployment", "client")]["spec"]["template"]["metadata"]["labels"]
    assert policy["endpointSelector"]["matchLabels"].items() <= client_labels.items()
    http_rule = next(r for r in policy["egress"] if "http" in r["toPorts"][0].get("rules", {}))
    echo_labels = app[("Deployment", "echo")]["spec"]["template"]["metadata"]["labels"]
    assert http_rule["toEndpoints"][0]["matchLabels"].items() <= echo_labels.items()
    assert http_rule["toPorts"][0]["ports"][0]["port"] == str(
        app[("Service", "echo")]["spec"]["ports"][0]["port"]
    )
    assert any("dns" in r["toPorts"][0].get("rules", {}) for r in policy["egress"])

    script = (REPO / "scripts" / "kind-demo.sh").read_text()
    for path in set(re.findall(r"(?:deploy|helm)/[\w./-]+", script)):
        assert (REPO / path).exists(), f"kind-demo.sh refers to missing {path}"


@pytest.mark.prerequisite(
    None if shutil.which("shellcheck") else "shellcheck (Debian package) is not installed"
)
def test_shell_scripts_pass_shellcheck() -> None:
    scripts = [REPO / "scripts" / "kind-demo.sh", *DEPLOY.rglob("*.sh")]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
