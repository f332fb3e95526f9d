"""hftbacktest: tick-level backtesting, Binance USD-M data tools, emulator and live trading (Python + numba)."""
from .types import *  # noqa: F401,F403  (constants and dtypes, same names as hftbacktest 2.x)
from .backtest.asset import BacktestAsset  # noqa: F401
from .backtest.bot import Backtest, HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest  # noqa: F401
from .recorder import Recorder  # noqa: F401
