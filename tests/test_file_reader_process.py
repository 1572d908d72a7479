"""Files read once (`convert`, a bridge over files) are parsed in the reader process.

The child must deliver exactly what FileSource delivers in process (same events in
order, same filtering, same counters, every skipped line reported to the bridge with
its path, line and reason), fail in one line as FileSource does, and `convert` must
write the same telemetry with it as the previous in-process path did.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hubble_bridge.api import observer_pb2
from hubble_bridge.app import build_filters, build_source
from hubble_bridge.config import SourceConfig, load_config
from hubble_bridge.errors import BridgeError
from hubble_bridge.flows.codec import to_json_line
from hubble_bridge.generator import generate_responses
from hubble_bridge.pipeline import Bridge
from hubble_bridge.sinks.otlp_encode import encode_logs, encode_traces
from hubble_bridge.sinks.otlp_json import OtlpJsonFileSink
from hubble_bridge.sources.files import FileProblem, FileSource
from hubble_bridge.sources.reader_process import ReaderProcessSource
from hubble_bridge.telemetry import LogRecord, SpanRecord
from tests.conftest import flow_files, run_cli
from tests.test_reader_process import assert_a_killed_child_is_one_clear_error

GetFlowsResponse = observer_pb2.GetFlowsResponse
DROPPED_ONLY = [{"verdict": ["DROPPED"]}]


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated events with a bad line, an exporter agent event and a blank line among them."""
    lines = [to_json_line(r) for r in generate_responses(1500, seed=9)]
    lines.insert(10, b'{"flow": {"verdict": "NOT_A_VERDICT"}}')
    lines.insert(700, b'{"agent_event": {"type": "AGENT_STARTED"}, "node_name": "n1"}')
    lines.insert(900, b"")
    lines.insert(1200, b"not json at all")
    path = tmp_path_factory.mktemp("files") / "flows.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _read_both(
    config: SourceConfig,
) -> tuple[Any, list[Any], list[FileProblem], Any, list[Any], list[FileProblem]]:
    child_problems: list[FileProblem] = []
    child = ReaderProcessSource(config, on_problem=child_problems.append)
    got = [GetFlowsResponse.FromString(frame) for frame in child]
    here_problems: list[FileProblem] = []
    filters = build_filters(load_config({"source": {"files": config.files, "whitelist": config.whitelist}}))
    here = FileSource(
        config.files, accept=filters.matches if filters else None, on_problem=here_problems.append
    )
    expected = list(here)
    return child, got, child_problems, here, expected, here_problems


@pytest.mark.parametrize("whitelist", [[], DROPPED_ONLY], ids=["all", "dropped only"])
def test_the_child_reads_files_as_the_file_source_does(mixed_file: Path, whitelist: list[Any]) -> None:
    config = SourceConfig(files=[str(mixed_file)], whitelist=whitelist)
    child, got, child_problems, here, expected, here_problems = _read_both(config)
    assert got == expected and len(got) > 20
    assert child_problems == here_problems and len(here_problems) == 2  # path, line number and reason
    assert [p.line for p in here_problems] == [11, 1201]
    for counter in ("events", "filtered", "non_flow_events", "invalid_lines", "bytes_total", "bytes_read"):
        assert getattr(child, counter) == getattr(here, counter), counter
    assert child.non_flow_events == 1 and (child.filtered > 0) == bool(whitelist)
    assert child.bytes_read == child.bytes_total == mixed_file.stat().st_size
    assert child._process.poll() == 0


def test_a_missing_file_is_the_same_one_line_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(BridgeError) as in_process:
        list(FileSource([missing]))
    with pytest.raises(BridgeError) as via_child:
        list(ReaderProcessSource(SourceConfig(files=[missing])))
    assert str(via_child.value) == str(in_process.value) and missing in str(via_child.value)


def test_a_bad_filter_is_one_line_from_the_child(mixed_file: Path) -> None:
    config = SourceConfig(files=[str(mixed_file)], whitelist=[{"no_such_field": 1}])
    with pytest.raises(BridgeError) as caught:
        list(ReaderProcessSource(config))
    assert "no_such_field" in str(caught.value) and "\n" not in str(caught.value)


def test_a_killed_file_reader_is_one_clear_error(mixed_file: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    big.write_bytes(mixed_file.read_bytes() * 20)
    source = ReaderProcessSource(SourceConfig(files=[str(big)]))
    assert_a_killed_child_is_one_clear_error(source, r"file:.*big\.jsonl")


@pytest.mark.parametrize(
    ("layer", "child"),
    [
        ({"files": ["f.jsonl"]}, True),
        ({"files": ["f.jsonl"], "reader_process": "off"}, False),
        ({"files": ["f.jsonl"], "follow": True}, False),  # a followed file is read as it grows, in process
    ],
)
def test_which_file_sources_use_the_child(
    monkeypatch: pytest.MonkeyPatch, layer: dict[str, Any], child: bool
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    config = load_config({"source": layer}, environ={})
    source = build_source(config, lambda _name: None)
    assert isinstance(source, ReaderProcessSource) is child


# ---- convert: the same telemetry as before --------------------------------------------------------


class _MessagePathSink(OtlpJsonFileSink):
    """The sink as it was: spans and logs through the request messages and message_to_dict."""

    def export_traces(self, spans: Sequence[SpanRecord]) -> bool:
        return not spans or self.export_request(encode_traces(spans, scope_version=self._scope_version))

    def export_logs(self, logs: Sequence[LogRecord]) -> bool:
        return not logs or self.export_request(encode_logs(logs, scope_version=self._scope_version))


def _without_random_ids(span: dict[str, Any]) -> dict[str, Any]:
    # A flow without a uuid (some recorded flows) gets random ids; those are left out of the comparison.
    if any(a["key"] == "hubble.flow.uuid" for a in span.get("attributes", [])):
        return span
    return {k: v for k, v in span.items() if k not in ("traceId", "spanId", "parentSpanId")}


def _telemetry(path: Path) -> tuple[list[str], list[str], list[str]]:
    """Every span and log record with its resource and scope (sorted: export batches are cut by time),
    and the last metric export's flow metrics without their timestamps."""
    spans, logs, metrics = [], [], []
    for line in path.read_bytes().splitlines():
        request = json.loads(line)
        for entry in request.get("resourceSpans", []):
            for scoped in entry["scopeSpans"]:
                spans += [
                    json.dumps([entry["resource"], scoped["scope"], _without_random_ids(s)])
                    for s in scoped["spans"]
                ]
        for entry in request.get("resourceLogs", []):
            for scoped in entry["scopeLogs"]:
                logs += [json.dumps([entry["resource"], scoped["scope"], r]) for r in scoped["logRecords"]]
        if "resourceMetrics" in request:
            metrics = [
                re.sub(r'"(startTimeUnixNano|timeUnixNano)": "\d+"', "", json.dumps(m))
                for entry in request["resourceMetrics"]
                for scoped in entry["scopeMetrics"]
                for m in scoped["metrics"]
                if m["name"].startswith("hubble.")
            ]
    return sorted(spans), sorted(logs), sorted(metrics)


def test_convert_writes_the_same_telemetry_as_the_in_process_message_path(tmp_path: Path) -> None:
    generated = tmp_path / "generated.jsonl"
    assert run_cli("generate", "--count", "4000", "--seed", "7", "-o", str(generated)).returncode == 0
    files = [*map(str, flow_files()), str(generated)]
    # The previous convert: files parsed in this process, spans and logs through the messages.
    before = tmp_path / "before.jsonl"
    export = {"otlp": False, "output_file": str(before)}
    config = load_config({"source": {"files": files}, "export": export}, environ={})
    bridge = Bridge(config, FileSource(files), [_MessagePathSink(before)])
    assert bridge.run() == 0
    # convert as it is: the files parsed in the reader process, records written to JSON directly.
    after = tmp_path / "after.jsonl"
    on = tmp_path / "on.yaml"
    on.write_text("source:\n  reader_process: 'on'\n")
    done = run_cli("convert", *files, "--output", str(after), "--config", str(on))
    assert done.returncode == 0, done.stderr
    old, new = _telemetry(before), _telemetry(after)
    assert len(old[0]) > 500 and len(old[1]) > 100 and len(old[2]) > 5
    assert sum('"traceId"' in span for span in old[0]) > 500  # most spans keep their ids: compared too
    assert new == old
