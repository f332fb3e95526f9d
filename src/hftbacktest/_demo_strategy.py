"""The demo's strategy, kept apart from `demo.py` so the CLI can register `demo` without importing numba."""
from __future__ import annotations

import numpy as np
from numba import njit

from .types import BUY, GTX, LIMIT, SELL

RECORD_EVERY = 10  # strategy steps (10 ms each) per recorded row


@njit(cache=True)
def market_making_algo(hbt, recorder, half_spread_bps, skew_per_position, order_value, max_position):
    """The documentation's market maker: every 10 ms quote one bid and one ask around the mid, skewed against the
    inventory, cancel quotes at other prices, and stop adding to a side once |position| reaches `max_position`."""
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    lot_size = hbt.depth(asset_no).lot_size
    step = 0
    while hbt.elapse(10_000_000) == 0:
        step += 1
        if step % RECORD_EVERY == 0:
            recorder.record(hbt)
        hbt.clear_inactive_orders(asset_no)
        depth = hbt.depth(asset_no)
        if not (depth.best_bid > 0.0 and depth.best_ask > depth.best_bid and depth.best_ask < 1e12):
            continue  # no two-sided book yet (the feed starts before the first snapshot)
        mid_price = (depth.best_bid + depth.best_ask) / 2.0
        position = hbt.position(asset_no)
        half_spread = half_spread_bps * 1e-4 * mid_price
        reservation_price = mid_price - skew_per_position * position
        new_bid_tick = min(np.round((reservation_price - half_spread) / tick_size), depth.best_bid_tick)
        new_ask_tick = max(np.round((reservation_price + half_spread) / tick_size), depth.best_ask_tick)
        order_qty = np.round(order_value / mid_price / lot_size) * lot_size

        orders = hbt.orders(asset_no)
        values = orders.values()
        while values.has_next():
            order = values.get()
            if order.cancellable and (
                (order.side == BUY and (order.price_tick != new_bid_tick or position >= max_position))
                or (order.side == SELL and (order.price_tick != new_ask_tick or position <= -max_position))
            ):
                hbt.cancel(asset_no, order.order_id, False)
        # order id = price tick: an unchanged quote keeps its queue position
        if position < max_position and int(new_bid_tick) not in orders:
            hbt.submit_buy_order(asset_no, new_bid_tick, new_bid_tick * tick_size, order_qty, GTX, LIMIT, False)
        if position > -max_position and int(new_ask_tick) not in orders:
            hbt.submit_sell_order(asset_no, new_ask_tick, new_ask_tick * tick_size, order_qty, GTX, LIMIT, False)
    return True
