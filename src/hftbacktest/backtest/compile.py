"""`hftbacktest compile`: fill numba's cache with the engine ahead of time (a Docker image build, a CI step).

The engine is compiled lazily, on the first bot a process builds; on a cold cache that first build takes tens of
seconds. This command does it once: it compiles (or loads) the entry point and the build-time kernels by running
two tiny backtests (hash-map and ROI books) to the end of their data, then waits for the cold-compile helper."""
from __future__ import annotations

import argparse
import time


def warm_cache() -> float:
    """Compile or load everything a backtest runs; returns the seconds it took."""
    import numpy as np

    from ..kernels import entry, warmup
    from ..types import BUY_EVENT, DEPTH_EVENT, EXCH_EVENT, GTC, LIMIT, LOCAL_EVENT, SELL_EVENT, event_dtype
    from .asset import BacktestAsset
    from .bot import HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest

    t0 = time.perf_counter()
    entry.entry_point()
    data = np.zeros(2, event_dtype)
    data[0] = (EXCH_EVENT | LOCAL_EVENT | DEPTH_EVENT | BUY_EVENT, 1_000, 2_000, 99.0, 1.0, 0, 0, 0.0)
    data[1] = (EXCH_EVENT | LOCAL_EVENT | DEPTH_EVENT | SELL_EVENT, 1_000, 2_000, 101.0, 1.0, 0, 0, 0.0)
    for cls, asset in ((HashMapMarketDepthBacktest, BacktestAsset()),
                       (ROIVectorMarketDepthBacktest, BacktestAsset().roi_lb(0.0).roi_ub(200.0))):
        hbt = cls([asset.data(data).tick_size(1.0).lot_size(1.0)])
        hbt.elapse(5_000)
        hbt.submit_buy_order(0, 1, 98.0, 1.0, GTC, LIMIT, False)
        hbt.elapse(1_000_000)
        hbt.close()
    warmup.wait()
    return time.perf_counter() - t0


def _run(args: argparse.Namespace) -> int:
    from numba.core import config

    seconds = warm_cache()
    where = config.CACHE_DIR or "next to the package's sources (__pycache__)"
    print(f"engine compiled and cached in {seconds:.1f} s (numba cache: {where})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("compile", help="compile the engine into numba's cache (e.g. while building an image)",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=_run)
