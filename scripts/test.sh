#!/usr/bin/env bash
# Set up everything the tests need, then run every test. CI runs this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# The sidecar's eBPF tests need BCC, kernel headers and tracefs; as root (as in CI) set them up too.
# Outside CI a failed set-up only makes the eBPF tests skip, saying what is missing; in CI (CI=true) it
# fails the run, as any missing prerequisite fails its tests there (tests/conftest.py: require).
if [[ $(id -u) -eq 0 ]]; then
  if ! bash scripts/setup-bcc.sh; then
    [[ "${CI:-}" == "true" ]] && { echo "test: BCC set-up failed, and CI must run the eBPF tests" >&2; exit 1; }
    echo "test: BCC set-up failed; the sidecar's eBPF tests will skip" >&2
  fi
fi
.venv/bin/ruff check .
shellcheck scripts/*.sh .ci/run
exec .venv/bin/python -m pytest "$@"
