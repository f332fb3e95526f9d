"""Values handed to user code stay valid memory across engine growth (no dangling record or array views)."""
import numpy as np
from numba import njit

from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest
from hftbacktest.types import GTC, LIMIT

from _engine_data import ask, bid, rows

BOOK = rows(bid(1_000, 99.0, 2.0), ask(1_000, 101.0, 3.0), bid(2_000, 98.0, 1.0), ask(3_000, 150.0, 1.0),
            bid(4_000, 40.0, 1.0))


@njit
def _hold_order_record_across_growth(hbt, n):
    hbt.elapse(100)
    for k in range(n):
        hbt.submit_buy_order(0, 100_000 + k, 50.0, 1.0, GTC, LIMIT, False)
    o = hbt.orders(0).get(100_000 + n - 1)  # a record (bare pointer) into the table's current array
    for k in range(2 * n):  # the table grows twice: its array is replaced each time
        hbt.submit_buy_order(0, 200_000 + k, 50.0, 2.0, GTC, LIMIT, False)
    return o.order_id, o.qty, o.price_tick


def test_order_record_held_across_table_growth_stays_readable():
    # 3000 orders: a 4096-slot array (~460 kB, returned to the OS when freed); without keeping it, the record read
    # reused memory (garbage ids) or segfaulted
    hbt = HashMapMarketDepthBacktest([BacktestAsset().data(BOOK).tick_size(1.0).lot_size(1.0)])
    assert _hold_order_record_across_growth(hbt, 3000) == (102_999, 1.0, 50)


@njit
def _hold_depth_arrays(hbt):
    d = hbt.depth(0)
    bids = d.bid_depth
    asks = d.ask_depth
    hbt.elapse(10_000)  # every update, re-centring included, happens in place
    return bids.shape[0], bids[99 - d.roi_lb_tick], asks[150 - d.roi_lb_tick], np.sum(bids)


def test_roi_depth_arrays_held_across_elapse_are_the_live_book():
    asset = BacktestAsset().data(BOOK).tick_size(1.0).lot_size(1.0).roi_lb(0.0).roi_ub(200.0)
    n, b99, a150, total = _hold_depth_arrays(ROIVectorMarketDepthBacktest([asset]))
    assert (n, b99, a150, total) == (201, 2.0, 1.0, 4.0)
