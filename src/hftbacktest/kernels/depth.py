"""Market depth: one dense, tick-indexed book per side with two behaviours selected at run time.

* mode HASHMAP reproduces the reference `HashMapMarketDepth`: unbounded price range (the arrays grow and keep an
  offset `base`), absent levels read 0.0, levels whose qty rounds to 0 lots are deleted.
* mode ROI reproduces `ROIVectorMarketDepth`: a fixed [roi_lb, roi_ub] tick window, updates outside it ignored,
  reads outside it NaN, and the reference's clear-depth quirks (see spec §8.3/§8.5).

A dense array is faster than a hash map for the per-event update and best-price searches and gives the same
answers, because both only ever ask "qty at tick t" and "first tick with qty > 0 in a range".
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.experimental import structref

from ..types import BUY_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, event_dtype
from .structbase import CompactStructRef
from .numeric import I64_MAX, I64_MIN, rha

MODE_HASHMAP = 0
MODE_ROI = 1

_INITIAL_HALF_SPAN = 4096


@structref.register
class DepthType(CompactStructRef):
    pass


depth_fields = [
    ("mode", types.int64),
    ("tick", types.float64),
    ("lot", types.float64),
    ("base", types.int64),  # tick of index 0 (ROI: roi_lb)
    ("bid", types.float64[::1]),
    ("ask", types.float64[::1]),
    ("bb", types.int64),  # best bid tick
    ("ba", types.int64),  # best ask tick
    ("lowb", types.int64),
    ("higha", types.int64),
    ("lb", types.int64),
    ("ub", types.int64),
    ("compat", types.boolean),  # reproduce reference binding bugs in the views
]
depth_type = DepthType(depth_fields)


@njit(cache=True, error_model="numpy")
def new_depth(mode, tick_size, lot_size, roi_lb, roi_ub, compat):
    d = structref.new(depth_type)
    d.mode = mode
    d.tick = tick_size
    d.lot = lot_size
    d.compat = compat
    d.bb = I64_MIN
    d.ba = I64_MAX
    d.lowb = I64_MAX
    d.higha = I64_MIN
    if mode == MODE_ROI:
        d.lb = rha(roi_lb / tick_size)
        d.ub = rha(roi_ub / tick_size)
        n = d.ub - d.lb + 1
        d.base = d.lb
        d.bid = np.zeros(n, np.float64)
        d.ask = np.zeros(n, np.float64)
    else:
        d.lb = I64_MIN
        d.ub = I64_MAX
        d.base = 0
        d.bid = np.zeros(0, np.float64)
        d.ask = np.zeros(0, np.float64)
    return d


# --- reads -------------------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def bid_qty_at(d, t):
    if d.mode == MODE_ROI:
        if t < d.lb or t > d.ub:
            return np.nan
        return d.bid[t - d.lb]
    i = t - d.base
    if i < 0 or i >= d.bid.shape[0]:
        return 0.0
    return d.bid[i]


@njit(cache=True, error_model="numpy")
def ask_qty_at(d, t):
    if d.mode == MODE_ROI:
        if t < d.lb or t > d.ub:
            return np.nan
        return d.ask[t - d.lb]
    i = t - d.base
    if i < 0 or i >= d.ask.shape[0]:
        return 0.0
    return d.ask[i]


@njit(cache=True, error_model="numpy")
def depth_below(d, arr, start, end):
    """First tick with qty > 0 scanning start-1, start-2, ..., end; INVALID_MIN if none."""
    hi = start - 1
    lo = end
    if d.mode == MODE_ROI:
        hi = min(start, d.ub) - 1
        lo = max(end, d.lb)
    else:
        hi = min(hi, d.base + arr.shape[0] - 1)
        lo = max(lo, d.base)
    base = d.base
    t = hi
    while t >= lo:
        if arr[t - base] > 0.0:
            return t
        t -= 1
    return I64_MIN


@njit(cache=True, error_model="numpy")
def depth_above(d, arr, start, end):
    """First tick with qty > 0 scanning start+1, ..., end; INVALID_MAX if none."""
    lo = start + 1
    hi = end
    if d.mode == MODE_ROI:
        lo = max(start, d.lb) + 1
        hi = min(end, d.ub)
    else:
        lo = max(lo, d.base)
        hi = min(hi, d.base + arr.shape[0] - 1)
    base = d.base
    t = lo
    while t <= hi:
        if arr[t - base] > 0.0:
            return t
        t += 1
    return I64_MAX


# --- writes ------------------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _ensure(d, t):
    """HashMap mode: grow both sides so tick t has a slot (amortised doubling, keeps `base` aligned)."""
    n = d.bid.shape[0]
    if n == 0:
        d.base = t - _INITIAL_HALF_SPAN
        d.bid = np.zeros(2 * _INITIAL_HALF_SPAN, np.float64)
        d.ask = np.zeros(2 * _INITIAL_HALF_SPAN, np.float64)
        return
    i = t - d.base
    if 0 <= i < n:
        return
    new_lo = d.base
    new_hi = d.base + n
    if i < 0:
        new_lo = min(t, d.base - n) - 1
    else:
        new_hi = max(t + 1, d.base + 2 * n) + 1
    m = new_hi - new_lo
    if m > (1 << 31):
        raise MemoryError("market depth price range too wide for the dense book (check tick_size and prices)")
    off = d.base - new_lo
    nb = np.zeros(m, np.float64)
    na = np.zeros(m, np.float64)
    nb[off:off + n] = d.bid
    na[off:off + n] = d.ask
    d.bid = nb
    d.ask = na
    d.base = new_lo


@njit(cache=True, error_model="numpy")
def update_bid(d, px, qty):
    """Apply an L2 bid level. Returns (tick, prev_best_bid, new_best_bid, prev_qty)."""
    t = rha(px / d.tick)
    qty_lot = rha(qty / d.lot)
    prev_best = d.bb
    if d.mode == MODE_ROI:
        if t < d.lb or t > d.ub:
            return t, prev_best, d.bb, 0.0
        i = t - d.lb
        prev_qty = d.bid[i]
        d.bid[i] = qty
    else:
        if qty_lot > 0:
            _ensure(d, t)
            i = t - d.base
            prev_qty = d.bid[i]
            d.bid[i] = qty
        else:
            i = t - d.base
            prev_qty = 0.0
            if 0 <= i < d.bid.shape[0]:
                prev_qty = d.bid[i]
                d.bid[i] = 0.0
    if qty_lot == 0:
        if t == d.bb:
            d.bb = depth_below(d, d.bid, d.bb, d.lowb)
            if d.bb == I64_MIN:
                d.lowb = I64_MAX
    else:
        if t > d.bb:
            d.bb = t
            if d.bb >= d.ba:
                d.ba = depth_above(d, d.ask, d.bb, d.higha)
        d.lowb = min(d.lowb, t)
    return t, prev_best, d.bb, prev_qty


@njit(cache=True, error_model="numpy")
def update_ask(d, px, qty):
    """Apply an L2 ask level. Returns (tick, prev_best_ask, new_best_ask, prev_qty)."""
    t = rha(px / d.tick)
    qty_lot = rha(qty / d.lot)
    prev_best = d.ba
    if d.mode == MODE_ROI:
        if t < d.lb or t > d.ub:
            return t, prev_best, d.ba, 0.0
        i = t - d.lb
        prev_qty = d.ask[i]
        d.ask[i] = qty
    else:
        if qty_lot > 0:
            _ensure(d, t)
            i = t - d.base
            prev_qty = d.ask[i]
            d.ask[i] = qty
        else:
            i = t - d.base
            prev_qty = 0.0
            if 0 <= i < d.ask.shape[0]:
                prev_qty = d.ask[i]
                d.ask[i] = 0.0
    if qty_lot == 0:
        if t == d.ba:
            d.ba = depth_above(d, d.ask, d.ba, d.higha)
            if d.ba == I64_MAX:
                d.higha = I64_MIN
    else:
        if t < d.ba:
            d.ba = t
            if d.bb >= d.ba:
                d.bb = depth_below(d, d.bid, d.ba, d.lowb)
        d.higha = max(d.higha, t)
    return t, prev_best, d.ba, prev_qty


@njit(cache=True, error_model="numpy")
def clear_all(d):
    d.bid[:] = 0.0
    d.ask[:] = 0.0
    d.bb = I64_MIN
    d.ba = I64_MAX
    d.lowb = I64_MAX
    d.higha = I64_MIN


@njit(cache=True, error_model="numpy")
def clear_bid(d, px):
    """Clear bids from px up to the best bid (reference semantics incl. the level-skip quirk of §8.3)."""
    if d.mode == MODE_ROI:
        c = rha(px / d.tick)
        if d.bb != I64_MIN:
            n = d.bid.shape[0]
            i = max(c - d.lb, 0)
            end = min(d.bb + 1 - d.lb, n)
            while i < end:
                d.bid[i] = 0.0
                i += 1
        start = min(max(c - 1, d.lb), d.ub)
        end_t = d.lb if d.lowb == I64_MAX else d.lowb
        d.bb = depth_below(d, d.bid, start, end_t)
    elif np.isfinite(px):
        c = rha(px / d.tick)
        if d.bb != I64_MIN:
            lo = max(c - d.base, 0)
            hi = min(d.bb + 1 - d.base, d.bid.shape[0])
            if hi > lo:
                d.bid[lo:hi] = 0.0
        d.bb = depth_below(d, d.bid, c - 1, d.lowb)
    else:
        d.bid[:] = 0.0
        d.bb = I64_MIN
    if d.bb == I64_MIN:
        d.lowb = I64_MAX


@njit(cache=True, error_model="numpy")
def clear_ask(d, px):
    """Clear asks from the best ask up to px (ROI mode reproduces the reference's ask-clear bug, §8.5)."""
    if d.mode == MODE_ROI:
        c = rha(px / d.tick)
        if d.ba != I64_MAX:
            n = d.ask.shape[0]
            i = d.ba - d.lb
            end = min(c + 1 - d.ub, n)  # reference uses roi_ub here: normally zeroes nothing
            i = max(i, 0)
            while i < end:
                d.ask[i] = 0.0
                i += 1
        start = min(max(c + 1, d.lb), d.ub)
        end_t = d.ub if d.higha == I64_MIN else d.higha
        d.ba = depth_above(d, d.ask, start, end_t)
    elif np.isfinite(px):
        c = rha(px / d.tick)
        if d.ba != I64_MAX:
            lo = max(d.ba - d.base, 0)
            hi = min(c + 1 - d.base, d.ask.shape[0])
            if hi > lo:
                d.ask[lo:hi] = 0.0
        d.ba = depth_above(d, d.ask, c + 1, d.higha)
    else:
        d.ask[:] = 0.0
        d.ba = I64_MAX
    if d.ba == I64_MAX:
        d.higha = I64_MIN


@njit(cache=True, error_model="numpy")
def apply_snapshot(d, data):
    """Reset the book and load snapshot rows (BUY rows -> bids, SELL rows -> asks; other bits ignored)."""
    clear_all(d)
    for k in range(data.shape[0]):
        ev = data[k].ev
        t = rha(data[k].px / d.tick)
        q = data[k].qty
        if d.mode == MODE_ROI and (t < d.lb or t > d.ub):
            continue
        if ev & BUY_EVENT == BUY_EVENT:
            d.bb = max(d.bb, t)
            d.lowb = min(d.lowb, t)
            if d.mode != MODE_ROI:
                _ensure(d, t)
            d.bid[t - d.base] = q
        elif ev & SELL_EVENT == SELL_EVENT:
            d.ba = min(d.ba, t)
            d.higha = max(d.higha, t)
            if d.mode != MODE_ROI:
                _ensure(d, t)
            d.ask[t - d.base] = q


@njit(cache=True, error_model="numpy")
def snapshot(d):
    """Current book as DEPTH_SNAPSHOT rows: bids at or below the best bid (descending), then asks (ascending)."""
    nb = 0
    na = 0
    n = d.bid.shape[0]
    for i in range(n):
        t = d.base + i
        if d.bid[i] != 0.0 and t <= d.bb:
            nb += 1
        if d.ask[i] != 0.0 and t >= d.ba:
            na += 1
    out = np.zeros(nb + na, event_dtype)
    k = 0
    for i in range(n - 1, -1, -1):
        t = d.base + i
        if d.bid[i] != 0.0 and t <= d.bb:
            out[k].ev = EXCH_EVENT | LOCAL_EVENT | BUY_EVENT | DEPTH_SNAPSHOT_EVENT
            out[k].px = t * d.tick
            out[k].qty = d.bid[i]
            k += 1
    for i in range(n):
        t = d.base + i
        if d.ask[i] != 0.0 and t >= d.ba:
            out[k].ev = EXCH_EVENT | LOCAL_EVENT | SELL_EVENT | DEPTH_SNAPSHOT_EVENT
            out[k].px = t * d.tick
            out[k].qty = d.ask[i]
            k += 1
    return out


@njit(cache=True, error_model="numpy")
def best_bid(d):
    return np.nan if d.bb == I64_MIN else d.bb * d.tick


@njit(cache=True, error_model="numpy")
def best_ask(d):
    return np.nan if d.ba == I64_MAX else d.ba * d.tick


@njit(cache=True, error_model="numpy")
def best_bid_qty(d):
    if d.mode == MODE_ROI and d.compat:
        return best_bid(d)  # reference Python binding returns the price here
    if d.bb == I64_MIN:
        return 0.0 if d.mode != MODE_ROI else np.nan
    return bid_qty_at(d, d.bb)


@njit(cache=True, error_model="numpy")
def best_ask_qty(d):
    if d.mode == MODE_ROI and d.compat:
        return best_ask(d)
    if d.ba == I64_MAX:
        return 0.0 if d.mode != MODE_ROI else np.nan
    return ask_qty_at(d, d.ba)
