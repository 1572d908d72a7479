"""The container images: the Dockerfile's promises checked statically, and a real build where a
Docker daemon is reachable (the build tests skip, saying why, where `docker info` fails)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined), in file order."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(2)
            found[current] = [line]
        elif current:
            found[current].append(line)
    return found


def build_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", DOCKERFILE.read_text(), re.MULTILINE))


def test_bridge_is_the_default_target_and_runs_as_non_root() -> None:
    found = stages()
    assert list(found)[-1] == "bridge"  # `docker build .` builds the bridge
    users = [line.split()[1] for line in found["bridge"] if line.startswith("USER ")]
    assert users, "the bridge stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can verify it
    assert any(line.startswith("ENTRYPOINT") and "hubble-otlp" in line for line in found["bridge"])
    # Multi-stage: the final image copies a built virtualenv and installs nothing itself.
    assert any(line.startswith("COPY --from=bridge-build") for line in found["bridge"])
    assert not any("pip install" in line for line in found["bridge"])


def test_sidecar_target_has_pinned_bcc_and_runs_as_root_on_purpose() -> None:
    sidecar = stages()["sidecar"]
    install = " ".join(line for line in sidecar if "apt-get install" in line)
    assert re.search(r"python3-bpfcc=\$\{BCC_VERSION\}", install)
    assert build_args()["BCC_VERSION"] == "0.26.0+ds-1"
    assert [line for line in sidecar if line.startswith("USER")] == ["USER 0:0"]
    assert "--system-site-packages" in DOCKERFILE.read_text()  # Debian's bcc module must import


def test_base_images_and_packages_are_pinned() -> None:
    args = build_args()
    for line in (line for lines in stages().values() for line in lines[:1]):
        image = line.split()[1]
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if resolved in stages():
            continue  # FROM an earlier stage
        tag = resolved.partition(":")[2]
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{resolved} is not pinned"
    for line in (line for lines in stages().values() for line in lines if "apt-get install" in line):
        packages = [
            w for w in line.split("apt-get install", 1)[1].split("&&")[0].split() if not w.startswith("-")
        ]
        assert packages and all("=" in p for p in packages), f"unpinned Debian packages in: {line}"
    # Python packages: exact versions with hashes from the locks (tests/test_dependencies.py checks them),
    # and nothing resolved in the build.
    for line in (
        line for lines in stages().values() for line in lines if re.search(r"pip (install|wheel)", line)
    ):
        for command in re.findall(r"pip (?:install|wheel) [^&]+", line):
            assert "--no-deps" in command, f"pip resolves dependencies in: {command}"
            if " -r " in command:
                assert "--require-hashes" in command and re.search(r"-r requirements(-build)?\.txt", command)


def test_dockerignore_keeps_what_the_build_copies() -> None:
    rules = [r for r in (REPO / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    copies = re.findall(r"^COPY (?!--from)(.+?) \S+$", DOCKERFILE.read_text(), re.MULTILINE)
    sources = {src for line in copies for src in line.split()}
    assert sources == {
        "requirements.txt",
        "requirements-build.txt",
        "pyproject.toml",
        "README.md",
        "setup.py",
        "hubble_bridge",
    }
    for source in sources:
        assert (REPO / source).exists() and included(source), source
    for excluded in (".venv", ".git", "tests", "helm/hubble-otlp/values.yaml"):
        assert not included(excluded), f"{excluded} would be sent to the Docker daemon"


def docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        return "no Docker daemon (`docker info` failed: " + (lines[-1] if lines else "no output") + ")"
    return None


@pytest.fixture(scope="module")
def docker() -> None:
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)


def docker_run(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.usefixtures("docker")
def test_bridge_image_builds_and_runs_as_non_root() -> None:
    tag = "hubble-otlp:test"
    built = docker_run("build", "--target", "bridge", "-t", tag, str(REPO))
    assert built.returncode == 0, built.stderr[-4000:]
    user = docker_run("image", "inspect", "--format", "{{.Config.User}}", tag).stdout.strip()
    assert user == "65532:65532"
    version = docker_run("run", "--rm", "--read-only", tag, "--version", timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("hubble-otlp "), version.stderr
    uid = docker_run("run", "--rm", "--entrypoint", "id", tag, "-u", timeout=120)
    assert uid.stdout.strip() == "65532"
    code = "from hubble_bridge.compiled import describe; print(describe())"
    hot = docker_run("run", "--rm", "--entrypoint", "python", tag, "-c", code, timeout=120)
    assert hot.stdout.startswith("compiled ("), hot.stdout + hot.stderr  # the builder image has a compiler


@pytest.mark.usefixtures("docker")
def test_sidecar_image_builds_with_debian_bcc() -> None:
    tag = "hubble-otlp-sidecar:test"
    built = docker_run("build", "--target", "sidecar", "-t", tag, str(REPO))
    assert built.returncode == 0, built.stderr[-4000:]
    probe = docker_run(
        "run",
        "--rm",
        "--entrypoint",
        "python3",
        tag,
        "-c",
        "import bcc, hubble_bridge; print('ok')",
        timeout=120,
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "ok", probe.stderr
