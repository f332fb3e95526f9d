"""The installed console scripts, as a user runs them from the venv."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


def console_script(name: str) -> str:
    """The console script `name` next to this interpreter (else on PATH); skips when it is not installed."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"console script {name} is not installed")
    return found
