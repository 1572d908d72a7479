"""One typed configuration: flags > environment > file > defaults, strict keys, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubble_bridge.config import load_config
from hubble_bridge.errors import ConfigError


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    config = load_config({"source": {"relay": "127.0.0.1:4245"}}, environ={})
    assert config.service_name == "hubble-otlp"
    assert config.export.flush_interval_s == 5.0
    assert config.otlp.endpoint == "http://localhost:4317"
    assert config.redact.enabled


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "service_name: from-file\ncluster_name: file-cluster\nsource:\n  relay: file:4245\n"
        "otlp:\n  endpoint: http://file:4317\nexport:\n  flush_interval_s: 9\n",
    )
    env = {
        "OTEL_SERVICE_NAME": "from-env",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4317",
        "OTEL_BSP_SCHEDULE_DELAY": "2500",
        "OTEL_METRIC_EXPORT_INTERVAL": "30000",
    }
    config = load_config({"otlp": {"endpoint": "http://flag:4317"}}, path, environ=env)
    assert config.otlp.endpoint == "http://flag:4317"  # flag beats env and file
    assert config.service_name == "from-env"  # env beats file
    assert config.cluster_name == "file-cluster"  # file beats default
    assert config.source.relay == "file:4245"
    assert config.export.flush_interval_s == 2.5
    assert config.export.metric_interval_s == 30.0
    # shared settings reach the components that use them
    assert config.spans.cluster_name == "file-cluster" and config.logs.cluster_name == "file-cluster"


def test_unknown_keys_and_bad_values_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "sourc:\n  relay: x\nexport:\n  flush_interval_s: soon\n  traces: maybe\n")
    with pytest.raises(ConfigError) as err:
        load_config({}, path, environ={})
    message = str(err.value)
    assert "sourc: unknown key" in message
    assert "export.flush_interval_s: expected a number, got 'soon'" in message
    assert "export.traces: expected true or false" in message


def test_broken_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n  relay: [unclosed\n")
    with pytest.raises(ConfigError, match=r"invalid YAML in .*config.yaml:\d+"):
        load_config({}, path, environ={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file /nonexistent\.yaml"):
        load_config({}, "/nonexistent.yaml", environ={})


def test_secrets_masked_in_printed_config() -> None:
    config = load_config(
        {"source": {"relay": "r:4245"}, "otlp": {"headers": {"authorization": "Bearer s3cr3t"}}},
        environ={"OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc123"},
    )
    assert config.otlp.headers["authorization"] == "Bearer s3cr3t"
    text = config.masked_yaml()
    assert "s3cr3t" not in text and "abc123" not in text
    assert "authorization" in text


def test_nothing_to_export_is_rejected() -> None:
    with pytest.raises(ConfigError, match="nothing to export"):
        load_config({"source": {"relay": "r:1"}, "export": {"otlp": False}}, environ={})
