#!/usr/bin/env bash
# Set up everything the tests need, then run every test. CI runs this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# The sidecar's eBPF tests need BCC, kernel headers and tracefs; as root (as in CI) set them up too.
# If that set-up fails, the eBPF tests skip and say what is missing; the rest still runs.
if [[ $(id -u) -eq 0 ]]; then
  bash scripts/setup-bcc.sh || echo "test: BCC set-up failed; the sidecar's eBPF tests will skip" >&2
fi
.venv/bin/ruff check .
shellcheck scripts/*.sh .ci/run
exec .venv/bin/python -m pytest "$@"
