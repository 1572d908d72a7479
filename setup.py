"""The per-flow hot path compiled with Cython, when it can be; pure Python otherwise.

The modules in hubble_bridge/compiled.py's HOT are ordinary Python (no Cython syntax). A regular install
(`pip install .`, the images) compiles them: the same code, about a quarter less
CPU per flow (docs/performance.md). They stay pure Python when:
- the install is editable (`pip install -e .`, scripts/setup.sh): a compiled module
  would shadow its .py, and an edit would silently not take effect;
- HUBBLE_OTLP_PURE=1 is set;
- there is no C compiler or no Python headers: each extension is optional, so a
  failed build falls back to the .py file, with a warning from the build.
Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup


def _hot_modules() -> list[str]:
    """The list lives in hubble_bridge/compiled.py, read here without importing the package."""
    namespace: dict = {}
    exec(Path(__file__).with_name("hubble_bridge").joinpath("compiled.py").read_text(), namespace)
    return [name.replace(".", "/") + ".py" for name in namespace["HOT"]]


# Cython's options for plain Python modules: Python 3 semantics, and functions that behave like
# Python functions (introspectable, bindable as methods).
DIRECTIVES = {"language_level": "3", "binding": True}


def _editable() -> bool:
    return any(arg in ("editable_wheel", "develop") for arg in sys.argv)


def ext_modules() -> list:
    if os.environ.get("HUBBLE_OTLP_PURE") == "1" or _editable():
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    # The generated C goes under build/, not beside the sources (the package ships real .c files: BPF).
    modules = cythonize(_hot_modules(), compiler_directives=DIRECTIVES, build_dir="build/cython", quiet=True)
    for module in modules:
        module.optional = True  # no compiler: this module stays pure Python
    return modules


setup(ext_modules=ext_modules(), options={"build_ext": {"parallel": os.cpu_count() or 1}})
