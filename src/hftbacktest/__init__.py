"""hftbacktest: tick-level backtesting, Binance USD-M data tools, emulator and live trading (Python + numba).

Constants and dtypes load eagerly (no numba); the engine, builder and recorder load on first access, so
`hftbacktest --help` and tools that do not backtest start fast.
"""
from ._lazy import lazy_exports
from .types import *  # noqa: F401,F403  (constants and dtypes, same names as hftbacktest 2.x)

__getattr__, __dir__ = lazy_exports(__name__, globals(), {
    "BacktestAsset": ".backtest.asset",
    "Backtest": ".backtest.bot",
    "HashMapMarketDepthBacktest": ".backtest.bot",
    "ROIVectorMarketDepthBacktest": ".backtest.bot",
    "Recorder": ".recorder",
    # the reference's Python live API names (hftbacktest.live has the builder-style API too)
    "LiveInstrument": ".live",
    "HashMapMarketDepthLiveBot": ".live",
    "ROIVectorMarketDepthLiveBot": ".live",
})
