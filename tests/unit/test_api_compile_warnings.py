"""The documentation example and the grid strategy (benchmarks/strategies) compile without any numba warning."""
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

from _engine_data import ask, bid, buy_trade, rows, sell_trade

STRATEGIES = Path(__file__).resolve().parents[2] / "benchmarks" / "strategies"


@pytest.fixture(scope="module")
def strategies():
    sys.path.insert(0, str(STRATEGIES))
    try:
        import example
        import grid
    finally:
        sys.path.remove(str(STRATEGIES))
    return example, grid


def _bot():
    data = rows(bid(1000, 99.0, 2.0), ask(1000, 101.0, 3.0), sell_trade(5_000_000, 99.0, 1.0),
                buy_trade(30_000_000, 101.0, 1.0), bid(60_000_000, 100.0, 1.0))
    return HashMapMarketDepthBacktest([BacktestAsset().data(data).tick_size(1.0).lot_size(0.001)
                                       .constant_order_latency(1000, 1000)])


def test_docs_example_and_grid_compile_without_warnings(strategies):
    example, grid = strategies
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert example.market_making_algo(_bot())
        out = grid.run(_bot(), {})
    assert out["steps"] > 0
