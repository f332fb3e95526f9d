"""The market-making example from the hftbacktest documentation (issue 3), algorithm verbatim.

    python benchmarks/strategies/example.py RUNS.json      (see _common.py for the run format)

Only the `__main__` part differs from the documentation: data, latency and models come from the run config so the
same algorithm runs on every parity configuration. With `"trace": true` a copy of the algorithm that also records
the state after every step in which the number of trades changed runs instead (to locate a divergence).
"""
import numpy as np
from numba import njit
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, BUY, SELL, GTX, LIMIT  # noqa: F401 (verbatim)

import _common  # the run-config plumbing next to this file (its folder is on sys.path when run as a script)


@njit
def market_making_algo(hbt):
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    lot_size = hbt.depth(asset_no).lot_size
    # in nanoseconds
    while hbt.elapse(10_000_000) == 0:
        hbt.clear_inactive_orders(asset_no)
        depth = hbt.depth(asset_no)
        mid_price = (depth.best_bid + depth.best_ask) / 2.0
        position = hbt.position(asset_no)
        half_spread = 0.0005 * mid_price
        # Calculate reservation price with inventory skew
        skew = -0.001 * position
        reservation_price = mid_price + skew
        new_bid = reservation_price - half_spread
        new_ask = reservation_price + half_spread
        new_bid_tick = min(np.round(new_bid / tick_size), depth.best_bid_tick)
        new_ask_tick = max(np.round(new_ask / tick_size), depth.best_ask_tick)
        order_qty = 100 / mid_price  # $100 per order
        order_qty = np.round(order_qty / lot_size) * lot_size
        # Submit orders
        hbt.submit_buy_order(asset_no, new_bid_tick, new_bid_tick * tick_size, order_qty, GTX, LIMIT, False)
        hbt.submit_sell_order(asset_no, new_ask_tick, new_ask_tick * tick_size, order_qty, GTX, LIMIT, False)
    return True


@njit
def market_making_algo_traced(hbt, trace_keys, trace_values):
    """market_making_algo plus a state row appended to the trace whenever num_trades changes."""
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    lot_size = hbt.depth(asset_no).lot_size
    last_trades = np.zeros(1, np.int64)
    while hbt.elapse(10_000_000) == 0:
        _common.record_state(hbt, asset_no, trace_keys, trace_values, last_trades)
        hbt.clear_inactive_orders(asset_no)
        depth = hbt.depth(asset_no)
        mid_price = (depth.best_bid + depth.best_ask) / 2.0
        position = hbt.position(asset_no)
        half_spread = 0.0005 * mid_price
        skew = -0.001 * position
        reservation_price = mid_price + skew
        new_bid = reservation_price - half_spread
        new_ask = reservation_price + half_spread
        new_bid_tick = min(np.round(new_bid / tick_size), depth.best_bid_tick)
        new_ask_tick = max(np.round(new_ask / tick_size), depth.best_ask_tick)
        order_qty = 100 / mid_price
        order_qty = np.round(order_qty / lot_size) * lot_size
        hbt.submit_buy_order(asset_no, new_bid_tick, new_bid_tick * tick_size, order_qty, GTX, LIMIT, False)
        hbt.submit_sell_order(asset_no, new_ask_tick, new_ask_tick * tick_size, order_qty, GTX, LIMIT, False)
    return True


def run(hbt, cfg):
    if cfg.get("trace"):
        trace = _common.new_trace()
        market_making_algo_traced(hbt, *trace)
        return {"trace": _common.trace_list(trace)}
    market_making_algo(hbt)
    return {}


if __name__ == '__main__':
    _common.main(run)
