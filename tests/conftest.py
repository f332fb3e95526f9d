"""Shared fixtures. Area-specific fixtures live next to the tests that use them."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "binance-usdm"


@pytest.fixture(scope="session")
def sample_data_dir() -> Path:
    """The real raw Binance USD-M feeds in ../shared/data (never copied into the repo); skip when absent."""
    if not (SHARED_DATA / "btcusdt_20240808.gz").exists():
        pytest.skip(f"sample data not found at {SHARED_DATA}")
    return SHARED_DATA
