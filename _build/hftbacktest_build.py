"""In-tree build backend: setuptools, plus numba's cache filled at `pip install -e .` time.

A first `hftbacktest demo` (or first backtest) on an empty numba cache compiles the converter, the engine and the
demo strategy: tens of seconds of CPU. An editable install runs from this source tree, and numba caches a
function next to its source file (`__pycache__`), keyed by the file's mtime and size, the numba version and the
CPU: code compiled here by the same interpreter and numba is what the installed package loads. So after building
the editable wheel, `hftbacktest.demo.precompile` runs in the build environment (which gets the few runtime
dependencies it imports, with the pins of `[project].dependencies`) with `src/` on the path.

The install never fails because of it: any error or a timeout prints one line and the package compiles on first
use as before. HFTBACKTEST_PRECOMPILE=0 skips it. A regular (non-editable) wheel is built unchanged: its files
are copied at install time, so code cached here would not match them.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (every hook not redefined here is setuptools')

ROOT = Path(__file__).resolve().parent.parent
_NEEDED = ("numpy", "numba", "orjson", "isal")  # what the precompile imports (no polars, rich, plotly)
_TIMEOUT = 900


def _wanted() -> bool:
    return os.environ.get("HFTBACKTEST_PRECOMPILE", "1") != "0"


def _requirements() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() in _NEEDED]


def get_requires_for_build_editable(config_settings=None):
    extra = _requirements() if _wanted() else []
    return _setuptools.get_requires_for_build_editable(config_settings) + extra


def _precompile() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    code = "import sys; from pathlib import Path; from hftbacktest.demo import precompile; precompile(Path(sys.argv[1]))"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hftbacktest-precompile-") as tmp:
        try:
            done = subprocess.run([sys.executable, "-W", "ignore", "-c", code, tmp], env=env, cwd=tmp,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"hftbacktest: precompile skipped ({type(exc).__name__}); the first run compiles instead",
                  file=sys.stderr)
            return
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"hftbacktest: precompile failed ({last}); the first run compiles instead", file=sys.stderr)
        return
    print(f"hftbacktest: converter, engine and demo strategy compiled into numba's cache in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    name = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    if _wanted():
        _precompile()
    return name
