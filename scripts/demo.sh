#!/usr/bin/env bash
# Set up, then run the demo on generated flows: no cluster needed. Extra arguments go to `hubble-otlp demo`.
#
# The demo runs what a user installs: with a C compiler and Python's headers, a regular install
# (`pip install .`, the hot path compiled with Cython, as the image builds it) in its own venv,
# build/demo-venv, run from outside the source tree; without them, the development install (.venv,
# editable, pure Python). It says which on its first lines. HUBBLE_OTLP_DEMO_PURE=1 skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bash scripts/setup.sh

can_compile() {
  command -v cc >/dev/null &&
    .venv/bin/python -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))'
}

python=.venv/bin/python
if [[ "${HUBBLE_OTLP_DEMO_PURE:-}" != 1 ]] && can_compile; then
  venv=build/demo-venv
  stamp=$venv/.installed
  # Rebuilt when any source file is newer than the last build (a build takes a minute or two on 2 cores).
  if [[ ! -f $stamp ]] || [[ -n $(find hubble_bridge setup.py pyproject.toml -newer "$stamp" -name '*.py' -print -quit) ]] ||
    [[ pyproject.toml -nt $stamp || requirements.txt -nt $stamp ]]; then
    echo "demo: building a regular install with the compiled hot path into $venv (once per change)"
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
    # As scripts/setup.sh: the locked versions with their hashes, then the project without resolving.
    "$venv/bin/python" -m pip install -q --require-hashes --no-deps -r requirements-build.txt -r requirements.txt
    "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation "$repo"
    touch "$stamp"
  fi
  python=$venv/bin/python
else
  echo "demo: no C compiler or Python headers (or HUBBLE_OTLP_DEMO_PURE=1): running the pure Python install"
fi
# -P: the current directory (the source tree) is not put on sys.path, so the installed package is the one
# imported, not ./hubble_bridge.
exec "$python" -P -m hubble_bridge.cli demo "$@"
