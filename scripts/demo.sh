#!/usr/bin/env bash
# Set up, then run the demo on generated flows: no cluster needed. Extra arguments go to `hubble-otlp demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/hubble-otlp demo "$@"
