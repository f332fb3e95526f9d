"""Market depth: one dense, tick-indexed book per side with two behaviours selected at run time.

* mode HASHMAP reproduces the reference `HashMapMarketDepth`: unbounded price range, absent levels read 0.0,
  levels whose qty rounds to 0 lots are deleted. A dense window of WINDOW ticks follows the touch (re-centred when
  a best price leaves it); far-away levels (stale quotes at absurd prices exist in real feeds) go to a small
  overflow list per side, so memory stays bounded.
* mode ROI reproduces `ROIVectorMarketDepth`: a fixed [roi_lb, roi_ub] tick window, updates outside it ignored,
  reads outside it NaN, and the reference's clear-depth quirks.

A dense array is faster than a hash map for the per-event update and best-price searches and gives the same
answers, because both only ever ask "qty at tick t" and "first tick with qty > 0 in a range".
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.experimental import structref

from .._numba_tricks.borrow import borrowed
from ..types import BUY_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, event_dtype
from .numeric import I64_MAX, I64_MIN, resized, rha
from .orders import imap_clear, imap_del, imap_get, imap_put, intmap_type, new_intmap
from .structbase import CompactStructRef

MODE_HASHMAP = 0
MODE_ROI = 1

WINDOW = 1 << 15  # dense ticks per side around the touch (HASHMAP mode); 256 KiB per side


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
    # HASHMAP mode: levels outside the dense window [base, base + WINDOW) live in overflow lists (tick, qty), found
    # through a tick -> index map (real feeds keep hundreds of stale far levels per side)
    ("obt", types.int64[::1]),
    ("obq", types.float64[::1]),
    ("obn", types.int64),
    ("obm", intmap_type),
    ("oat", types.int64[::1]),
    ("oaq", types.float64[::1]),
    ("oan", types.int64),
    ("oam", intmap_type),
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
    d.obt = np.zeros(16, np.int64)
    d.obq = np.zeros(16, np.float64)
    d.obn = 0
    d.obm = new_intmap(64)
    d.oat = np.zeros(16, np.int64)
    d.oaq = np.zeros(16, np.float64)
    d.oan = 0
    d.oam = new_intmap(64)
    return d


# --- reads -------------------------------------------------------------------------------------------------------


@borrowed
def _overflow_get(m, oq, t):
    k = imap_get(m, t)
    return oq[k] if k >= 0 else 0.0


@borrowed
def level(d, is_bid, t):
    """Stored qty at tick t (HASHMAP: 0.0 if absent; ROI: NaN outside the ROI)."""
    arr = d.bid if is_bid else d.ask
    if d.mode == MODE_ROI:
        if t < d.lb or t > d.ub:
            return np.nan
        return arr[t - d.lb]
    i = t - d.base
    if 0 <= i < arr.shape[0]:
        return arr[i]
    if is_bid:
        return _overflow_get(d.obm, d.obq, t)
    return _overflow_get(d.oam, d.oaq, t)


@borrowed
def bid_qty_at(d, t):
    return level(d, True, t)


@borrowed
def ask_qty_at(d, t):
    return level(d, False, t)


@borrowed
def _overflow_best(d, is_bid, lo, hi, highest):
    """Highest (`highest`) or lowest overflow tick in [lo, hi] with qty > 0; I64_MIN / I64_MAX if none."""
    ot = d.obt if is_bid else d.oat
    oq = d.obq if is_bid else d.oaq
    best = I64_MIN if highest else I64_MAX
    for k in range(d.obn if is_bid else d.oan):
        t = ot[k]
        if lo <= t <= hi and oq[k] > 0.0 and (t > best if highest else t < best):
            best = t
    return best


@borrowed
def depth_below(d, is_bid, start, end):
    """First tick with qty > 0 scanning start-1, start-2, ..., end; INVALID_MIN if none."""
    arr = d.bid if is_bid else d.ask
    if d.mode == MODE_ROI:
        t = min(start, d.ub) - 1
        lo = max(end, d.lb)
        while t >= lo:
            if arr[t - d.lb] > 0.0:
                return t
            t -= 1
        return I64_MIN
    top = d.base + arr.shape[0]  # overflow ticks are below the window or at/above top
    if start - 1 >= top:  # the range reaches above the window: overflow levels there come first
        best = _overflow_best(d, is_bid, max(end, top), start - 1, True)
        if best != I64_MIN:
            return best
    t = min(start - 1, top - 1)
    lo = max(end, d.base)
    while t >= lo:
        if arr[t - d.base] > 0.0:
            return t
        t -= 1
    return _overflow_best(d, is_bid, end, min(start, d.base) - 1, True)


@borrowed
def depth_above(d, is_bid, start, end):
    """First tick with qty > 0 scanning start+1, ..., end; INVALID_MAX if none."""
    arr = d.bid if is_bid else d.ask
    if d.mode == MODE_ROI:
        t = max(start, d.lb) + 1
        hi = min(end, d.ub)
        while t <= hi:
            if arr[t - d.lb] > 0.0:
                return t
            t += 1
        return I64_MAX
    top = d.base + arr.shape[0]
    if start + 1 < d.base:  # the range starts below the window: overflow levels there come first
        best = _overflow_best(d, is_bid, start + 1, min(end, d.base - 1), False)
        if best != I64_MAX:
            return best
    t = max(start + 1, d.base)
    hi = min(end, top - 1)
    while t <= hi:
        if arr[t - d.base] > 0.0:
            return t
        t += 1
    return _overflow_best(d, is_bid, max(start, top - 1) + 1, end, False)


# --- writes ------------------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _overflow_grow(d, is_bid):
    """Double one side's overflow list (owning: replaces the struct's arrays)."""
    if is_bid:
        n = d.obt.shape[0]
        d.obt = resized(d.obt, 2 * n, 0, n)
        d.obq = resized(d.obq, 2 * n, 0, n)
    else:
        n = d.oat.shape[0]
        d.oat = resized(d.oat, 2 * n, 0, n)
        d.oaq = resized(d.oaq, 2 * n, 0, n)


@borrowed
def _overflow_set(d, is_bid, t, q):
    """Store q at overflow tick t (0.0 deletes: the last entry moves into its place)."""
    ot = d.obt if is_bid else d.oat
    oq = d.obq if is_bid else d.oaq
    m = d.obm if is_bid else d.oam
    n = d.obn if is_bid else d.oan
    k = imap_get(m, t)
    if k >= 0:
        if q == 0.0:
            ot[k] = ot[n - 1]
            oq[k] = oq[n - 1]
            imap_put(m, ot[k], k)
            imap_del(m, t)
            n -= 1
        else:
            oq[k] = q
    else:
        if q == 0.0:
            return
        if n == ot.shape[0]:
            _overflow_grow(d, is_bid)
            ot = d.obt if is_bid else d.oat
            oq = d.obq if is_bid else d.oaq
        ot[n] = t
        oq[n] = q
        imap_put(m, t, n)
        n += 1
    if is_bid:
        d.obn = n
    else:
        d.oan = n


@njit(cache=True, error_model="numpy")
def _alloc_window(d, t):
    """First level of a HASHMAP book: allocate the dense window around tick t (owning)."""
    d.base = t - WINDOW // 2
    d.bid = np.zeros(WINDOW, np.float64)
    d.ask = np.zeros(WINDOW, np.float64)


@borrowed
def set_level(d, is_bid, t, q):
    """Store qty q at tick t (0.0 deletes in HASHMAP mode). ROI callers check the range first."""
    if d.mode == MODE_ROI:
        (d.bid if is_bid else d.ask)[t - d.lb] = q
        return
    if d.bid.shape[0] == 0:
        _alloc_window(d, t)
    i = t - d.base
    if 0 <= i < WINDOW:
        (d.bid if is_bid else d.ask)[i] = q
    else:
        _overflow_set(d, is_bid, t, q)


@njit(cache=True, error_model="numpy")
def _recenter(d, center):
    """Move the dense window so it is centred on `center`, migrating levels between window and overflow."""
    for side in range(2):
        is_bid = side == 0
        arr = d.bid if is_bid else d.ask
        n = d.obn if is_bid else d.oan
        ticks = np.empty(n + WINDOW, np.int64)
        qtys = np.empty(n + WINDOW, np.float64)
        m = 0
        for k in range(n):
            ticks[m] = (d.obt if is_bid else d.oat)[k]
            qtys[m] = (d.obq if is_bid else d.oaq)[k]
            m += 1
        for i in range(WINDOW):
            if arr[i] != 0.0:
                ticks[m] = d.base + i
                qtys[m] = arr[i]
                m += 1
                arr[i] = 0.0
        if is_bid:
            d.obn = 0
            imap_clear(d.obm)
        else:
            d.oan = 0
            imap_clear(d.oam)
        if side == 0:
            bticks, bqtys, bm = ticks, qtys, m
        else:
            aticks, aqtys, am = ticks, qtys, m
    d.base = center - WINDOW // 2
    for k in range(bm):
        set_level(d, True, bticks[k], bqtys[k])
    for k in range(am):
        set_level(d, False, aticks[k], aqtys[k])


@borrowed
def _follow_touch(d):
    if d.mode == MODE_ROI or d.bid.shape[0] == 0:
        return
    hi = d.base + WINDOW
    if d.bb != I64_MIN and not (d.base <= d.bb < hi):
        _recenter(d, d.bb)
    elif d.ba != I64_MAX and not (d.base <= d.ba < hi):
        _recenter(d, d.ba)


@borrowed
def update_bid(d, px, qty):
    """Apply an L2 bid level. Returns (tick, prev_best_bid, new_best_bid, prev_qty)."""
    t = rha(px / d.tick)
    qty_lot = rha(qty / d.lot)
    prev_best = d.bb
    if d.mode == MODE_ROI:
        if t < d.lb or t > d.ub:
            return t, prev_best, d.bb, 0.0
        prev_qty = d.bid[t - d.lb]
        d.bid[t - d.lb] = qty
    else:
        prev_qty = level(d, True, t)
        set_level(d, True, t, qty if qty_lot > 0 else 0.0)
    if qty_lot == 0:
        if t == d.bb:
            d.bb = depth_below(d, True, d.bb, d.lowb)
            if d.bb == I64_MIN:
                d.lowb = I64_MAX
    else:
        if t > d.bb:
            d.bb = t
            if d.bb >= d.ba:
                d.ba = depth_above(d, False, d.bb, d.higha)
        d.lowb = min(d.lowb, t)
    _follow_touch(d)
    return t, prev_best, d.bb, prev_qty


@borrowed
def update_ask(d, px, qty):
    """Apply an L2 ask level. Returns (tick, prev_best_ask, new_best_ask, prev_qty)."""
    t = rha(px / d.tick)
    qty_lot = rha(qty / d.lot)
    prev_best = d.ba
    if d.mode == MODE_ROI:
        if t < d.lb or t > d.ub:
            return t, prev_best, d.ba, 0.0
        prev_qty = d.ask[t - d.lb]
        d.ask[t - d.lb] = qty
    else:
        prev_qty = level(d, False, t)
        set_level(d, False, t, qty if qty_lot > 0 else 0.0)
    if qty_lot == 0:
        if t == d.ba:
            d.ba = depth_above(d, False, d.ba, d.higha)
            if d.ba == I64_MAX:
                d.higha = I64_MIN
    else:
        if t < d.ba:
            d.ba = t
            if d.bb >= d.ba:
                d.bb = depth_below(d, True, d.ba, d.lowb)
        d.higha = max(d.higha, t)
    _follow_touch(d)
    return t, prev_best, d.ba, prev_qty


@borrowed
def clear_all(d):
    d.bid[:] = 0.0
    d.ask[:] = 0.0
    d.obn = 0
    d.oan = 0
    imap_clear(d.obm)
    imap_clear(d.oam)
    d.bb = I64_MIN
    d.ba = I64_MAX
    d.lowb = I64_MAX
    d.higha = I64_MIN


@borrowed
def _delete_range(d, is_bid, lo_t, hi_t):
    """HASHMAP mode: delete every level with lo_t <= tick <= hi_t."""
    arr = d.bid if is_bid else d.ask
    lo = max(lo_t - d.base, 0)
    hi = min(hi_t + 1 - d.base, arr.shape[0])
    if hi > lo:
        arr[lo:hi] = 0.0
    ot = d.obt if is_bid else d.oat
    k = 0
    while k < (d.obn if is_bid else d.oan):
        if lo_t <= ot[k] <= hi_t:
            _overflow_set(d, is_bid, ot[k], 0.0)
        else:
            k += 1


@borrowed
def clear_bid(d, px):
    """Clear bids from px up to the best bid (reference semantics, including its skip of a level)."""
    if d.mode == MODE_ROI:
        c = rha(px / d.tick)
        if d.bb != I64_MIN:
            i = max(c - d.lb, 0)
            end = min(d.bb + 1 - d.lb, d.bid.shape[0])
            while i < end:
                d.bid[i] = 0.0
                i += 1
        start = min(max(c - 1, d.lb), d.ub)
        end_t = d.lb if d.lowb == I64_MAX else d.lowb
        d.bb = depth_below(d, True, start, end_t)
    elif np.isfinite(px):
        c = rha(px / d.tick)
        if d.bb != I64_MIN:
            _delete_range(d, True, c, d.bb)
        d.bb = depth_below(d, True, c - 1, d.lowb)
    else:
        d.bid[:] = 0.0
        d.obn = 0
        imap_clear(d.obm)
        d.bb = I64_MIN
    if d.bb == I64_MIN:
        d.lowb = I64_MAX


@borrowed
def clear_ask(d, px):
    """Clear asks from the best ask up to px (ROI mode reproduces the reference's ask-clear bug)."""
    if d.mode == MODE_ROI:
        c = rha(px / d.tick)
        if d.ba != I64_MAX:
            i = max(d.ba - d.lb, 0)
            end = min(c + 1 - d.ub, d.ask.shape[0])  # reference uses roi_ub here: normally zeroes nothing
            while i < end:
                d.ask[i] = 0.0
                i += 1
        start = min(max(c + 1, d.lb), d.ub)
        end_t = d.ub if d.higha == I64_MIN else d.higha
        d.ba = depth_above(d, False, start, end_t)
    elif np.isfinite(px):
        c = rha(px / d.tick)
        if d.ba != I64_MAX:
            _delete_range(d, False, d.ba, c)
        d.ba = depth_above(d, False, c + 1, d.higha)
    else:
        d.ask[:] = 0.0
        d.oan = 0
        imap_clear(d.oam)
        d.ba = I64_MAX
    if d.ba == I64_MAX:
        d.higha = I64_MIN


@njit(cache=True, error_model="numpy")
def apply_snapshot(d, data):
    """Reset the book and load snapshot rows (BUY rows -> bids, SELL rows -> asks; other bits ignored)."""
    clear_all(d)
    for k in range(data.shape[0]):
        ev = np.int64(data[k].ev)
        t = rha(data[k].px / d.tick)
        q = data[k].qty
        if d.mode == MODE_ROI and (t < d.lb or t > d.ub):
            continue
        if ev & BUY_EVENT == BUY_EVENT:
            d.bb = max(d.bb, t)
            d.lowb = min(d.lowb, t)
            set_level(d, True, t, q)
        elif ev & SELL_EVENT == SELL_EVENT:
            d.ba = min(d.ba, t)
            d.higha = max(d.higha, t)
            set_level(d, False, t, q)
    _follow_touch(d)


@njit(cache=True, error_model="numpy")
def _side_levels(d, is_bid):
    arr = d.bid if is_bid else d.ask
    n = d.obn if is_bid else d.oan
    ticks = np.empty(arr.shape[0] + n, np.int64)
    qtys = np.empty(arr.shape[0] + n, np.float64)
    m = 0
    base = d.lb if d.mode == MODE_ROI else d.base
    for i in range(arr.shape[0]):
        if arr[i] != 0.0:
            ticks[m] = base + i
            qtys[m] = arr[i]
            m += 1
    for k in range(n):
        ticks[m] = (d.obt if is_bid else d.oat)[k]
        qtys[m] = (d.obq if is_bid else d.oaq)[k]
        m += 1
    order = np.argsort(ticks[:m])
    return ticks[:m][order], qtys[:m][order]


@njit(cache=True, error_model="numpy")
def snapshot(d):
    """Current book as DEPTH_SNAPSHOT rows: bids at or below the best bid (descending), then asks (ascending)."""
    bt, bq = _side_levels(d, True)
    at, aq = _side_levels(d, False)
    out = np.zeros(bt.shape[0] + at.shape[0], event_dtype)
    k = 0
    for i in range(bt.shape[0] - 1, -1, -1):
        if bt[i] <= d.bb:
            out[k].ev = EXCH_EVENT | LOCAL_EVENT | BUY_EVENT | DEPTH_SNAPSHOT_EVENT
            out[k].px = bt[i] * d.tick
            out[k].qty = bq[i]
            k += 1
    for i in range(at.shape[0]):
        if at[i] >= d.ba:
            out[k].ev = EXCH_EVENT | LOCAL_EVENT | SELL_EVENT | DEPTH_SNAPSHOT_EVENT
            out[k].px = at[i] * d.tick
            out[k].qty = aq[i]
            k += 1
    return out[:k]


@borrowed
def best_bid(d):
    return np.nan if d.bb == I64_MIN else d.bb * d.tick


@borrowed
def best_ask(d):
    return np.nan if d.ba == I64_MAX else d.ba * d.tick


@borrowed
def best_bid_qty(d):
    if d.mode == MODE_ROI and d.compat:
        return best_bid(d)  # reference Python binding returns the price here
    if d.bb == I64_MIN:
        return 0.0 if d.mode != MODE_ROI else np.nan
    return level(d, True, d.bb)


@borrowed
def best_ask_qty(d):
    if d.mode == MODE_ROI and d.compat:
        return best_ask(d)
    if d.ba == I64_MAX:
        return 0.0 if d.mode != MODE_ROI else np.nan
    return level(d, False, d.ba)
