#!/usr/bin/env bash
# Set up hubble-otlp on a fresh Debian machine: system packages, a virtualenv, the project.
# Idempotent: re-running skips what is already there. Usage: scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

apt_packages=()
command -v python3 >/dev/null || apt_packages+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_packages+=(python3-venv)
if (( want_test )); then
  command -v prometheus >/dev/null || apt_packages+=(prometheus)
  command -v shellcheck >/dev/null || apt_packages+=(shellcheck)
  # tests/test_compiled.py compiles the hot path (Cython) as a regular install does: a C compiler and
  # Python's headers
  command -v cc >/dev/null || apt_packages+=(gcc libc6-dev)
  python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' ||
    apt_packages+=(python3-dev)
  # the benchmark's fast flow source is a small Go gRPC server built offline from Debian's packages
  { command -v go >/dev/null && [[ -d /usr/share/gocode/src/google.golang.org/grpc ]]; } ||
    apt_packages+=(golang-go golang-google-grpc-dev)
fi
if (( ${#apt_packages[@]} )); then
  echo "setup: installing ${apt_packages[*]} with apt-get"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${apt_packages[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
# Exact versions, with hashes, from the lock files (scripts/lock.sh writes them from pyproject.toml); then
# the project itself with no dependency resolution and no build isolation, so nothing unlocked comes in.
lock=requirements.txt
(( want_test )) && lock=requirements-test.txt
stamp=".venv/.installed-$lock"
if [[ ! -f "$stamp" || "$lock" -nt "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements-build.txt -r "$lock"
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  touch "$stamp"
fi
