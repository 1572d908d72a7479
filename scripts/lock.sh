#!/usr/bin/env bash
# Write the lock files from pyproject.toml, with hashes, for Python 3.11+ on every platform:
#   requirements.txt        the runtime (what the image and a user's install get)
#   requirements-test.txt   the runtime, the bench extra and the test tools (what set-up and CI install)
#   requirements-build.txt  the build backend (setuptools, Cython), from [build-system]
# The three agree: the runtime and build locks are constrained by the test lock, so a package shared by
# two locks has one version. Versions already locked stay unless pyproject.toml needs others; pass
# --upgrade to move everything to the newest versions the bounds allow.
# Usage: scripts/lock.sh [--upgrade]   (needs the package index; uv comes from the test lock)
set -euo pipefail
cd "$(dirname "$0")/.."

uv=.venv/bin/uv
[[ -x "$uv" ]] || uv=$(command -v uv) || {
  echo "lock: uv not found: run scripts/setup.sh --test first (it installs uv from the test lock)" >&2
  exit 1
}
compile=("$uv" pip compile --quiet --generate-hashes --universal --python-version 3.11
  --custom-compile-command "bash scripts/lock.sh" "$@")

"${compile[@]}" pyproject.toml --extra test -o requirements-test.txt
"${compile[@]}" pyproject.toml -c requirements-test.txt -o requirements.txt
# [build-system].requires, read from pyproject.toml so that it is written in one place
.venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' |
  "${compile[@]}" - -c requirements-test.txt -o requirements-build.txt
