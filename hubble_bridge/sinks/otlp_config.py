"""OTLP exporter configuration: one dataclass, the standard OTEL_EXPORTER_OTLP_* variables, validation.

Endpoint rules follow the OpenTelemetry exporter specification: for
http/protobuf the general endpoint is a base URL that gets /v1/<signal>
appended, while a per-signal endpoint is used as is; gRPC endpoints name a
host and port. The scheme decides transport security (https:// -> TLS,
http:// -> plaintext); a bare gRPC host:port uses TLS unless `insecure` is set.
Settings that contradict the scheme are errors, so nothing silently downgrades.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import unquote, urlsplit

from hubble_bridge.configload import parse_key_values
from hubble_bridge.errors import ConfigError
from hubble_bridge.sinks.otlp_temporality import TEMPORALITIES, Temporality

Signal = Literal["traces", "metrics", "logs"]
SIGNALS: tuple[Signal, ...] = ("traces", "metrics", "logs")
PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"
MASK = "***"


@dataclass
class SignalOverrides:
    """OTEL_EXPORTER_OTLP_<SIGNAL>_* settings; empty or None inherits the general setting."""

    protocol: Literal["", "grpc", "http/protobuf"] = ""
    headers: dict[str, str] = field(default_factory=dict)  # replaces (not merges) the general headers
    insecure: bool | None = None
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    compression: Literal["", "gzip", "none"] = ""
    timeout_s: float | None = None


@dataclass(frozen=True)
class SignalSettings:
    """The effective settings of one signal, resolved from OtlpConfig."""

    signal: Signal
    protocol: str
    url: str  # http/protobuf: the full URL to POST to; grpc: the endpoint as configured
    target: str  # host:port (IPv6 in brackets)
    tls: bool
    headers: dict[str, str]
    ca_file: str
    cert_file: str
    key_file: str
    gzip: bool
    timeout_s: float


@dataclass
class OtlpConfig:
    endpoint: str = DEFAULT_GRPC_ENDPOINT  # http/protobuf with this default means http://localhost:4318
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    headers: dict[str, str] = field(default_factory=dict)
    insecure: bool | None = None  # only for a gRPC endpoint without scheme
    ca_file: str = ""  # PEM roots to verify the server (default: the system's)
    cert_file: str = ""  # PEM client certificate for mTLS
    key_file: str = ""
    compression: Literal["gzip", "none"] = "gzip"
    timeout_s: float = 10.0  # one export, retries included
    traces_endpoint: str = ""  # used as is
    metrics_endpoint: str = ""
    logs_endpoint: str = ""
    traces: SignalOverrides = field(default_factory=SignalOverrides)
    metrics: SignalOverrides = field(default_factory=SignalOverrides)
    logs: SignalOverrides = field(default_factory=SignalOverrides)
    # OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: cumulative, delta or lowmemory (otlp_temporality)
    metrics_temporality: Temporality = "cumulative"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], base: OtlpConfig | None = None) -> OtlpConfig:
        """`base` overridden by every OTEL_EXPORTER_OTLP_* variable set (an empty value counts as unset)."""
        base = base or cls()
        errors: list[str] = []
        changes = _read_env(environ, "OTEL_EXPORTER_OTLP_", errors)
        for signal in SIGNALS:
            values = _read_env(environ, f"OTEL_EXPORTER_OTLP_{signal.upper()}_", errors)
            if "endpoint" in values:
                changes[f"{signal}_endpoint"] = values.pop("endpoint")
            if values:
                changes[signal] = replace(getattr(base, signal), **values)
        # The batch processors' and the metric reader's export timeouts bound the same export as the
        # exporter's own timeout: the smaller one holds.
        for signal, var in _PROCESSOR_TIMEOUTS.items():
            raw = environ.get(var, "").strip()
            if not raw:
                continue
            try:
                limit = float(raw) / 1000.0
            except ValueError:
                errors.append(f"{var}: expected milliseconds, got {raw!r}")
                continue
            if limit <= 0:
                continue  # 0: no limit of its own
            over = changes.get(signal, getattr(base, signal))
            assert isinstance(over, SignalOverrides)
            general = changes.get("timeout_s", base.timeout_s)
            current = over.timeout_s if over.timeout_s is not None else general
            if not isinstance(current, (int, float)) or limit < current:
                changes[signal] = replace(over, timeout_s=limit)
        temporality = environ.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "").strip().lower()
        if temporality:
            changes["metrics_temporality"] = temporality
        if errors:
            raise ConfigError("invalid OTLP environment: " + "; ".join(errors))
        return replace(base, **changes)

    def settings(self, signal: Signal) -> SignalSettings:
        """Resolved settings for one signal; raises ConfigError when they do not make sense."""
        problems: list[str] = []
        result = self._resolve(signal, problems)
        if result is None or problems:
            raise ConfigError(f"invalid OTLP configuration: {'; '.join(problems)}")
        return result

    def validate(self) -> None:
        """Report every problem at once (ConfigError); no side effects beyond looking at files."""
        problems: list[str] = []
        if self.protocol not in PROTOCOLS:
            problems.append(f"otlp.protocol: {self.protocol!r} is not supported (use grpc or http/protobuf)")
        if self.compression not in ("gzip", "none"):
            problems.append(f"otlp.compression: {self.compression!r} is not gzip or none")
        if self.metrics_temporality not in TEMPORALITIES:
            problems.append(
                f"otlp.metrics_temporality (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE): "
                f"{self.metrics_temporality!r} is not cumulative, delta or lowmemory"
            )
        for signal in SIGNALS:
            self._resolve(signal, problems)
        if problems:
            # Per-signal resolution repeats general problems once per signal; keep each once, in order.
            raise ConfigError("invalid OTLP configuration: " + "; ".join(dict.fromkeys(problems)))

    def masked(self) -> OtlpConfig:
        """A copy safe to print: header values and URL passwords replaced by ***."""
        changes: dict[str, object] = {
            "headers": dict.fromkeys(self.headers, MASK),
            "endpoint": _mask_url(self.endpoint),
        }
        for signal in SIGNALS:
            changes[f"{signal}_endpoint"] = _mask_url(getattr(self, f"{signal}_endpoint"))
            over: SignalOverrides = getattr(self, signal)
            changes[signal] = replace(over, headers=dict.fromkeys(over.headers, MASK))
        return replace(self, **changes)  # type: ignore[arg-type]

    def _resolve(self, signal: Signal, problems: list[str]) -> SignalSettings | None:
        over: SignalOverrides = getattr(self, signal)
        protocol = over.protocol or self.protocol
        if protocol not in PROTOCOLS:
            where = f"otlp.{signal}.protocol" if over.protocol else "otlp.protocol"
            problems.append(f"{where}: {protocol!r} is not supported (use grpc or http/protobuf)")
            return None
        specific = getattr(self, f"{signal}_endpoint")
        where = f"otlp.{signal}_endpoint" if specific else "otlp.endpoint"
        url = specific or self.endpoint
        if protocol == "http/protobuf" and not specific:
            base = DEFAULT_HTTP_ENDPOINT if url == DEFAULT_GRPC_ENDPOINT else url
            url = base.rstrip("/") + f"/v1/{signal}"
        insecure = over.insecure if over.insecure is not None else self.insecure
        ca_file = over.ca_file or self.ca_file
        cert_file = over.cert_file or self.cert_file
        key_file = over.key_file or self.key_file
        timeout_s = over.timeout_s if over.timeout_s is not None else self.timeout_s
        headers = over.headers or self.headers
        before = len(problems)
        scheme, target = _split_endpoint(url, protocol, where, problems)
        if scheme == "https" and insecure:
            problems.append(f"{where}: insecure is true but {url} uses https://")
        if scheme == "http" and insecure is False:
            problems.append(f"{where}: insecure is false but {url} uses plaintext http://; use https://")
        tls = scheme == "https" or (scheme == "" and not insecure)
        if not tls and (ca_file or cert_file or key_file):
            problems.append(f"{where}: certificates are configured but {url} is plaintext; use https://")
        if bool(cert_file) != bool(key_file):
            problems.append("otlp: cert_file and key_file must be given together (mTLS)")
        for name, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
            if path and not os.path.isfile(path):
                problems.append(f"otlp.{name}: {path} is not a readable file")
        if timeout_s is None or timeout_s <= 0:
            problems.append(f"otlp timeout for {signal}: must be positive, got {timeout_s}")
        for key, value in headers.items():
            if not key.strip() or any(c in key + value for c in "\r\n"):
                problems.append(f"otlp headers: {key!r} is not a valid header")
        if len(problems) > before:
            return None
        return SignalSettings(
            signal=signal,
            protocol=protocol,
            url=url,
            target=target,
            tls=tls,
            headers=dict(headers),
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            gzip=(over.compression or self.compression) == "gzip",
            timeout_s=float(timeout_s),  # type: ignore[arg-type]
        )


def _split_endpoint(url: str, protocol: str, where: str, problems: list[str]) -> tuple[str, str]:
    """(scheme, host:port) of an endpoint; scheme "" for a bare gRPC host:port."""
    has_scheme = "://" in url
    if not has_scheme and protocol != "grpc":
        problems.append(f"{where}: {url!r} needs an http:// or https:// scheme")
        return "", ""
    parts = urlsplit(url if has_scheme else "//" + url)
    scheme = parts.scheme.lower()
    if has_scheme and scheme not in ("http", "https"):
        problems.append(f"{where}: {url!r} must use http:// or https://")
        return "", ""
    try:
        port = parts.port
    except ValueError:
        problems.append(f"{where}: {url!r} has an invalid port")
        return scheme, ""
    host = parts.hostname or ""
    if not host:
        problems.append(f"{where}: {url!r} has no host")
        return scheme, ""
    if port is None:
        port = 443 if scheme == "https" else 80 if scheme == "http" else 4317
    return scheme, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_ENV_FIELDS = {
    "ENDPOINT": "endpoint",
    "PROTOCOL": "protocol",
    "HEADERS": "headers",
    "INSECURE": "insecure",
    "CERTIFICATE": "ca_file",
    "CLIENT_CERTIFICATE": "cert_file",
    "CLIENT_KEY": "key_file",
    "COMPRESSION": "compression",
    "TIMEOUT": "timeout_s",
}


_PROCESSOR_TIMEOUTS: dict[Signal, str] = {
    "traces": "OTEL_BSP_EXPORT_TIMEOUT",
    "metrics": "OTEL_METRIC_EXPORT_TIMEOUT",
    "logs": "OTEL_BLRP_EXPORT_TIMEOUT",
}


def _read_env(environ: Mapping[str, str], prefix: str, errors: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for suffix, name in _ENV_FIELDS.items():
        var = prefix + suffix
        raw = environ.get(var, "").strip()
        if not raw:
            continue
        if name == "headers":
            out[name] = parse_encoded_pairs(raw, var, errors)
        elif name == "insecure":
            if raw.lower() not in ("true", "false"):
                errors.append(f"{var}: expected true or false, got {raw!r}")
            out[name] = raw.lower() == "true"
        elif name == "timeout_s":
            try:
                millis = float(raw)
            except ValueError:
                millis = math.nan
            if math.isfinite(millis):  # NaN would pass every later bound check and never export
                out[name] = millis / 1000.0
            else:
                errors.append(f"{var}: expected milliseconds, got {raw!r}")
        else:
            out[name] = raw.lower() if name in ("protocol", "compression") else raw
    return out


def parse_encoded_pairs(text: str, where: str, errors: list[str]) -> dict[str, str]:
    """`k=v,k2=v2` with URL-encoded keys and values: OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES."""
    return {unquote(key): unquote(value) for key, value in parse_key_values(text, where, errors).items()}


def mask_url(url: str) -> str:
    """The URL safe to print or log: a password and every query value become ***."""
    parts = urlsplit(url) if "://" in url else None
    if parts is None or (parts.password is None and not parts.query):
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    query = "&".join(f"{item.partition('=')[0]}={MASK}" for item in parts.query.split("&") if item)
    return parts._replace(netloc=netloc, query=query).geturl()


_mask_url = mask_url
