"""OtlpConfig: the standard OTEL_EXPORTER_OTLP_* variables, endpoint rules, validation and masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubble_bridge.configload import build, to_plain
from hubble_bridge.errors import ConfigError
from hubble_bridge.sinks.otlp_config import OtlpConfig, SignalOverrides

P = "OTEL_EXPORTER_OTLP_"


def resolved(env: dict[str, str], signal: str) -> dict[str, object]:
    s = OtlpConfig.from_env(env).settings(signal)  # type: ignore[arg-type]
    return {
        "protocol": s.protocol, "url": s.url, "target": s.target, "tls": s.tls,
        "headers": s.headers, "gzip": s.gzip, "timeout_s": s.timeout_s,
    }  # fmt: skip


ENV_TABLE = [
    # (environment, signal, expected subset of the resolved settings)
    ({}, "traces", {"protocol": "grpc", "target": "localhost:4317", "tls": False, "gzip": True}),
    ({}, "logs", {"url": "http://localhost:4317", "headers": {}, "timeout_s": 10.0}),
    ({P + "PROTOCOL": "http/protobuf"}, "metrics", {"url": "http://localhost:4318/v1/metrics"}),
    (
        {P + "PROTOCOL": "http/protobuf", P + "ENDPOINT": "https://otel.example.com:4318/"},
        "logs",
        {"url": "https://otel.example.com:4318/v1/logs", "tls": True, "target": "otel.example.com:4318"},
    ),
    (
        {P + "PROTOCOL": "http/protobuf", P + "ENDPOINT": "http://c:4318/base"},
        "traces",
        {"url": "http://c:4318/base/v1/traces"},
    ),
    (  # a signal-specific endpoint is used as is
        {P + "PROTOCOL": "http/protobuf", P + "TRACES_ENDPOINT": "http://c:9999/custom"},
        "traces",
        {"url": "http://c:9999/custom"},
    ),
    (
        {P + "PROTOCOL": "http/protobuf", P + "TRACES_ENDPOINT": "http://c:9999/custom"},
        "metrics",
        {"url": "http://localhost:4318/v1/metrics"},
    ),
    ({P + "ENDPOINT": "collector:4317"}, "traces", {"target": "collector:4317", "tls": True}),
    ({P + "ENDPOINT": "collector:4317", P + "INSECURE": "TRUE"}, "traces", {"tls": False}),
    ({P + "ENDPOINT": "collector:4317", P + "LOGS_INSECURE": "true"}, "logs", {"tls": False}),
    ({P + "ENDPOINT": "collector:4317", P + "LOGS_INSECURE": "true"}, "traces", {"tls": True}),
    ({P + "ENDPOINT": "https://[::1]:4317"}, "traces", {"target": "[::1]:4317", "tls": True}),
    ({P + "ENDPOINT": "https://collector"}, "traces", {"target": "collector:443"}),
    (
        {P + "HEADERS": "api-key=se%3Dcr%2Cet, x-tenant = team%20a ,,"},
        "traces",
        {"headers": {"api-key": "se=cr,et", "x-tenant": "team a"}},
    ),
    (  # per-signal headers replace the general ones
        {P + "HEADERS": "a=1", P + "METRICS_HEADERS": "b=2"},
        "metrics",
        {"headers": {"b": "2"}},
    ),
    ({P + "HEADERS": "a=1", P + "METRICS_HEADERS": "b=2"}, "logs", {"headers": {"a": "1"}}),
    ({P + "TIMEOUT": "2500"}, "traces", {"timeout_s": 2.5}),
    ({P + "TIMEOUT": "2500", P + "TRACES_TIMEOUT": "500"}, "traces", {"timeout_s": 0.5}),
    ({P + "TIMEOUT": "2500", P + "TRACES_TIMEOUT": "500"}, "logs", {"timeout_s": 2.5}),
    ({P + "COMPRESSION": "none"}, "traces", {"gzip": False}),
    ({P + "COMPRESSION": "none", P + "LOGS_COMPRESSION": "gzip"}, "logs", {"gzip": True}),
    (
        {P + "TRACES_PROTOCOL": "http/protobuf", P + "ENDPOINT": "http://c:4318"},
        "traces",
        {"protocol": "http/protobuf", "url": "http://c:4318/v1/traces"},
    ),
    ({P + "TRACES_PROTOCOL": "http/protobuf"}, "metrics", {"protocol": "grpc"}),
    ({P + "ENDPOINT": "", P + "TIMEOUT": " "}, "traces", {"target": "localhost:4317", "timeout_s": 10.0}),
]


@pytest.mark.parametrize(("env", "signal", "expected"), ENV_TABLE)
def test_environment_variables(env: dict[str, str], signal: str, expected: dict[str, object]) -> None:
    got = resolved(env, signal)
    assert {k: got[k] for k in expected} == expected


def test_tls_files_from_the_environment(tmp_path: Path) -> None:
    for name in ("ca.pem", "crt.pem", "key.pem", "other-ca.pem"):
        (tmp_path / name).write_text("x")
    env = {
        P + "ENDPOINT": "https://collector:4317",
        P + "CERTIFICATE": str(tmp_path / "ca.pem"),
        P + "CLIENT_CERTIFICATE": str(tmp_path / "crt.pem"),
        P + "CLIENT_KEY": str(tmp_path / "key.pem"),
        P + "LOGS_CERTIFICATE": str(tmp_path / "other-ca.pem"),
    }
    config = OtlpConfig.from_env(env)
    config.validate()
    traces, logs = config.settings("traces"), config.settings("logs")
    assert (traces.ca_file, traces.cert_file, traces.key_file) == (
        str(tmp_path / "ca.pem"), str(tmp_path / "crt.pem"), str(tmp_path / "key.pem")
    )  # fmt: skip
    assert logs.ca_file == str(tmp_path / "other-ca.pem")


def test_environment_overrides_the_base_and_keeps_what_it_does_not_set() -> None:
    base = OtlpConfig(endpoint="http://from-file:4317", headers={"a": "1"}, traces_endpoint="http://t:1")
    config = OtlpConfig.from_env({P + "TIMEOUT": "3000"}, base)
    assert (config.endpoint, config.headers, config.traces_endpoint, config.timeout_s) == (
        "http://from-file:4317", {"a": "1"}, "http://t:1", 3.0
    )  # fmt: skip
    assert OtlpConfig.from_env({P + "ENDPOINT": "http://env:4317"}, base).endpoint == "http://env:4317"
    assert base.timeout_s == 10.0  # the base is not modified


def test_every_bad_variable_is_reported_at_once() -> None:
    env = {P + "INSECURE": "maybe", P + "TRACES_TIMEOUT": "soon", P + "HEADERS": "novalue,ok=1"}
    with pytest.raises(ConfigError) as err:
        OtlpConfig.from_env(env)
    message = str(err.value)
    assert "OTEL_EXPORTER_OTLP_INSECURE: expected true or false, got 'maybe'" in message
    assert "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: expected milliseconds, got 'soon'" in message
    assert "OTEL_EXPORTER_OTLP_HEADERS: item 1 is not key=value" in message
    assert "novalue" not in message  # a malformed header may be a credential: never repeated
    assert "\n" not in message


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "crt.pem").write_text("x")
    config = OtlpConfig(
        endpoint="https://collector:4317",
        insecure=True,
        cert_file=str(tmp_path / "crt.pem"),
        timeout_s=0,
        logs_endpoint="http://collector:4317",
        logs=SignalOverrides(ca_file=str(tmp_path / "missing.pem")),
        headers={"bad\nname": "x"},
    )
    with pytest.raises(ConfigError) as err:
        config.validate()
    message = str(err.value)
    for problem in (
        "otlp.endpoint: insecure is true but https://collector:4317 uses https://",
        "cert_file and key_file must be given together",
        "must be positive",
        "otlp.logs_endpoint: certificates are configured but http://collector:4317 is plaintext",
        "otlp.ca_file: " + str(tmp_path / "missing.pem") + " is not a readable file",
        "is not a valid header",
    ):
        assert problem in message
    assert message.count("cert_file and key_file") == 1  # reported once, not once per signal


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (OtlpConfig(protocol="http/json"), "otlp.protocol: 'http/json' is not supported"),  # type: ignore[arg-type]
        (OtlpConfig(protocol="http/protobuf", endpoint="c:4318"), "needs an http:// or https:// scheme"),
        (OtlpConfig(endpoint="ftp://collector"), "must use http:// or https://"),
        (OtlpConfig(endpoint="http://collector:99999"), "has an invalid port"),
        (OtlpConfig(endpoint="http://:4317"), "has no host"),
        (OtlpConfig(endpoint="http://c:4317", insecure=False), "insecure is false but http://c:4317"),
        (OtlpConfig(compression="brotli"), "'brotli' is not gzip or none"),  # type: ignore[arg-type]
    ],
)
def test_invalid_settings(config: OtlpConfig, problem: str) -> None:
    with pytest.raises(ConfigError, match="invalid OTLP configuration") as err:
        config.validate()
    assert problem in str(err.value)


def test_masked_hides_header_values_and_url_passwords() -> None:
    config = OtlpConfig(
        endpoint="https://user:s3cret@collector:4317",
        headers={"authorization": "Bearer abc", "x-tenant": "t1"},
        metrics=SignalOverrides(headers={"api-key": "k"}),
    )
    masked = config.masked()
    assert masked.headers == {"authorization": "***", "x-tenant": "***"}
    assert masked.metrics.headers == {"api-key": "***"}
    assert masked.endpoint == "https://user:***@collector:4317"
    assert "s3cret" not in repr(masked) and "Bearer" not in repr(masked)
    assert config.headers["authorization"] == "Bearer abc"  # the original is untouched


def test_round_trips_through_the_config_loader() -> None:
    config = OtlpConfig.from_env(
        {P + "ENDPOINT": "collector:4317", P + "INSECURE": "true", P + "LOGS_TIMEOUT": "1500"}
    )
    assert build(OtlpConfig, to_plain(config)) == config
