"""The demo's market maker as a strategy file for `hftbacktest backtest` and `hftbacktest sweep`.

    hftbacktest demo                                   # writes demo_out/btcusdt_synthetic.npz, which both use
    hftbacktest backtest examples/backtest.toml --record record.npz --report report.html --book-size 10000
    hftbacktest sweep examples/sweep.toml -o results.csv --workers 2 --book-size 10000

`market_making_algo(hbt, recorder, half_spread_bps, skew_per_position, order_value, max_position)` is the @njit
function the demo runs (see `hftbacktest/_demo_strategy.py`); a sweep passes its arguments from [params]/[grid].
"""
from hftbacktest._demo_strategy import market_making_algo

__all__ = ["market_making_algo", "strategy"]


def strategy(hbt, recorder):
    """`hftbacktest backtest` calls (hbt, recorder): the demo's settings."""
    return market_making_algo(hbt, recorder, 0.1, 5.0, 500.0, 0.5)
