"""numba is pinned to the tested versions; on another one the reference-count patch stays off, with one warning."""
import re
import subprocess
import sys
from pathlib import Path

import numba

from hftbacktest._numba_tricks import TESTED, borrow, numba_version

ROOT = Path(__file__).resolve().parents[2]


def test_installed_numba_is_tested_and_pinned():
    assert numba_version() in TESTED and borrow.INSTALLED
    spec = re.search(r'"numba>=([\d.]+),<([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    low, high = (tuple(int(x) for x in v.split(".")[:2]) for v in spec.groups())
    assert all(low <= v < high for v in TESTED) and low <= numba_version() < high


def test_untested_numba_keeps_reference_counting_and_says_so():
    code = ("import numba; numba.__version__ = '0.99.0'\n"
            "from numba.core.runtime.context import NRTContext\n"
            "from hftbacktest._numba_tricks import borrow\n"
            "print(borrow.INSTALLED, getattr(NRTContext, '_hftbacktest_borrowed', False))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
    lines = [ln for ln in out.stderr.splitlines() if "numba 0.99.0 is not a tested version" in ln]
    assert len(lines) == 1 and "reference-count elision is off" in lines[0]
    assert numba.__version__ != "0.99.0"
