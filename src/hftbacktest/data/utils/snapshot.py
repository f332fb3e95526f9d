"""End-of-day book snapshot, to start the next day's backtest (`BacktestAsset.initial_snapshot`)."""
from __future__ import annotations

from typing import List, Optional

import numpy as np
from numpy.typing import NDArray


def create_last_snapshot(
    data: List[str],
    tick_size: float,
    lot_size: float,
    initial_snapshot: Optional[str] = None,
    output_snapshot_filename: Optional[str] = None,
) -> NDArray:
    """Replay `data` (event files or arrays, in order) through the backtest engine and return the local book
    at the end as DEPTH_SNAPSHOT rows: bids best-first, then asks best-first (`EXCH|LOCAL|side|SNAPSHOT`,
    timestamps 0). `initial_snapshot` seeds the book; `output_snapshot_filename` also saves the rows as .npz
    under the key "data". Same behaviour as hftbacktest 2.4.4, using this package's engine (one book rule).
    """
    from ... import BacktestAsset, HashMapMarketDepthBacktest, _atomic

    asset = BacktestAsset().data(data).tick_size(tick_size).lot_size(lot_size)
    if initial_snapshot is not None:
        asset = asset.initial_snapshot(initial_snapshot)
    hbt = HashMapMarketDepthBacktest([asset])
    rc = hbt._goto_end()
    if rc not in (0, 1):
        raise RuntimeError(f"replaying the data failed with code {rc}")
    snapshot = np.array(hbt.depth(0).snapshot(), copy=True)
    hbt.close()
    if output_snapshot_filename is not None:
        _atomic.savez(output_snapshot_filename, data=snapshot)
    return snapshot
