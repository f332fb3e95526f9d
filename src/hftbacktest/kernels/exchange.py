"""The simulated exchange: THIS is where fills happen (order entry, queue and resting fills).

Each asset's exchange side has its own depth (`s.depth_x`, fed at exch_ts), its own state (`s.sv_x`), the
resting-order table `s.ord_x` (with queue positions and per-side price ladders) and replies to the local side
through `s.to_local`. Exchange model code `s.exch_model`: EXCH_NO_PARTIAL_FILL or EXCH_PARTIAL_FILL.
`s.compat` reproduces the reference bugs #312 (zombie fill -> error 14) and PR #317 (stale leaves_qty on
re-queue), and #316 (partial fills not applied locally, see local.py); otherwise they are fixed.

Kernels return 0 or an error code (10 order id exists, 13 invalid request, 14 invalid order status).
"""
from __future__ import annotations

import numpy as np

from .._numba_tricks.borrow import borrowed
from ..types import (
    BUY,
    BUY_EVENT,
    CANCELED,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    GTX,
    IOC,
    LIMIT,
    NEW,
    NONE,
    PARTIALLY_FILLED,
    REJECTED,
    REPLACED,
    SELL_EVENT,
    TRADE_EVENT,
    ReturnCode,
)
from . import depth as dp
from . import perp
from . import orders as ob
from .models import (
    EXCH_PARTIAL_FILL,
    LATENCY_INTP,
    queue_depth,
    queue_is_filled,
    queue_trade,
    trade_amount,
    trade_fee,
)
from .numeric import I64_MAX, I64_MIN, rha

OK = int(ReturnCode.OK)
ERR_ORDER_ID_EXIST = int(ReturnCode.ORDER_ID_EXIST)
ERR_INVALID_ORDER_REQUEST = int(ReturnCode.INVALID_ORDER_REQUEST)
ERR_INVALID_ORDER_STATUS = int(ReturnCode.INVALID_ORDER_STATUS)


@borrowed(inline="always")
def response_latency(s, ts):
    if s.lat_model == LATENCY_INTP:
        return perp.response_latency(s, ts)
    return s.lat_resp


@borrowed
def respond(s, src, i):
    """Send a copy of order src[i] back to the local side (arrives after the response latency)."""
    ts = src[i].exch_timestamp
    ob.bus_append(s.to_local, src, i, ts + response_latency(s, ts))


@borrowed
def apply_fill(s, sv, o):
    """Account one execution of order record `o` into state record array `sv`."""
    price = o.exec_price_tick * s.tick
    qty = o.exec_qty
    amount = trade_amount(s.asset_type, s.cs, price, qty)
    side = 1.0 if o.side == BUY else -1.0
    st = sv[0]
    st.position += qty * side
    st.balance -= amount * side
    st.fee += trade_fee(s.fee_model, s.maker_fee, s.taker_fee, o.maker, amount, qty)
    st.num_trades += 1
    st.trading_volume += qty
    st.trading_value += amount


@borrowed
def fill(s, src, i, ts, maker, tick, exec_qty):
    """Execute exec_qty of order src[i] (maker at its own price, taker at `tick`); updates the exchange state."""
    o = src[i]
    st = o.status
    if st == EXPIRED or st == CANCELED or st == FILLED:
        return ERR_INVALID_ORDER_STATUS
    o.maker = maker
    o.exec_price_tick = o.price_tick if maker else tick
    o.exec_qty = exec_qty
    o.leaves_qty -= exec_qty
    if s.exch_model == EXCH_PARTIAL_FILL and rha(o.leaves_qty / s.lot) > 0:
        o.status = PARTIALLY_FILLED
    else:
        o.status = FILLED
    o.exch_timestamp = ts
    apply_fill(s, s.sv_x, o)
    return OK


# --- resting orders reached by the market -----------------------------------------------------------------------------


@borrowed
def _fill_resting_all(s, slot, ts):
    """Fill the whole remaining qty of a resting order as maker, reply, and remove it from the book."""
    t = s.ord_x
    rc = fill(s, t.rec, slot, ts, np.bool_(True), np.int64(0), t.rec[slot].leaves_qty)
    if rc != OK:
        return rc
    respond(s, t.rec, slot)
    ob.ladder_remove(t, slot)
    return OK


@borrowed
def _queue_fill(s, slot, ts, qty):
    """A trade at exactly the order's price: advance the queue and fill what overran it."""
    t = s.ord_x
    queue_trade(s.queue_model, t.qf, t.qc, slot, qty)
    f = queue_is_filled(t.qf, slot, s.lot)
    if f <= 0.0:
        return OK
    if s.exch_model != EXCH_PARTIAL_FILL:
        return _fill_resting_all(s, slot, ts)
    leaves = t.rec[slot].leaves_qty
    if f > leaves or (f >= leaves and not s.compat):
        return _fill_resting_all(s, slot, ts)
    rc = fill(s, t.rec, slot, ts, np.bool_(True), np.int64(0), f)
    if rc != OK:
        return rc
    respond(s, t.rec, slot)
    if t.rec[slot].status == FILLED and not s.compat:
        ob.ladder_remove(t, slot)  # compat keeps the zombie (reference bug #312)
    return OK


@borrowed(inline="always")
def _on_bid(s, px, qty, ts):
    t = s.ord_x
    tick, prev_best, new_best, prev_qty = dp.update_bid(s.depth_x, px, qty)
    if t.nbuy > 0 and tick <= t.max_buy:
        slot = ob.ladder_head(t, np.bool_(True), tick)
        while slot >= 0:
            queue_depth(s.queue_model, s.queue_n, t.qf, t.qc, slot, prev_qty, qty, s.queue_fn)
            slot = t.lnext[slot]
    if new_best > prev_best and t.nsell > 0 and t.min_sell <= new_best:
        every = prev_best == I64_MIN or t.n < new_best - prev_best
        for slot in range(t.top):
            if t.used[slot] == 1 and t.rec[slot].side != BUY:
                p = t.rec[slot].price_tick
                if p <= new_best and (every or p > prev_best):
                    rc = _fill_resting_all(s, slot, ts)
                    if rc != OK:
                        return rc
    return OK


@borrowed(inline="always")
def _on_ask(s, px, qty, ts):
    t = s.ord_x
    tick, prev_best, new_best, prev_qty = dp.update_ask(s.depth_x, px, qty)
    if t.nsell > 0 and tick >= t.min_sell:
        slot = ob.ladder_head(t, np.bool_(False), tick)
        while slot >= 0:
            queue_depth(s.queue_model, s.queue_n, t.qf, t.qc, slot, prev_qty, qty, s.queue_fn)
            slot = t.lnext[slot]
    if new_best < prev_best and t.nbuy > 0 and t.max_buy >= new_best:
        every = prev_best == I64_MAX or t.n < prev_best - new_best
        for slot in range(t.top):
            if t.used[slot] == 1 and t.rec[slot].side == BUY:
                p = t.rec[slot].price_tick
                if p >= new_best and (every or p < prev_best):
                    rc = _fill_resting_all(s, slot, ts)
                    if rc != OK:
                        return rc
    return OK


@borrowed(inline="always")
def _on_buy_trade(s, px, qty, ts):
    """Buyer-initiated trade: may fill resting sells at or below the trade price."""
    t = s.ord_x
    if t.nsell == 0:
        return OK
    tt = rha(px / s.tick)
    if t.min_sell > tt:
        return OK
    bb = s.depth_x.bb
    every = bb == I64_MIN or t.n < tt - bb
    if not every and tt <= bb:
        return OK
    if t.min_sell == tt:  # only orders exactly at the trade price: walk that ladder level
        slot = ob.ladder_head(t, np.bool_(False), tt)
        while slot >= 0:
            nxt = t.lnext[slot]
            rc = _queue_fill(s, slot, ts, qty)
            if rc != OK:
                return rc
            slot = nxt
        return OK
    for slot in range(t.top):
        if t.used[slot] == 1 and t.rec[slot].side != BUY:
            p = t.rec[slot].price_tick
            if p > tt or (not every and p <= bb):
                continue
            if p < tt:
                rc = _fill_resting_all(s, slot, ts)
            else:
                rc = _queue_fill(s, slot, ts, qty)
            if rc != OK:
                return rc
    return OK


@borrowed(inline="always")
def _on_sell_trade(s, px, qty, ts):
    """Seller-initiated trade: may fill resting buys at or above the trade price."""
    t = s.ord_x
    if t.nbuy == 0:
        return OK
    tt = rha(px / s.tick)
    if t.max_buy < tt:
        return OK
    ba = s.depth_x.ba
    every = ba == I64_MAX or t.n < ba - tt
    if not every and tt >= ba:
        return OK
    if t.max_buy == tt:
        slot = ob.ladder_head(t, np.bool_(True), tt)
        while slot >= 0:
            nxt = t.lnext[slot]
            rc = _queue_fill(s, slot, ts, qty)
            if rc != OK:
                return rc
            slot = nxt
        return OK
    for slot in range(t.top):
        if t.used[slot] == 1 and t.rec[slot].side == BUY:
            p = t.rec[slot].price_tick
            if p < tt or (not every and p >= ba):
                continue
            if p > tt:
                rc = _fill_resting_all(s, slot, ts)
            else:
                rc = _queue_fill(s, slot, ts, qty)
            if rc != OK:
                return rc
    return OK


@borrowed(inline="always")
def process_data(s, ev, ts, px, qty):
    """One EXCH row (dispatched on its event flags in the reference's order)."""
    kind = ev & 0xFF
    if kind == DEPTH_EVENT or kind == DEPTH_SNAPSHOT_EVENT:
        if ev & BUY_EVENT:
            return _on_bid(s, px, qty, ts)
        if ev & SELL_EVENT:
            return _on_ask(s, px, qty, ts)
        return OK
    if kind == TRADE_EVENT:
        if ev & BUY_EVENT:
            return _on_buy_trade(s, px, qty, ts)
        if ev & SELL_EVENT:
            return _on_sell_trade(s, px, qty, ts)
        return OK
    if kind == DEPTH_CLEAR_EVENT:
        if ev & BUY_EVENT:
            dp.clear_bid(s.depth_x, px)
        elif ev & SELL_EVENT:
            dp.clear_ask(s.depth_x, px)
        else:
            dp.clear_all(s.depth_x)
    return OK


# --- order entry ------------------------------------------------------------------------------------------------------


@borrowed(inline="always")
def _rest(s, src, i, ts):
    o = src[i]
    o.status = NEW
    o.exch_timestamp = ts
    t = s.ord_x
    slot = ob.insert(t, src, i)
    if o.side == BUY:
        t.qf[slot] = dp.bid_qty_at(s.depth_x, o.price_tick)
    else:
        t.qf[slot] = dp.ask_qty_at(s.depth_x, o.price_tick)
    t.qc[slot] = 0.0
    ob.ladder_add(t, slot)


@borrowed
def _taker_partial(s, src, i, ts, is_buy, start, stop, include_stop):
    """Walk the opposite side from `start` towards `stop`, filling level by level (PartialFillExchange taker).

    In compat mode only the final reply is sent (reference: partial executions never reach local, #316); otherwise
    every level's execution is replied separately so the local state sees each one."""
    o = src[i]
    d = s.depth_x
    step = 1 if is_buy else -1
    tk = start
    while True:
        if is_buy:
            if tk > stop or (tk == stop and not include_stop):
                break
            q = dp.ask_qty_at(d, tk)
        else:
            if tk < stop or (tk == stop and not include_stop):
                break
            q = dp.bid_qty_at(d, tk)
        if q > 0.0:
            rc = fill(s, src, i, ts, np.bool_(False), tk, min(q, o.leaves_qty))
            if rc != OK:
                return rc
            if not s.compat and o.status != FILLED:
                respond(s, src, i)
            if o.status == FILLED:
                return OK
        tk += step
    return OK


@borrowed(inline="always")
def _ack_new_partial_cross(s, src, i, ts, is_buy):
    o = src[i]
    d = s.depth_x
    best = d.ba if is_buy else d.bb
    tif = o.time_in_force
    if o.order_type != LIMIT:
        stop = best + 99 if is_buy else best - 100
        rc = _taker_partial(s, src, i, ts, is_buy, best, stop, np.bool_(True))
        if rc != OK:
            return rc
        if o.status != FILLED:
            o.status = EXPIRED
            o.exch_timestamp = ts
        return OK
    if tif == GTX:
        o.status = EXPIRED
        o.exch_timestamp = ts
        return OK
    if tif == FOK:
        cum = 0.0
        need = rha(o.qty / s.lot)
        execute = False
        tk = best
        while (is_buy and tk <= o.price_tick) or (not is_buy and tk >= o.price_tick):
            cum += dp.ask_qty_at(d, tk) if is_buy else dp.bid_qty_at(d, tk)
            if rha(cum / s.lot) >= need:
                execute = True
                break
            tk += 1 if is_buy else -1
        if not execute:
            o.status = EXPIRED
            o.exch_timestamp = ts
            return OK
        return _taker_partial(s, src, i, ts, is_buy, best, o.price_tick, np.bool_(True))
    if tif == IOC:
        rc = _taker_partial(s, src, i, ts, is_buy, best, o.price_tick, np.bool_(True))
        if rc != OK:
            return rc
        if o.status != FILLED:
            o.status = EXPIRED
            o.exch_timestamp = ts
        return OK
    # GTC: walk the book (buy: excluding its own tick; sell: including it), then fill the rest at its price
    rc = _taker_partial(s, src, i, ts, is_buy, best, o.price_tick, not is_buy)
    if rc != OK:
        return rc
    if o.status != FILLED:
        rc = fill(s, src, i, ts, np.bool_(False), o.price_tick, o.leaves_qty)
    return rc


@borrowed
def ack_new(s, src, i, ts):
    """A new order arrives at the exchange: expire, fill as taker, or rest. Replies once."""
    o = src[i]
    if ob.find(s.ord_x, o.order_id) >= 0:
        return ERR_ORDER_ID_EXIST
    d = s.depth_x
    is_buy = o.side == BUY
    best = d.ba if is_buy else d.bb
    crossing = o.order_type != LIMIT or (o.price_tick >= best if is_buy else o.price_tick <= best)
    rc = OK
    if crossing:
        if s.exch_model == EXCH_PARTIAL_FILL:
            rc = _ack_new_partial_cross(s, src, i, ts, is_buy)
        elif o.order_type == LIMIT and o.time_in_force == GTX:
            o.status = EXPIRED
            o.exch_timestamp = ts
        else:
            rc = fill(s, src, i, ts, np.bool_(False), best, o.leaves_qty)
    elif o.time_in_force == GTC or o.time_in_force == GTX:
        _rest(s, src, i, ts)
    else:
        o.status = EXPIRED
        o.exch_timestamp = ts
    if rc != OK:
        return rc
    respond(s, src, i)
    return OK


@borrowed(inline="always")
def ack_cancel(s, src, i, ts):
    o = src[i]
    t = s.ord_x
    slot = ob.find(t, o.order_id)
    if slot < 0:
        o.req = REJECTED
        o.exch_timestamp = ts
        respond(s, src, i)
        return OK
    t.rec[slot].status = CANCELED
    t.rec[slot].exch_timestamp = ts
    respond(s, t.rec, slot)
    ob.ladder_remove(t, slot)
    return OK


@borrowed(inline="always")
def ack_modify(s, src, i, ts):
    o = src[i]
    t = s.ord_x
    slot = ob.find(t, o.order_id)
    if slot < 0:
        o.req = REJECTED
        o.exch_timestamp = ts
        respond(s, src, i)
        return OK
    stored = t.rec[slot]
    if o.price_tick != stored.price_tick or o.qty > stored.leaves_qty:
        ob.ladder_remove(t, slot)
        if not s.compat:
            o.leaves_qty = o.qty  # reference PR #317: the re-queued order keeps the stale leaves_qty
        return ack_new(s, src, i, ts)
    stored.qty = o.qty
    stored.leaves_qty = o.qty
    stored.exch_timestamp = ts
    o.leaves_qty = o.qty
    o.exch_timestamp = ts
    respond(s, src, i)
    return OK


@borrowed(inline="always")
def process_requests(s, ts):
    """Handle every request that reaches the exchange at ts (each produces exactly one reply)."""
    b = s.to_exch
    while ob.bus_head_ts(b) == ts:
        i = ob.bus_pop(b)
        o = b.rec[i]
        req = o.req
        o.req = NONE
        s.lat_lx[6] = req  # replies to this request travel in its latency lane
        if req == NEW:
            rc = ack_new(s, b.rec, i, ts)
        elif req == CANCELED:
            rc = ack_cancel(s, b.rec, i, ts)
        elif req == REPLACED:
            rc = ack_modify(s, b.rec, i, ts)
        else:
            o.req = req
            rc = ERR_INVALID_ORDER_REQUEST
        s.lat_lx[6] = 0
        if rc != OK:
            return rc
    return OK
