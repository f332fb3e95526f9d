"""`create_last_snapshot` against hftbacktest 2.4.4.

Golden digest: sha256 of `create_last_snapshot([convert(btc sample)], 0.1, 0.001).tobytes()` computed with the
reference hftbacktest 2.4.4 in .venv-ref on 2026-11-25 (9,597 rows: 5,019 bids then 4,578 asks).
"""
from __future__ import annotations

import contextlib
import hashlib
import io

import numpy as np

from hftbacktest.data.utils import binancefutures
from hftbacktest.data.utils.snapshot import create_last_snapshot
from hftbacktest.types import BUY_EVENT, SELL_EVENT

BTC_SNAPSHOT_SHA256 = "65a45dad03e3ac98153cf54b3d57066f26abaf416e7b33ac04c912f1d954ec35"


def test_last_snapshot_matches_reference_and_chains(sample_data_dir, tmp_path):
    with contextlib.redirect_stdout(io.StringIO()):
        data = binancefutures.convert(str(sample_data_dir / "btcusdt_20240808.gz"))
    out = tmp_path / "snap.npz"
    snap = create_last_snapshot([data], 0.1, 0.001, output_snapshot_filename=str(out))
    assert len(snap) == 9_597
    assert hashlib.sha256(snap.tobytes()).hexdigest() == BTC_SNAPSHOT_SHA256
    bids = snap[(snap["ev"] & BUY_EVENT) != 0]
    asks = snap[(snap["ev"] & SELL_EVENT) != 0]
    assert bids["px"].max() < asks["px"].min()
    assert np.load(out)["data"].tobytes() == snap.tobytes()
