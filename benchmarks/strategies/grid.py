"""A grid market maker on N assets that exercises the whole order API (for parity runs).

    python benchmarks/strategies/grid.py RUNS.json      (see _common.py for the run format)

Per step (alternating `wait_next_feed(True, 100 ms)` and `elapse(25 ms)`), for every asset with a sane book:
`clear_inactive_orders`; walk `hbt.orders(a).values()` with `has_next()/get()` and, for each `cancellable` quote
whose `price_tick` is off its grid slot, `modify` it (small move) or `cancel` it (large move, or inventory limit);
submit the missing slots (GTX inside, GTC on the outermost level); now and then send an IOC, FOK or MARKET
taker order against the inventory and `wait_order_response` for it, or submit with `wait=True`.
A cancel of an unknown id and a second request on a busy order check error codes 12 and 11.
Actions found while iterating are applied in order-id order, so the hash-map iteration order never matters.
Quotes join the touch: bid slot k sits k*spacing ticks below the best bid, pushed further away by `skew` ticks per
`notional` of inventory on the side that would add to it; a quote within `keep` spacings of its slot keeps its
queue place, one within `far` spacings is modified, a farther one is cancelled (and re-sent on a later step).
Params (run["params"]): levels, spacing (relative to mid), keep, far, notional, max_notional, taker_every, skew.
"""
import numpy as np
from numba import njit
from hftbacktest import BUY, SELL, GTC, GTX, LIMIT, MARKET  # noqa: F401 (SELL documents the side convention)
from hftbacktest.order import FOK, IOC

import _common

BID_BASE = 1  # quote slot k on the bid side has order id BID_BASE + k
ASK_BASE = 101
TAKER_BASE = 1_000_000  # taker orders get fresh ids from here
ACT_MODIFY = 1
ACT_CANCEL = 2


@njit
def _slot_target(is_buy, k, spacing, away_bid, away_ask, best_bid_tick, best_ask_tick):
    if is_buy:
        return best_bid_tick - k * spacing - away_bid
    return best_ask_tick + k * spacing + away_ask


@njit
def grid_algo(hbt, params, codes, trace_keys, trace_values, tracing):
    levels = int(params[0])
    spacing_rel = params[1]
    keep = params[2]
    far = params[3]
    notional = params[4]
    max_notional = params[5]
    taker_every = int(params[6])
    skew_ticks = params[7]
    n = hbt.num_assets
    next_taker = np.full(n, TAKER_BASE, np.int64)
    last_trades = np.zeros(n, np.int64)
    act_id = np.zeros(2 * levels + 64, np.int64)
    act_kind = np.zeros(2 * levels + 64, np.int64)
    act_tick = np.zeros(2 * levels + 64, np.int64)
    step = 0
    while True:
        if step % 2 == 0:
            rc = hbt.wait_next_feed(True, 100_000_000)
        else:
            rc = hbt.elapse(25_000_000)
        codes[0, min(rc, 127)] += 1
        if rc != 0 and rc != 2 and rc != 3:
            break
        step += 1
        for a in range(n):
            if tracing:
                _common.record_state(hbt, a, trace_keys, trace_values, last_trades)
            hbt.clear_inactive_orders(a)
            depth = hbt.depth(a)
            best_bid_tick = depth.best_bid_tick
            best_ask_tick = depth.best_ask_tick
            if not (np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask)) or best_bid_tick >= best_ask_tick:
                continue
            tick = depth.tick_size
            lot = depth.lot_size
            mid = (depth.best_bid + depth.best_ask) / 2.0
            position = hbt.state_values(a).position
            pos_notional = position * mid
            qty = max(np.round(notional / mid / lot), 1.0) * lot
            spacing = max(int(np.round(spacing_rel * mid / tick)), 1)
            skew = int(np.round(pos_notional / notional * skew_ticks))
            away_bid = max(skew, 0)  # long: bid lower
            away_ask = max(-skew, 0)  # short: ask higher
            can_buy = pos_notional < max_notional
            can_sell = pos_notional > -max_notional

            # decide what to do with each live quote while iterating, act afterwards in order-id order
            n_act = 0
            values = hbt.orders(a).values()
            while values.has_next():
                order = values.get()
                oid = np.int64(order.order_id)
                if not order.cancellable or oid >= TAKER_BASE or n_act == act_id.shape[0]:
                    continue
                is_buy = order.side == BUY
                k = oid - BID_BASE if is_buy else oid - ASK_BASE
                target = _slot_target(is_buy, k, spacing, away_bid, away_ask, best_bid_tick, best_ask_tick)
                off = abs(np.int64(order.price_tick) - target)
                if (is_buy and not can_buy) or (not is_buy and not can_sell) or off > far * spacing:
                    act_kind[n_act] = ACT_CANCEL
                elif off > keep * spacing:
                    act_kind[n_act] = ACT_MODIFY
                else:
                    continue
                act_id[n_act] = oid
                act_tick[n_act] = target
                n_act += 1
            order_by_id = np.argsort(act_id[:n_act])
            for j in order_by_id:
                if act_kind[j] == ACT_CANCEL:
                    rc = hbt.cancel(a, act_id[j], False)
                else:
                    rc = hbt.modify(a, act_id[j], act_tick[j] * tick, qty, False)
                codes[1, min(rc, 127)] += 1
                if step % 5 == 0:  # a second request while the first is in flight: 11
                    rc = hbt.cancel(a, act_id[j], False)
                    codes[1, min(rc, 127)] += 1

            orders = hbt.orders(a)
            for k in range(levels):
                tif = GTC if k == levels - 1 else GTX
                if can_buy and not (BID_BASE + k) in orders:
                    t = _slot_target(True, k, spacing, away_bid, away_ask, best_bid_tick, best_ask_tick)
                    rc = hbt.submit_buy_order(a, BID_BASE + k, t * tick, qty, tif, LIMIT, False)
                    codes[1, min(rc, 127)] += 1
                if can_sell and not (ASK_BASE + k) in orders:
                    t = _slot_target(False, k, spacing, away_bid, away_ask, best_bid_tick, best_ask_tick)
                    rc = hbt.submit_sell_order(a, ASK_BASE + k, t * tick, qty, tif, LIMIT, False)
                    codes[1, min(rc, 127)] += 1

            # occasional taker order that works the inventory down, cycling through IOC / FOK / MARKET / wait=True
            if (step + 7 * a) % taker_every == 0:
                oid = next_taker[a]
                next_taker[a] += 1
                kind = (step // taker_every) % 4
                buy = position <= 0.0
                if kind == 0:
                    px = (best_ask_tick if buy else best_bid_tick) * tick
                    tif, ord_type = IOC, LIMIT
                elif kind == 1:
                    px = ((best_ask_tick + 2) if buy else (best_bid_tick - 2)) * tick
                    tif, ord_type = FOK, LIMIT
                elif kind == 2:
                    px = mid
                    tif, ord_type = IOC, MARKET
                else:
                    px = (best_ask_tick if buy else best_bid_tick) * tick
                    tif, ord_type = GTC, LIMIT
                wait = kind == 3
                if buy:
                    rc = hbt.submit_buy_order(a, oid, px, qty, tif, ord_type, wait)
                else:
                    rc = hbt.submit_sell_order(a, oid, px, qty, tif, ord_type, wait)
                codes[1, min(rc, 127)] += 1
                if not wait:
                    rc = hbt.wait_order_response(a, oid, 5_000_000_000)
                    codes[2, min(rc, 127)] += 1
                rc = hbt.cancel(a, TAKER_BASE - 1, False)  # never used: 12
                codes[1, min(rc, 127)] += 1
    return step


DEFAULT_PARAMS = {"levels": 3, "spacing": 0.00001, "keep": 1.0, "far": 4.0, "notional": 100.0,
                  "max_notional": 1000.0, "taker_every": 100, "skew": 1.0}


def run(hbt, cfg):
    p = {**DEFAULT_PARAMS, **cfg.get("params", {})}
    params = np.array([p["levels"], p["spacing"], p["keep"], p["far"], p["notional"], p["max_notional"],
                       p["taker_every"], p["skew"]], np.float64)
    codes = _common.new_codes()
    trace = _common.new_trace()
    steps = grid_algo(hbt, params, codes, *trace, bool(cfg.get("trace")))
    out = {"steps": int(steps), "codes": _common.codes_dict(codes)}
    if cfg.get("trace"):
        out["trace"] = _common.trace_list(trace)
    return out


if __name__ == "__main__":
    _common.main(run)
