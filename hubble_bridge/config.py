"""The bridge's one typed configuration.

Precedence: command-line flags > environment (OTEL_* and HUBBLE_OTLP_*) > the
YAML file given with --config > defaults. Each component owns its dataclass
(OtlpConfig, MetricsConfig, SpanConfig, LogConfig...); BridgeConfig composes
them and `load_config` resolves the layers, reporting every problem at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import yaml

from hubble_bridge.configload import build_collecting, load_yaml, merge, to_plain, validate_parts
from hubble_bridge.errors import BridgeError, ConfigError
from hubble_bridge.k8s.leader import LeaderElectionConfig
from hubble_bridge.mapping.logs import LogConfig
from hubble_bridge.mapping.metrics import MetricsConfig
from hubble_bridge.mapping.redact import RedactConfig
from hubble_bridge.mapping.spans import SpanConfig
from hubble_bridge.scaleout.config import ScaleOutConfig
from hubble_bridge.sinks.otlp_config import SIGNALS, OtlpConfig, parse_encoded_pairs
from hubble_bridge.tls import ClientTlsOptions

MASK = "***"


@dataclass
class SourceConfig:
    relay: str = ""  # host:port or unix:///path of Hubble Relay or a Hubble server
    files: list[str] = field(default_factory=list)  # exporter files / `hubble observe -o json` output
    follow: bool = False  # files: keep reading as they grow (tail -F)
    tls: ClientTlsOptions = field(default_factory=ClientTlsOptions)
    whitelist: list[Any] = field(default_factory=list)  # protojson FlowFilter objects (OR)
    blacklist: list[Any] = field(default_factory=list)
    since: str = ""  # RFC 3339 time or a duration like "5m" (relay only)
    first: int = 0  # relay: the oldest N flows in Relay's buffer, then stop
    number: int = 0  # relay: the last N flows, then follow
    # relay, and files read once: read the stream (parse the files) in a child process, so reading and
    # mapping run on two cores. "auto": when this process may use two or more CPUs.
    reader_process: Literal["auto", "on", "off"] = "auto"


@dataclass
class ExportConfig:
    traces: bool = True
    metrics: bool = True
    logs: bool = True
    otlp: bool = True  # export over OTLP to otlp.endpoint
    # OTEL_<SIGNAL>_EXPORTER: the signals sent over OTLP (when otlp is true), and those written as
    # OTLP/JSON lines to standard output (`console`)
    otlp_signals: list[str] = field(default_factory=lambda: list(SIGNALS))
    console: list[str] = field(default_factory=list)
    output_file: str = ""  # also write OTLP JSON lines (the Collector file-exporter format)
    flush_interval_s: float = 5.0  # spans and logs (OTEL_BSP_SCHEDULE_DELAY)
    metric_interval_s: float = 15.0  # OTEL_METRIC_EXPORT_INTERVAL
    max_batch: int = 2048  # spans or logs in one export request
    # Source-to-mapping buffer, in batches of 512 events. Full whenever the source outpaces the mapping
    # (Relay is then slowed by flow control): 16 (~9 MB of events) holds 0.2 s at 45k flows/s; 64 cost
    # 50 MB more peak RSS and no throughput (docs/performance.md).
    queue_batches: int = 16
    export_queue: int = 16  # export requests waiting for the exporter
    # When the backend is slow or down and the queues are full: "block" slows the flow stream down (gRPC
    # flow control reaches Relay) and retries each batch for up to retry_max_s; "drop_oldest" keeps the
    # newest data and drops (and counts) the oldest.
    overflow: Literal["block", "drop_oldest"] = "block"
    retry_max_s: float = 300.0  # how long one batch is retried before it is dropped (and counted)
    shutdown_timeout_s: float = 10.0  # SIGTERM: time allowed to flush what is pending


@dataclass
class BridgeConfig:
    service_name: str = "hubble-otlp"  # the bridge's own resource (OTEL_SERVICE_NAME)
    cluster_name: str = ""  # k8s.cluster.name when flows do not carry one
    resource_attributes: dict[str, str] = field(default_factory=dict)  # OTEL_RESOURCE_ATTRIBUTES
    source: SourceConfig = field(default_factory=SourceConfig)
    otlp: OtlpConfig = field(default_factory=OtlpConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    spans: SpanConfig = field(default_factory=SpanConfig)
    logs: LogConfig = field(default_factory=LogConfig)
    redact: RedactConfig = field(default_factory=RedactConfig)
    metrics_listen: str = ""  # host:port for Prometheus /metrics
    health_listen: str = ""  # host:port for /healthz and /readyz
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)  # one exporter of N
    scaleout: ScaleOutConfig = field(default_factory=ScaleOutConfig)  # several streams (docs/scaling.md)
    workers: int = 1  # processes sharing the streams of scaleout.relays / scaleout.peers

    @property
    def scaled_out(self) -> bool:
        return bool(self.scaleout.relays or self.scaleout.peers) or self.workers > 1

    def validate(self) -> None:
        problems: list[str] = []
        if self.source.relay and self.source.files:
            problems.append("source: give either a relay address or files, not both")
        if (self.scaleout.relays or self.scaleout.peers) and (self.source.relay or self.source.files):
            problems.append("source: give one relay, files, or scale-out streams (scaleout.relays/peers)")
        if self.workers < 1:
            problems.append("workers must be at least 1")
        if self.scaled_out:
            try:
                replace(self.scaleout, relays=self.scaleout.relays or [self.source.relay]).validate()
            except ConfigError as exc:
                problems.append(str(exc).removeprefix("invalid configuration: "))
        if self.source.first and self.source.number:
            problems.append("source: first and number exclude each other")
        if self.export.flush_interval_s <= 0 or self.export.metric_interval_s <= 0:
            problems.append("export: intervals must be positive")
        if min(self.export.max_batch, self.export.queue_batches, self.export.export_queue) < 1:
            problems.append("export: max_batch, queue_batches and export_queue must be at least 1")
        if self.export.retry_max_s < 0 or self.export.shutdown_timeout_s < 0:
            problems.append("export: retry_max_s and shutdown_timeout_s must not be negative")
        if not (self.export.otlp or self.export.output_file or self.metrics_listen or self.export.console):
            problems.append(
                "export: nothing to export to (enable otlp, output_file, metrics_listen or console)"
            )
        for key in ("otlp_signals", "console"):
            unknown = [s for s in getattr(self.export, key) if s not in SIGNALS]
            if unknown:
                problems.append(
                    f"export.{key}: {', '.join(map(repr, unknown))} not one of traces, metrics, logs"
                )
        if self.source.since:
            from hubble_bridge.sources.resilient import parse_since

            try:
                parse_since(self.source.since)
            except ConfigError as exc:
                problems.append(str(exc))
        if self.source.whitelist or self.source.blacklist:
            from hubble_bridge.filters import FlowFilterSet, filters_from_json

            try:
                FlowFilterSet(
                    filters_from_json(self.source.whitelist), filters_from_json(self.source.blacklist)
                )
            except BridgeError as exc:
                problems.append(f"source filters: {exc}")
        components: list[Any] = [self.metrics, self.spans, self.logs, self.redact]
        if self.leader_election.enabled:
            components.append(self.leader_election)
        if self.export.otlp:
            components.append(self.otlp)
        validate_parts(components, problems)
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))

    def resolved(self) -> BridgeConfig:
        """Copies shared settings (cluster name, redaction) into the components that use them."""
        spans = replace(self.spans, cluster_name=self.cluster_name, redact=self.redact)
        logs = replace(self.logs, cluster_name=self.cluster_name, redact=self.redact)
        return replace(self, spans=spans, logs=logs)

    def masked_yaml(self) -> str:
        """The effective configuration as YAML, secrets replaced by ***."""
        plain = to_plain(replace(self, otlp=self.otlp.masked()))
        return yaml.safe_dump(plain, sort_keys=False)


def env_layer(environ: Mapping[str, str], errors: list[str] | None = None) -> dict[str, Any]:
    """The non-OTLP environment variables as a config layer (OTLP ones go through OtlpConfig.from_env).

    Problems go to `errors` when given (so they are reported with all others), else raise ConfigError.
    """
    layer: dict[str, Any] = {}
    problems: list[str] = []
    if environ.get("OTEL_SERVICE_NAME"):
        layer["service_name"] = environ["OTEL_SERVICE_NAME"]
    if environ.get("OTEL_RESOURCE_ATTRIBUTES"):
        attrs = parse_encoded_pairs(environ["OTEL_RESOURCE_ATTRIBUTES"], "OTEL_RESOURCE_ATTRIBUTES", problems)
        layer["resource_attributes"] = attrs
        if "service.name" in attrs and "service_name" not in layer:
            layer["service_name"] = attrs["service.name"]
    export: dict[str, Any] = {}
    # Spans and log records share one batcher: where the span (BSP) and log (BLRP) processors' variables
    # both say something, the smaller value holds for both, so neither signal waits or batches more than
    # it was told to.
    for key, variables, scale in (
        ("flush_interval_s", ("OTEL_BSP_SCHEDULE_DELAY", "OTEL_BLRP_SCHEDULE_DELAY"), 1000.0),
        ("metric_interval_s", ("OTEL_METRIC_EXPORT_INTERVAL",), 1000.0),
        ("max_batch", ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"), 0.0),
    ):
        values = []
        for var in variables:
            raw = environ.get(var, "").strip()
            if not raw:
                continue
            try:
                value: float | None = float(raw) / scale if scale else int(raw)
            except ValueError:
                value = None
            # NaN passes every later bound check (and would stop exports silently); infinity waits forever
            if value is None or not math.isfinite(value):
                problems.append(
                    f"{var}: expected {'milliseconds' if scale else 'a whole number'}, got {raw!r}"
                )
                continue
            values.append(value)
        if values:
            export[key] = min(values)
    _exporter_choices(environ, export, layer, problems)
    if export:
        layer["export"] = export
    aggregation = environ.get("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "").strip().lower()
    if aggregation:
        layer["metrics"] = {"histogram_aggregation": aggregation}  # MetricsConfig.validate checks the value
    if environ.get("HUBBLE_OTLP_RELAY"):
        layer["source"] = {"relay": environ["HUBBLE_OTLP_RELAY"]}
    if environ.get("HUBBLE_OTLP_CLUSTER_NAME"):
        layer["cluster_name"] = environ["HUBBLE_OTLP_CLUSTER_NAME"]
    if errors is not None:
        errors.extend(problems)
    elif problems:
        raise ConfigError("invalid environment: " + "; ".join(problems))
    return layer


def _exporter_choices(
    environ: Mapping[str, str], export: dict[str, Any], layer: dict[str, Any], errors: list[str]
) -> None:
    """OTEL_{TRACES,METRICS,LOGS}_EXPORTER, comma-separated lists of `otlp` (the default), `console`,
    `prometheus` (metrics) or `none` alone (the signal is not made at all)."""
    chosen: dict[str, list[str]] = {}
    for signal in SIGNALS:
        var = f"OTEL_{signal.upper()}_EXPORTER"
        names = [n.strip().lower() for n in environ.get(var, "").split(",") if n.strip()]
        allowed = (
            ("otlp", "console", "none", "prometheus") if signal == "metrics" else ("otlp", "console", "none")
        )
        for name in names:
            if name not in allowed:
                errors.append(f"{var}: {name!r} is not an exporter the bridge has (use {', '.join(allowed)})")
        if "none" in names and len(names) > 1:
            errors.append(f"{var}: none cannot be combined with other exporters")
        if names:
            chosen[signal] = names
    if not chosen:
        return
    names_of = {signal: chosen.get(signal, ["otlp"]) for signal in SIGNALS}
    for signal in chosen:
        export[signal] = names_of[signal] != ["none"]
    export["otlp_signals"] = [s for s in SIGNALS if "otlp" in names_of[s]]
    export["console"] = [s for s in SIGNALS if "console" in names_of[s]]
    if not export["otlp_signals"]:
        export["otlp"] = False
    if "prometheus" in names_of["metrics"]:
        # The specification's Prometheus exporter defaults: localhost:9464.
        host = environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "").strip() or "localhost"
        port = environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "").strip() or "9464"
        if not port.isdigit():
            errors.append(f"OTEL_EXPORTER_PROMETHEUS_PORT: expected a port number, got {port!r}")
        layer["metrics_listen"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def load_config(
    flags: dict[str, Any],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    problems: list[str] | None = None,
) -> BridgeConfig:
    """Resolve defaults < file < environment < flags into a validated BridgeConfig.

    Every problem of every layer is collected first and reported once, in one ConfigError: a bad
    environment variable must not hide the file's mistakes. `problems` holds what the caller found
    already (the flags' own syntax).
    """
    environ = os.environ if environ is None else environ
    problems = list(problems or [])
    file_layer: dict[str, Any] = {}
    if config_file:
        try:
            file_layer = load_yaml(config_file)
        except ConfigError as exc:
            problems.append(str(exc))
    data = merge(file_layer, env_layer(environ, problems))
    # OTLP env vars sit between the file and the flags. The file's bad values are reported by this
    # first build (they keep their defaults from here on); the final build repeats the others, and
    # repeats are dropped below.
    without_flags = build_collecting(BridgeConfig, data, problems)
    try:
        otlp = OtlpConfig.from_env(environ, without_flags.otlp)
    except ConfigError as exc:
        problems.append(str(exc).removeprefix("invalid OTLP environment: "))
        otlp = without_flags.otlp
    data["otlp"] = to_plain(otlp)
    data = merge(data, flags)
    config = build_collecting(BridgeConfig, data, problems).resolved()
    try:
        config.validate()
    except ConfigError as exc:
        problems.append(str(exc).removeprefix("invalid configuration: "))
    if problems:
        # The same problem can come from two stages (a per-signal check, a layer seen twice): once each.
        raise ConfigError("invalid configuration: " + "; ".join(dict.fromkeys(problems)))
    return config
