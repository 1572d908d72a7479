"""`hubble-otlp bench` runs end to end on a few flows; its sources serve exactly the frames they are given."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hubble_bridge.bench import KEYS, run_bench
from hubble_bridge.bench.naive import NaiveBridge
from hubble_bridge.bench.source import go_binary, read_frames, start_source, write_frames
from hubble_bridge.compiled import describe
from hubble_bridge.errors import BridgeError, ConfigError
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
    # CPU per event: gRPC reading alone, the pipeline's own threads, and the e2e bridge with its reader
    # process. A whole second per event would mean the division is wrong, not a slow machine.
    for key in ("receive_cpu_us_per_flow", "pipeline_us_per_flow", "e2e_cpu_us_per_flow"):
        assert isinstance(result[key], float) and 0 < result[key] < 1e6, key
    # Both converts ran to the end on the same file (a failed one raises); the ratio is theirs.
    assert isinstance(result["convert_over_naive"], float) and result["convert_over_naive"] > 0
    # measured with --workers 2: two streams in two processes over one in one
    assert isinstance(result["scale_2_streams"], float) and result["scale_2_streams"] > 0
    table = "\n".join(out[:-1])
    assert "400 generated events" in table
    assert f"hot path {describe()}" in table  # compiled or pure Python, said in the header
    for key in KEYS:
        assert key in table
    assert "streams" in table  # the scale-out note: flows/s with 1 and with 2 streams
    assert "pipeline_per_s / naive_per_s" in table
    assert "400 JSON lines, whole process: convert" in table  # the convert comparison's note
    assert "e2e_cpu_us_per_flow = " in table and "target <= 18" in table
    assert "e2e floor = receive_cpu_us_per_flow + pipeline_us_per_flow = " in table


def test_bench_without_json_prints_only_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_bench(150, as_json=False, workers=1) == 0
    out = capsys.readouterr().out
    assert "measurement" in out and "e2e_per_s" in out
    assert not any(line.startswith("{") for line in out.splitlines())


@pytest.mark.parametrize(("flows", "workers"), [(0, 1), (-5, 1), (10, 0)])
def test_bench_rejects_bad_arguments(flows: int, workers: int) -> None:
    with pytest.raises(ConfigError, match="bench: --"):
        run_bench(flows, as_json=True, workers=workers)


def _serves_frames(tmp_path: Path, listen: str = "") -> None:
    responses = list(generate_responses(50, seed=4))
    frames = [r.SerializeToString() for r in responses]
    path = tmp_path / "frames.bin"
    write_frames(path, frames)
    assert read_frames(path) == frames
    source = start_source(path, listen)
    if listen:
        assert source.address == listen
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


def test_go_source_serves_on_a_unix_socket_as_a_node_does(tmp_path: Path) -> None:
    binary, why = go_binary()
    if binary is None:
        pytest.skip(why)
    _serves_frames(tmp_path, f"unix://{tmp_path}/hubble.sock")


def test_a_unix_socket_source_without_go_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBBLE_OTLP_BENCH_SOURCE", "python")
    write_frames(tmp_path / "f.bin", [b"x"])
    with pytest.raises(BridgeError, match="needs the Go bench source"):
        start_source(tmp_path / "f.bin", f"unix://{tmp_path}/hubble.sock")


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


def _naive_spans(feed: Callable[[NaiveBridge], None], expected: int) -> list[tuple[object, ...]]:
    out = io.BytesIO()
    naive = NaiveBridge(expected, out)
    feed(naive)
    naive.close()
    frames, data = [], out.getvalue()
    while data:
        size = int.from_bytes(data[:4], "big")
        frames.append(data[4 : 4 + size])
        data = data[4 + size :]
    request = ExportTraceServiceRequest.FromString(frames[0])  # spans first, metrics at shutdown
    return [
        (s.name, s.start_time_unix_nano, s.end_time_unix_nano, json_format.MessageToDict(s)["attributes"])
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]


def test_naive_json_design_makes_the_same_spans_as_the_protobuf_one() -> None:
    # The file path's naive design reads lines with json.loads and never builds protobuf messages; it
    # must still do the same work per flow (same span, same attributes) or the comparison means nothing.
    responses = list(generate_responses(300, seed=3))
    lines = [to_json_line(r) for r in responses]
    from_json = _naive_spans(lambda n: [n.process_dict(json.loads(line)) for line in lines], len(lines))
    from_proto = _naive_spans(lambda n: [n.process(r) for r in responses], len(lines))
    assert len(from_json) == sum(1 for r in responses if r.HasField("flow"))
    assert from_json == from_proto


def test_squeezed_times_run_that_many_times_faster_in_order() -> None:
    from hubble_bridge.bench.longrun import squeeze_times
    from hubble_bridge.flows.codec import event_time_ns

    plain = list(generate_responses(500, seed=9))
    squeezed = list(squeeze_times(generate_responses(500, seed=9), 25.0))
    start = event_time_ns(plain[0])
    for before, after in zip(plain, squeezed, strict=True):
        assert event_time_ns(after) - start == pytest.approx((event_time_ns(before) - start) / 25, abs=1)
        if before.flow.HasField("time"):
            assert after.flow.time.ToNanoseconds() - start == (before.flow.time.ToNanoseconds() - start) // 25
        after.ClearField("time")
        after.flow.ClearField("time")
        before.ClearField("time")
        before.flow.ClearField("time")
        assert after == before  # nothing but the times changed


def test_longrun_rss_with_squeezed_times_reports_them() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hubble_bridge.bench.longrun",
            "rss",
            "--flows",
            "2000",
            "--time-squeeze",
            "25",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["flows"] == 2000 and result["time_squeeze"] == 25.0 and result["rss_mb"] > 0


@pytest.mark.parametrize("bad", ["0", "-3", "nan"])
def test_longrun_rss_refuses_a_squeeze_that_is_not_above_zero(bad: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hubble_bridge.bench.longrun", "rss", "--time-squeeze", bad],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--time-squeeze must be a number above 0" in done.stderr
    assert "Traceback" not in done.stderr
