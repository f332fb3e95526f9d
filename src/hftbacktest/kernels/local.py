"""The local (strategy) side: its own depth fed at local_ts, the user's order table, requests and replies."""
from __future__ import annotations

import numpy as np
from numba import njit

from .._numba_tricks.borrow import borrowed
from ..types import (
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
    MARK_PRICE_EVENT,
    MARKET,
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
from . import orders as ob
from . import perp
from .exchange import apply_fill
from .models import LATENCY_INTP
from .numeric import resized, rha

OK = int(ReturnCode.OK)
ERR_ORDER_ID_EXIST = int(ReturnCode.ORDER_ID_EXIST)
ERR_ORDER_REQUEST_IN_PROCESS = int(ReturnCode.ORDER_REQUEST_IN_PROCESS)
ERR_ORDER_NOT_FOUND = int(ReturnCode.ORDER_NOT_FOUND)
ERR_INVALID_ORDER_REQUEST = int(ReturnCode.INVALID_ORDER_REQUEST)
_MAX_TICKS = 4.0e18  # a price whose tick number does not fit an int64 is refused, not saturated


@njit(cache=True, error_model="numpy")
def _grow_trades(s):
    s.trades = resized(s.trades, 2 * s.ntrades, 0, s.ntrades)


@borrowed(inline="always")
def process_data(s, data, k):
    """One LOCAL row data[k]."""
    r = data[k]
    ev = np.int64(r.ev)
    kind = ev & 0xFF
    if kind == DEPTH_EVENT or kind == DEPTH_SNAPSHOT_EVENT:
        if ev & BUY_EVENT:
            dp.update_bid(s.depth_l, r.px, r.qty)
        elif ev & SELL_EVENT:
            dp.update_ask(s.depth_l, r.px, r.qty)
    elif kind == DEPTH_CLEAR_EVENT:
        if ev & BUY_EVENT:
            dp.clear_bid(s.depth_l, r.px)
        elif ev & SELL_EVENT:
            dp.clear_ask(s.depth_l, r.px)
        else:
            dp.clear_all(s.depth_l)
    elif kind == TRADE_EVENT and s.record_trades:
        if s.ntrades == s.trades.shape[0]:
            _grow_trades(s)
        s.trades[s.ntrades] = r
        s.ntrades += 1
    elif kind == MARK_PRICE_EVENT:
        s.perp_f[0] = r.px
    s.feed_lat[0] = r.exch_ts
    s.feed_lat[1] = r.local_ts
    s.has_feed_lat = True


@borrowed(inline="always")
def process_responses(s, ts, wait_id, match_id, match_any):
    """Apply every reply arriving at ts. Returns True if one is for `wait_id` (when match_id) or,
    when match_any, if there was any reply."""
    b = s.to_local
    t = s.ord_l
    found = False
    while ob.bus_head_ts(b) == ts:
        i = ob.bus_pop(b)
        r = b.rec[i]
        if r.exch_timestamp > 0:
            s.ord_lat[0] = r.local_timestamp
            s.ord_lat[1] = r.exch_timestamp
            s.ord_lat[2] = ts
            s.has_ord_lat = True
        # A rejected cancel/modify echoes the local order back, including a fill the strategy already received;
        # applying it again would count a phantom fill (hftbacktest 2.4.4 does; reference_compatible keeps that).
        executed = r.status == FILLED or (r.status == PARTIALLY_FILLED and not s.compat)
        if executed and (r.req != REJECTED or s.compat):
            apply_fill(s, s.sv_l, r)
        slot = ob.find(t, r.order_id)
        if slot >= 0:
            o = t.rec[slot]
            if r.req == REJECTED:
                if r.local_timestamp == o.local_timestamp:
                    if o.req == NEW:
                        o.req = NONE
                        o.status = EXPIRED
                        t.dirty = True
                    else:
                        o.req = NONE
            else:
                local_ts = o.local_timestamp
                exch_ts = o.exch_timestamp
                t.rec[slot] = r
                o.local_timestamp = local_ts
                if r.exch_timestamp <= 0:
                    o.exch_timestamp = exch_ts
        elif r.req != REJECTED:
            slot = ob.insert(t, b.rec, i)
        if slot >= 0:
            st = t.rec[slot].status
            if st == EXPIRED or st == FILLED or st == CANCELED:
                t.dirty = True
        if match_any or (match_id and np.int64(r.order_id) == wait_id):
            found = True
    return found


@borrowed
def _send(s, slot, now):
    """Enqueue a copy of the local order as a request; returns True if it was rejected locally instead
    (negative entry latency from a recorded exchange rejection)."""
    t = s.ord_l
    if s.lat_model == LATENCY_INTP:
        lat = perp.entry_latency(s, np.int64(t.rec[slot].req), t.rec[slot].local_timestamp)
    else:
        lat = s.lat_entry
    if lat < 0:
        sc = s.scratch
        sc[0] = t.rec[slot]
        sc[0].req = REJECTED
        ob.bus_append(s.to_local, sc, np.int64(0), t.rec[slot].local_timestamp - lat)
        return True
    ob.bus_append(s.to_exch, t.rec, slot, t.rec[slot].local_timestamp + lat)
    return False


@borrowed(inline="always")
def valid_price_qty(s, price, qty, ord_type):
    """The rule for an order's price and quantity, shared by the backtest and the live bot (checked before
    anything is queued or sent): a finite quantity > 0; a finite price > 0 whose tick fits an int64
    (0 is also accepted for a MARKET order, whose price is not used)."""
    if not (np.isfinite(qty) and qty > 0.0):
        return False
    if not np.isfinite(price) or abs(price / s.tick) >= _MAX_TICKS:
        return False
    return price > 0.0 or (price == 0.0 and ord_type == MARKET)


@borrowed(inline="always")
def submit(s, now, oid, side, price, qty, tif, ord_type):
    t = s.ord_l
    if ob.find(t, oid) >= 0:
        return ERR_ORDER_ID_EXIST
    if not (tif == GTC or tif == GTX or tif == FOK or tif == IOC) or not (ord_type == LIMIT or ord_type == MARKET):
        return ERR_INVALID_ORDER_REQUEST
    if not valid_price_qty(s, price, qty, ord_type):
        return ERR_INVALID_ORDER_REQUEST
    sc = s.scratch
    sc[0] = sc[1]  # row 1 stays all zeros
    o = sc[0]
    o.qty = qty
    o.leaves_qty = qty
    o.price_tick = rha(price / s.tick)
    o.tick_size = s.tick
    o.local_timestamp = now
    o.order_id = np.uint64(oid)
    o.order_type = ord_type
    o.req = NEW
    o.status = NONE
    o.side = side
    o.time_in_force = tif
    slot = ob.insert(t, sc, np.int64(0))
    _send(s, slot, now)
    return OK


@borrowed(inline="always")
def modify(s, now, oid, price, qty):
    t = s.ord_l
    slot = ob.find(t, oid)
    if slot < 0:
        return ERR_ORDER_NOT_FOUND
    o = t.rec[slot]
    if o.req != NONE:
        return ERR_ORDER_REQUEST_IN_PROCESS
    if not valid_price_qty(s, price, qty, np.int64(o.order_type)):
        return ERR_INVALID_ORDER_REQUEST
    prev_tick = o.price_tick
    prev_qty = o.qty
    o.price_tick = rha(price / s.tick)
    o.qty = qty
    o.req = REPLACED
    o.local_timestamp = now
    if _send(s, slot, now):
        # a local rejection carries the pre-modify price and qty (reference behaviour)
        b = s.to_local
        b.rec[b.tail - 1].price_tick = prev_tick
        b.rec[b.tail - 1].qty = prev_qty
    return OK


@borrowed(inline="always")
def cancel(s, now, oid):
    t = s.ord_l
    slot = ob.find(t, oid)
    if slot < 0:
        return ERR_ORDER_NOT_FOUND
    o = t.rec[slot]
    if o.req != NONE:
        return ERR_ORDER_REQUEST_IN_PROCESS
    o.req = CANCELED
    o.local_timestamp = now
    _send(s, slot, now)
    return OK
