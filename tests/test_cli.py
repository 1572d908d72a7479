"""The CLI as a user meets it: help everywhere, and one clear line (no traceback) for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubble_bridge import __version__
from hubble_bridge.cli import build_parser
from tests.conftest import SHARED_FLOWS, run_cli

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"hubble-otlp {__version__}"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_on_every_subcommand(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert f"usage: hubble-otlp {command}" in result.stdout


def one_line_error(result, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("hubble-otlp: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_check_unreachable_address() -> None:
    one_line_error(run_cli("check", "--relay", "127.0.0.1:1"), "127.0.0.1:1")


def test_check_malformed_address() -> None:
    one_line_error(run_cli("check", "--relay", "not an address:xx"), "not an address:xx")


def test_missing_tls_file() -> None:
    one_line_error(
        run_cli("check", "--relay", "127.0.0.1:1", "--tls-ca-cert-files", "/nonexistent/ca.pem"),
        "/nonexistent/ca.pem",
    )


def test_unreadable_flow_file(tmp_path: Path) -> None:
    one_line_error(
        run_cli("convert", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o")), "missing.jsonl"
    )


def test_bad_lines_are_named_skipped_and_counted(tmp_path: Path) -> None:
    good = (SHARED_FLOWS / "kind-drops-2.jsonl").read_text().splitlines()
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([good[0], "{not json", '{"flow":{"verdict":"MAYBE"}}', good[1]]) + "\n")
    result = run_cli("convert", str(path), "-o", str(tmp_path / "out.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}:2: invalid JSON" in result.stderr
    assert f"{path}:3: invalid value in field flow.verdict" in result.stderr
    assert "MAYBE" not in result.stderr  # the field is named, its value never repeated
    assert "converted 2 events" in result.stderr and "2 invalid line(s) skipped" in result.stderr


def test_bridge_needs_a_source() -> None:
    one_line_error(run_cli("bridge", "--no-otlp", "--output", "/tmp/x"), "--relay")


def test_bad_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("export:\n  flush_interval_s: soon\n")
    one_line_error(run_cli("bridge", "--relay", "x:1", "--config", str(path)), "export.flush_interval_s")


def test_bad_filter_json() -> None:
    one_line_error(run_cli("bridge", "--relay", "x:1", "--allow", "{oops", "--print-config"), "--allow")


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        # RE2, as Hubble's Go regexp: lookbehind is refused (pkg/hubble/filters/http.go compiles with regexp).
        ("--allow", '{"http_path": ["(?<=/api)/v1"]}', "RE2 syntax"),
        ("--deny", '{"experimental": {"cel_expression": ["_flow.nope"]}}', "undefined field 'nope'"),
        ("--allow", '{"source_label": ["app in (a b)"]}', "expected: ',' or ')'"),
    ],
)
def test_filters_hubble_refuses_are_one_line_config_errors(flag: str, value: str, words: str) -> None:
    one_line_error(run_cli("bridge", "--relay", "x:1", flag, value, "--print-config"), words)


def test_print_config_masks_secrets() -> None:
    result = run_cli(
        "bridge",
        "--relay",
        "relay:4245",
        "--otlp-header",
        "authorization=Bearer topsecret",
        "--print-config",
        env={"OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abcdef123"},
    )
    assert result.returncode == 0, result.stderr
    assert "relay:4245" in result.stdout
    assert "topsecret" not in result.stdout and "abcdef123" not in result.stdout


def test_generate_writes_parseable_deterministic_flows(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert run_cli("generate", "--count", "200", "--seed", "5", "-o", str(a)).returncode == 0
    assert run_cli("generate", "--count", "200", "--seed", "5", "-o", str(b)).returncode == 0
    assert a.read_bytes() == b.read_bytes()
    assert len(a.read_text().splitlines()) == 200


def test_replay_bad_listen_address(tmp_path: Path) -> None:
    one_line_error(
        run_cli("replay", str(SHARED_FLOWS / "kind-drops-2.jsonl"), "--listen", "nowhere"), "nowhere"
    )
