"""The lock files and the declared dependencies are the real ones.

- requirements.txt, requirements-test.txt and requirements-build.txt (scripts/lock.sh) pin every package
  with hashes, agree with each other, satisfy pyproject.toml, and are what this environment installed;
- the generated stubs and the runtime agree: the locked grpcio-tools wrote hubble_bridge/api, and
  pyproject.toml's minimum grpcio and protobuf are at least the generator's;
- every third-party module the package imports comes from a declared direct dependency, and every
  declared runtime dependency is imported (the bench extra only by hubble_bridge/bench).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])
LOCKS = ("requirements.txt", "requirements-test.txt", "requirements-build.txt")
# Modules that do not come from the package index: Debian's python3-bpfcc (the sidecar's BCC).
SYSTEM_MODULES = {"bcc": "python3-bpfcc (Debian), see scripts/setup-bcc.sh"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def read_lock(name: str) -> dict[str, tuple[Version, str | None, int]]:
    """{package: (version, marker, hash count)} from one lock file."""
    pins: dict[str, tuple[Version, str | None, int]] = {}
    current = ""
    for line in (REPO / name).read_text().splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match[1])
            assert current not in pins, f"{name}: {current} is pinned twice"
            pins[current] = (Version(match[2]), match[3], 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, marker, hashes = pins[current]
            pins[current] = (version, marker, hashes + 1)
        elif line.strip() and not line.lstrip().startswith("#"):
            pytest.fail(f"{name}: a line that is neither a pin nor a hash: {line!r}")
    assert pins, f"{name} pins nothing"
    return pins


def requirements(extra: str | None) -> list[Requirement]:
    """pyproject.toml's requirements of the runtime (extra None) or one extra, self-references expanded."""
    raw = (
        PYPROJECT["project"]["dependencies"]
        if extra is None
        else PYPROJECT["project"]["optional-dependencies"][extra]
    )
    out: list[Requirement] = []
    for text in raw:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == PROJECT:
            for inner in sorted(requirement.extras):
                out += requirements(inner)
        else:
            out.append(requirement)
    return out


@pytest.mark.parametrize("lock", LOCKS)
def test_every_pin_is_exact_and_hashed(lock: str) -> None:
    for name, (_, _, hashes) in read_lock(lock).items():
        assert hashes >= 1, f"{lock}: {name} has no --hash"


def test_the_locks_agree_on_every_shared_package() -> None:
    seen: dict[str, tuple[Version, str]] = {}
    for lock in LOCKS:
        for name, (version, _, _) in read_lock(lock).items():
            if name in seen:
                assert seen[name][0] == version, (
                    f"{name}: {seen[name][1]} has {seen[name][0]}, {lock} has {version}"
                )
            seen[name] = (version, lock)


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [
        ("requirements.txt", lambda: requirements(None)),
        ("requirements-test.txt", lambda: requirements(None) + requirements("test")),
        ("requirements-build.txt", lambda: [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]),
    ],
)
def test_the_lock_satisfies_pyproject(lock: str, wanted) -> None:
    pins = read_lock(lock)
    for requirement in wanted():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} does not pin {name}, which pyproject.toml requires: run scripts/lock.sh"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, outside pyproject.toml's {requirement}: run scripts/lock.sh"
        )


def test_this_environment_installed_the_test_lock() -> None:
    environment = default_environment()
    for name, (version, marker, _) in read_lock("requirements-test.txt").items():
        if marker and not Requirement(f"x ; {marker}").marker.evaluate(environment):
            continue
        installed = importlib.metadata.version(name)
        assert Version(installed) == version, f"{name} {installed} is installed, the lock says {version}"


def test_stubs_were_written_by_the_locked_generator_for_the_minimum_runtime() -> None:
    api = REPO / "hubble_bridge" / "api"
    generated = {
        m[1]
        for path in api.glob("*_grpc.py")
        if (m := re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", path.read_text()))
    }
    assert len(generated) == 1, f"the gRPC stubs come from several generators: {generated}"
    grpc_generator = Version(generated.pop())
    protobuf_generated = {
        m[1]
        for path in api.glob("*_pb2.py")
        if (m := re.search(r"# Protobuf Python Version: (\S+)", path.read_text()))
    }
    assert len(protobuf_generated) == 1, (
        f"the message stubs come from several protoc versions: {protobuf_generated}"
    )
    protobuf_generator = Version(protobuf_generated.pop())

    locked = read_lock("requirements-test.txt")
    assert locked["grpcio-tools"][0] == grpc_generator, (
        f"hubble_bridge/api was written by grpcio-tools {grpc_generator}, the lock has "
        f"{locked['grpcio-tools'][0]}: run scripts/gen_protos.py with the locked generator"
    )
    runtime = {canonicalize_name(r.name): r for r in requirements(None)}
    for name, floor in (("grpcio", grpc_generator), ("protobuf", protobuf_generator)):
        minimum = min(
            (Version(s.version) for s in runtime[name].specifier if s.operator in (">=", "==")), default=None
        )
        assert minimum is not None and minimum >= floor, (
            f"pyproject.toml lets {name} be older than {floor}, which the stubs refuse to import under"
        )


# --- imported modules against declared dependencies ---------------------------------------------------


@cache
def file_owners() -> dict[Path, str]:
    owners: dict[Path, str] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            owners[Path(dist.locate_file(file)).resolve()] = canonicalize_name(dist.metadata["Name"])
    return owners


def module_owner(module: str) -> str | None:
    """The distribution that installed a module (namespace packages such as google.* resolved by file)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    paths = [spec.origin] if spec.origin and spec.origin not in ("built-in", "frozen") else []
    for path in paths:
        owner = file_owners().get(Path(path).resolve())
        if owner:
            return owner
    return None


def third_party_imports(root: Path) -> dict[str, set[str]]:
    """{top-level module: the files importing it} for every import below root that is not ours or stdlib."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        if "api" in path.relative_to(REPO).parts[1:2]:
            continue  # generated stubs: their imports are the generator's (grpc, google.protobuf)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("hubble_bridge", "tests", "__future__"):
                    continue
                found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def owners_of(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    """{distribution: files} for the imports; a module from no distribution fails, naming its file."""
    owners: dict[str, set[str]] = {}
    unresolved: dict[str, set[str]] = {}
    for module, files in imports.items():
        top = module.split(".")[0]
        if top in SYSTEM_MODULES:
            continue
        owner = module_owner(module)
        if owner is None and "." in module:
            continue  # `from a import b` where b is not a module: the module a itself is resolved too
        if owner is None:
            unresolved[module] = files
        else:
            owners.setdefault(owner, set()).update(files)
    assert not unresolved, f"modules imported but installed by no distribution: {unresolved}"
    return owners


def declared(*groups: str | None) -> set[str]:
    return {canonicalize_name(r.name) for group in groups for r in requirements(group)}


def test_the_package_imports_only_declared_runtime_dependencies() -> None:
    imports = third_party_imports(REPO / "hubble_bridge")
    runtime = {m: {f for f in files if "/bench/" not in f} for m, files in imports.items()}
    runtime_owners = owners_of({m: f for m, f in runtime.items() if f})
    undeclared = {name: files for name, files in runtime_owners.items() if name not in declared(None)}
    assert not undeclared, (
        f"imported at run time but not a declared dependency (pyproject.toml): {undeclared}"
    )
    bench_owners = owners_of(imports)
    stray = {name: files for name, files in bench_owners.items() if name not in declared(None, "bench")}
    assert not stray, f"imported but declared nowhere: {stray}"


def test_every_declared_runtime_dependency_is_imported() -> None:
    imports = third_party_imports(REPO / "hubble_bridge")
    used = owners_of(imports)
    outside_bench = {name for name, files in used.items() if any("/bench/" not in f for f in files)}
    unused = declared(None) - outside_bench
    assert not unused, f"declared runtime dependencies no module imports outside the bench: {sorted(unused)}"
    bench_only = declared("bench") - declared(None)
    assert bench_only <= set(used), f"the bench extra declares what nothing imports: {bench_only - set(used)}"
    assert not (bench_only & outside_bench), "the bench extra is imported outside hubble_bridge/bench"


def test_the_tests_import_only_declared_dependencies() -> None:
    owners = owners_of(third_party_imports(REPO / "tests"))
    undeclared = {name: files for name, files in owners.items() if name not in declared(None, "test")}
    assert not undeclared, f"the tests import what pyproject.toml does not declare: {undeclared}"


def test_bench_without_the_sdk_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from hubble_bridge.bench import run_bench
    from hubble_bridge.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "opentelemetry.sdk" else real(name, *rest),
    )
    with pytest.raises(ConfigError, match=r"pip install 'hubble-otlp\[bench\]'"):
        run_bench(10, False, 1)
