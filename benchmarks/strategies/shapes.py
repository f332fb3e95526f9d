"""Strategy shapes users write, for benchmarks/matrix.py (the same file runs under both packages).

    python benchmarks/strategies/shapes.py RUNS.json      (see _common.py for the run format)

run["params"]["shape"] picks one; every shape ends its step by re-quoting a ladder (`_ladder`): `levels` GTX
quotes a side, `spacing` ticks apart, from the top ticks the shape chose; a working quote off the new ladder is
cancelled (in order-id order, so hash-map iteration order never matters), a rung without an order gets a new one
(fresh order ids from a counter: a reused id can meet a partly filled order still alive at the exchange), skipping
the side that would add to an inventory beyond `max_notional`. Every asset is quoted each step.
  requote    elapse(step); ladder from the touch (with levels >= 10 every mid move re-sends most of the book)
  roi_scan   elapse(step); sum the resting quantity over `window` ticks on each side with bid/ask_qty_at_tick and
             move the top quotes by up to 2 ticks towards the heavier side
  wait_feed  wait_next_feed(True, 1 s) event loop; re-quote only when the touch changed since the last quote
  trades     elapse(step); net signed volume of hbt.last_trades (decayed), clear_last_trades, skew by its sign
Params: shape, levels, spacing, step, notional, max_notional, window.
"""
import numpy as np
from numba import njit
from hftbacktest import BUY, GTX, LIMIT
from hftbacktest.types import BUY_EVENT

import _common

SHAPES = {"requote": 0, "roi_scan": 1, "wait_feed": 2, "trades": 3}
DEFAULTS = {"levels": 1, "spacing": 1, "step": 10_000_000, "notional": 100.0, "max_notional": 2_000.0,
            "window": 2_000}


@njit
def _ladder(hbt, a, top_bid, top_ask, levels, spacing, notional, max_notional, ids, have):
    depth = hbt.depth(a)
    mid = (depth.best_bid + depth.best_ask) / 2.0
    lot = depth.lot_size
    qty = max(np.round(notional / mid / lot), 1.0) * lot
    inventory = hbt.position(a) * mid
    can_buy = inventory < max_notional
    can_sell = inventory > -max_notional
    have[:] = False
    n = 0
    values = hbt.orders(a).values()
    while values.has_next():
        order = values.get()
        t = order.price_tick
        if order.side == BUY:
            k = (top_bid - t) // spacing
            on = can_buy and 0 <= k < levels and (top_bid - t) % spacing == 0
            slot = k
        else:
            k = (t - top_ask) // spacing
            on = can_sell and 0 <= k < levels and (t - top_ask) % spacing == 0
            slot = levels + k
        if on:
            have[slot] = True  # also while its own request is in flight: no second order on the rung
        elif order.cancellable and n < ids.shape[0] - 1:
            ids[n] = order.order_id
            n += 1
    for oid in np.sort(ids[:n]):
        hbt.cancel(a, oid, False)
    tick = depth.tick_size
    last = ids.shape[0] - 1  # the last slot holds the next fresh order id
    for k in range(levels):
        if can_buy and not have[k]:
            t = top_bid - k * spacing
            hbt.submit_buy_order(a, ids[last], t * tick, qty, GTX, LIMIT, False)
            ids[last] += 1
        if can_sell and not have[levels + k]:
            t = top_ask + k * spacing
            hbt.submit_sell_order(a, ids[last], t * tick, qty, GTX, LIMIT, False)
            ids[last] += 1


@njit
def _sane(depth):
    return depth.best_bid > 0.0 and depth.best_ask > depth.best_bid


@njit
def shapes_algo(hbt, n_assets, shape, levels, spacing, step, notional, max_notional, window):
    ids = np.zeros(4 * levels + 256, np.int64)
    ids[-1] = 1
    have = np.zeros(2 * levels, np.bool_)
    last = np.zeros((n_assets, 2), np.int64)
    flow = np.zeros(n_assets)
    steps = 0
    while True:
        if shape == 2:
            rc = hbt.wait_next_feed(True, 1_000_000_000)
            if rc != 0 and rc != 2 and rc != 3:
                break
        elif hbt.elapse(step) != 0:
            break
        steps += 1
        for a in range(n_assets):
            if shape == 3:  # read (and drop) the trades even when the book is not quotable
                trades = hbt.last_trades(a)
                net = 0.0
                for i in range(len(trades)):
                    if trades[i].ev & BUY_EVENT == BUY_EVENT:
                        net += trades[i].qty
                    else:
                        net -= trades[i].qty
                hbt.clear_last_trades(a)
                flow[a] = 0.9 * flow[a] + net
            depth = hbt.depth(a)
            if not _sane(depth):
                continue
            hbt.clear_inactive_orders(a)
            bb = depth.best_bid_tick
            ba = depth.best_ask_tick
            if shape == 1:
                bq = 0.0
                aq = 0.0
                for t in range(bb - window, bb + 1):
                    bq += depth.bid_qty_at_tick(t)
                for t in range(ba, ba + window + 1):
                    aq += depth.ask_qty_at_tick(t)
                shift = int(np.round(2.0 * (bq - aq) / (bq + aq))) if bq + aq > 0.0 else 0
                bb = min(bb + shift, ba - 1)
                ba = max(ba + shift, bb + 1)
            elif shape == 2:
                if bb == last[a, 0] and ba == last[a, 1]:
                    continue
                last[a, 0] = bb
                last[a, 1] = ba
            elif shape == 3:
                if flow[a] > 0.0:
                    bb -= 1
                elif flow[a] < 0.0:
                    ba += 1
            _ladder(hbt, a, bb, ba, levels, spacing, notional, max_notional, ids, have)
    return steps


def run(hbt, cfg):
    p = {**DEFAULTS, **cfg.get("params", {})}
    steps = shapes_algo(hbt, len(cfg["assets"]), SHAPES[p["shape"]], int(p["levels"]), int(p["spacing"]),
                        int(p["step"]), float(p["notional"]), float(p["max_notional"]), int(p["window"]))
    return {"steps": int(steps)}


if __name__ == "__main__":
    _common.main(run)
