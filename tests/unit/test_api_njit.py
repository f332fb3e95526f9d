"""The bot inside a user's @njit function: the API surface strategies use, on hand-built events."""
import numpy as np
from numba import njit

from hftbacktest import GTC, LIMIT, BacktestAsset, HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest

from _engine_data import ask, bid, rows, sell_trade


@njit
def strategy(hbt, out):
    out[0] = hbt.current_timestamp
    hbt.elapse(100)
    d = hbt.depth(0)
    out[1] = d.best_bid
    out[2] = d.best_ask_tick
    out[3] = d.bid_qty_at_tick(99) + d.best_ask_qty
    out[4] = hbt.submit_buy_order(0, 1, d.best_bid - d.tick_size, 1.0, GTC, LIMIT, True)
    out[5] = hbt.submit_buy_order(0, 2.0, 97.0, 1.0, GTC, LIMIT, False)  # float ids work like the reference
    hbt.wait_order_response(0, 2, 1000)
    n = 0
    it = hbt.orders(0).values()
    while it.has_next():
        o = it.get()
        if o.cancellable and o.price_tick == 97:
            hbt.cancel(0, o.order_id, False)
        n += 1
    out[6] = n
    out[7] = 1 if (1 in hbt.orders(0)) else 0
    order = hbt.orders(0).get(1)
    out[8] = order.price if order is not None else -1.0
    hbt.elapse(10_000)
    out[9] = hbt.state_values(0).num_trades
    out[10] = hbt.position(0)
    out[11] = hbt.num_assets
    out[12] = -1
    lat = hbt.feed_latency(0)
    if lat is not None:
        exch_ts, local_ts = lat
        out[12] = local_ts
    return hbt.elapse(1_000_000)


def test_api_inside_njit():
    data = rows(bid(1000, 99.0, 2.0), ask(1000, 101.0, 3.0), bid(1100, 98.0, 1.0), sell_trade(3000, 98.0, 2.0),
                bid(20000, 97.0, 1.0))
    asset = BacktestAsset().data(data).tick_size(1.0).lot_size(1.0).risk_adverse_queue_model()
    hbt = HashMapMarketDepthBacktest([asset.constant_order_latency(10, 10)])
    out = np.zeros(13)
    rc = strategy(hbt, out)
    assert out[0] == 2**63 - 1
    assert list(out[1:5]) == [99.0, 101.0, 2.0 + 3.0, 0.0]
    assert out[5] == 0 and out[6] == 2 and out[7] == 1 and out[8] == 98.0
    # buy 1 @98 queued behind 1 (level 98 qty 1 at arrival): sell trade 2 @98 overruns by 1 lot -> filled
    assert out[9] == 1 and out[10] == 1.0
    assert out[11] == 1 and out[12] == 3000  # last local row processed: the trade
    assert rc == 1  # end of data
    assert hbt.orders(0).get(2).status == 4  # cancelled


def test_roi_views():
    data = rows(bid(1000, 99.0, 2.0), ask(1000, 101.0, 3.0), ask(1000, 150.0, 3.0))
    asset = BacktestAsset().data(data).tick_size(1.0).lot_size(1.0).roi_lb(90.0).roi_ub(110.0)
    hbt = ROIVectorMarketDepthBacktest([asset])
    hbt.elapse(1)
    d = hbt.depth(0)
    assert (d.roi_lb_tick, d.roi_ub_tick) == (90, 110)
    assert d.bid_depth[99 - 90] == 2.0 and d.ask_depth.shape == (21,)
    assert np.isnan(d.ask_qty_at_tick(150))
    assert d.best_ask_qty == 3.0
    compat = ROIVectorMarketDepthBacktest([asset.reference_compatible(True)])
    compat.elapse(1)
    assert compat.depth(0).best_ask_qty == 101.0  # reference binding bug reproduced on request


@njit
def _touch(hbt):
    d = hbt.depth(0)
    return d.best_bid, d.best_ask, d.best_bid_tick, d.best_ask_tick


def test_empty_book_prices_are_nan():
    data = rows(bid(1000, 99.0, 2.0), bid(2000, 99.0, 0.0))  # the only level is deleted at 2000
    hbt = HashMapMarketDepthBacktest([BacktestAsset().data(data).tick_size(0.5).lot_size(1.0)])
    hbt.elapse(500)  # the clock starts at the first row (1000)
    bb, ba, bbt, _ = _touch(hbt)
    assert (bb, bbt) == (99.0, 198) and np.isnan(ba)
    hbt.elapse(1000)
    bb, ba, bbt, bat = _touch(hbt)
    assert np.isnan(bb) and np.isnan(ba) and (bbt, bat) == (-2**63, 2**63 - 1)
    assert np.isnan(hbt.depth(0).best_bid) and np.isnan(hbt.depth(0).best_ask)
