#!/usr/bin/env bash
# Set up everything the tests need, then run every test. CI runs this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
shellcheck scripts/*.sh .ci/run
exec .venv/bin/python -m pytest "$@"
