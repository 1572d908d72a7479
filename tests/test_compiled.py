"""The hot path compiled with Cython, as `pip install .` builds it, makes exactly what pure Python makes.

The module fixture builds the compiled tree the way setup.py does for a regular
install (`setup.py build_ext --inplace` on a copy of the package, about a minute on
2 cores); tests/compiled_golden.py then maps the same events in both trees and the
dumps must be identical, byte for byte.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hubble_bridge.compiled import HOT
from tests.conftest import flow_files, require

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "compiled_golden.py"
# Building 28 extensions takes a few minutes on two busy cores: more than the suite's 300 s per test,
# which the build's own subprocess timeout (900 s) already bounds.
pytestmark = pytest.mark.timeout(1200)


def _python(tree: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HUBBLE_OTLP_PURE"}
    env["PYTHONPATH"] = str(tree)
    return subprocess.run(
        [sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("Cython") is None:
        require("Cython is not installed: scripts/setup.sh --test installs it from the test lock")
    if shutil.which("cc") is None:
        require("no C compiler: apt-get install gcc (scripts/setup.sh --test does)")
    tree = tmp_path_factory.mktemp("compiled")
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "hubble_bridge", tree / "hubble_bridge", ignore=skip)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    built = _python(tree, "setup.py", "-q", "build_ext", "--inplace", timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    return tree


def test_a_regular_build_compiles_every_hot_module(compiled_tree: Path) -> None:
    code = "from hubble_bridge.compiled import compiled_modules; print(*compiled_modules())"
    listed = _python(compiled_tree, "-c", code)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == list(HOT)


def test_compiled_and_pure_python_make_the_same_telemetry(compiled_tree: Path, tmp_path: Path) -> None:
    flows = [str(path) for path in flow_files()]
    outputs = {}
    for label, tree in (("compiled", compiled_tree), ("pure", REPO)):
        out = tmp_path / f"{label}.txt"
        done = _python(tree, str(GOLDEN), str(out), *flows)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[label] = out.read_text().splitlines()
    compiled, pure = outputs["compiled"], outputs["pure"]
    assert compiled[0].startswith("# compiled (") and pure[0] == "# pure Python"
    assert len(compiled) == len(pure) > 10_000
    mismatches = [i for i, (a, b) in enumerate(zip(compiled[1:], pure[1:], strict=True)) if a != b]
    assert not mismatches, f"{len(mismatches)} lines differ, first: {pure[mismatches[0] + 1][:200]}"
