"""Shared fixtures: where the recorded flows are, and how to run the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_FLOWS = REPO.parent / "shared" / "flows"


def flow_files() -> list[Path]:
    files = sorted(SHARED_FLOWS.glob("*.jsonl"))
    if not files:
        pytest.fail(
            f"no recorded flows in {SHARED_FLOWS}: tests expect ../shared/flows beside the repository"
        )
    return files


@pytest.fixture
def shared_flows() -> Path:
    flow_files()
    return SHARED_FLOWS


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `hubble-otlp` in a fresh interpreter, as a user's shell would."""
    return subprocess.run(
        [sys.executable, "-m", "hubble_bridge.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        input=input.decode() if input else None,
    )
