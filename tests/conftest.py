"""Shared fixtures: where the recorded flows are, and how to run the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_FLOWS = REPO.parent / "shared" / "flows"
# CI (CI=true) must run every test whose prerequisite the set-up installs: there a missing one fails the
# test instead of skipping it, so a broken set-up cannot pass as green. Only the Docker builds may skip.
IN_CI = os.environ.get("CI") == "true"


def require(missing: str | None) -> None:
    """Skip the calling test (or fixture) when a prerequisite is missing; in CI, fail it instead."""
    if missing is None:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test, but {missing}", pytrace=False)
    pytest.skip(missing)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.prerequisite(missing)`: require(missing) before the test, for modules and classes."""
    for mark in item.iter_markers("prerequisite"):
        require(mark.args[0])


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
