"""`hubble-otlp bench` runs end to end on a few flows; its sources serve exactly the frames they are given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hubble_bridge.bench import KEYS, run_bench
from hubble_bridge.bench.source import go_binary, read_frames, start_source, write_frames
from hubble_bridge.compiled import describe
from hubble_bridge.errors import ConfigError
from hubble_bridge.flows.codec import to_json_line
from hubble_bridge.generator import generate_responses
from hubble_bridge.sources.relay import RelayClient, build_request
from tests.conftest import require

RATES = [key for key in KEYS if key.endswith("_per_s")]


def test_bench_prints_a_table_and_a_json_line_with_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_bench(400, as_json=True, workers=2) == 0
    out = capsys.readouterr().out.splitlines()
    result = orjson.loads(out[-1])
    assert list(result) == list(KEYS)
    for key in RATES:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert 0 < result["rss_mb"] < 2048
    # measured with --workers 2: two streams in two processes over one in one
    assert isinstance(result["scale_2_streams"], float) and result["scale_2_streams"] > 0
    table = "\n".join(out[:-1])
    assert "400 generated events" in table
    assert f"hot path {describe()}" in table  # compiled or pure Python, said in the header
    for key in KEYS:
        assert key in table
    assert "streams" in table  # the scale-out note: flows/s with 1 and with 2 streams
    assert "pipeline_per_s / naive_per_s" in table


def test_bench_without_json_prints_only_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_bench(150, as_json=False, workers=1) == 0
    out = capsys.readouterr().out
    assert "measurement" in out and "e2e_per_s" in out
    assert not any(line.startswith("{") for line in out.splitlines())


@pytest.mark.parametrize(("flows", "workers"), [(0, 1), (-5, 1), (10, 0)])
def test_bench_rejects_bad_arguments(flows: int, workers: int) -> None:
    with pytest.raises(ConfigError, match="bench: --"):
        run_bench(flows, as_json=True, workers=workers)


def _serves_frames(tmp_path: Path) -> None:
    responses = list(generate_responses(50, seed=4))
    frames = [r.SerializeToString() for r in responses]
    path = tmp_path / "frames.bin"
    write_frames(path, frames)
    assert read_frames(path) == frames
    source = start_source(path)
    try:
        client = RelayClient(source.address)
        try:
            # More than there are frames: the source cycles through them in order.
            got = list(client.get_flows(build_request(number=120, first=True)))
        finally:
            client.close()
        assert source.send_rate(80) > 0
    finally:
        source.close()
    assert got == [responses[i % 50] for i in range(120)]
    assert source.process.poll() is not None  # closed means stopped


def test_python_fallback_source_serves_the_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBBLE_OTLP_BENCH_SOURCE", "python")
    _serves_frames(tmp_path)


def test_go_source_serves_the_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUBBLE_OTLP_BENCH_SOURCE", raising=False)
    binary, why = go_binary()
    require(why if binary is None else None)
    _serves_frames(tmp_path)


def test_go_source_is_reported_missing_with_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    binary, why = go_binary()
    assert binary is None
    assert "golang-go" in why


def test_naive_convert_writes_encoded_otlp(tmp_path: Path) -> None:
    source = tmp_path / "flows.jsonl"
    source.write_bytes(b"\n".join(to_json_line(r) for r in generate_responses(60, seed=2)) + b"\n")
    out = tmp_path / "naive.bin"
    done = subprocess.run(
        [sys.executable, "-m", "hubble_bridge.bench.naive", str(source), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "processed 60 events" in done.stderr
    requests = read_frames(out)
    spans = [ExportTraceServiceRequest.FromString(r) for r in requests[:1]]
    flows = sum(1 for r in generate_responses(60, seed=2) if r.HasField("flow"))
    # The span batch comes first (metrics are exported at shutdown): one span per flow.
    assert sum(len(ss.spans) for rs in spans[0].resource_spans for ss in rs.scope_spans) == flows
