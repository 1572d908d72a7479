"""`hubble-otlp demo`, the README's first command, run as a user runs it (for a few seconds)."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

from hubble_bridge.compiled import describe
from tests.conftest import REPO, run_cli
from tests.procs import free_port


def test_demo_runs_the_whole_pipeline_and_writes_otlp_json(tmp_path: Path) -> None:
    result = run_cli(
        "demo", "--duration", "4", "--rate", "1000", "--dir", str(tmp_path),
        "--metrics-listen", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "flows/s |" in result.stderr  # the live summary
    assert f"hot path:                         {describe()}" in result.stderr  # says which one runs
    done = next(line for line in result.stderr.splitlines() if line.startswith("done: "))
    events = int(done.split()[1])
    assert events > 1000
    lines = (tmp_path / "telemetry.otlp.jsonl").read_text().splitlines()
    kinds = Counter(next(iter(json.loads(line))) for line in lines)
    assert kinds["resourceSpans"] and kinds["resourceMetrics"] and kinds["resourceLogs"]


def test_demo_script_without_a_compiler_runs_the_development_install_and_says_so(tmp_path: Path) -> None:
    # The compiled branch builds a regular install (a minute or more); this runs the other one, through
    # the same `python -P` launch from inside the source tree.
    done = subprocess.run(
        ["bash", "scripts/demo.sh", "--duration", "3", "--rate", "500", "--dir", str(tmp_path),
         "--metrics-listen", f"127.0.0.1:{free_port()}"],
        cwd=REPO, env={**os.environ, "HUBBLE_OTLP_DEMO_PURE": "1"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "running the pure Python install" in done.stdout
    assert "hot path:                         pure Python" in done.stderr
    assert (tmp_path / "telemetry.otlp.jsonl").stat().st_size > 0
