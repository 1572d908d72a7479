"""`hubble-otlp demo`, the README's first command, run as a user runs it (for a few seconds)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tests.conftest import run_cli
from tests.procs import free_port


def test_demo_runs_the_whole_pipeline_and_writes_otlp_json(tmp_path: Path) -> None:
    result = run_cli(
        "demo", "--duration", "4", "--rate", "1000", "--dir", str(tmp_path),
        "--metrics-listen", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "flows/s |" in result.stderr  # the live summary
    done = next(line for line in result.stderr.splitlines() if line.startswith("done: "))
    events = int(done.split()[1])
    assert events > 1000
    lines = (tmp_path / "telemetry.otlp.jsonl").read_text().splitlines()
    kinds = Counter(next(iter(json.loads(line))) for line in lines)
    assert kinds["resourceSpans"] and kinds["resourceMetrics"] and kinds["resourceLogs"]
