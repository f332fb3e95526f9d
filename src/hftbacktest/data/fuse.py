"""FuseMarketDepth: merge the L1 bookTicker stream (DEPTH_BBO_EVENT rows) into the L2 depth stream.

Behaviour learned by experiment from hftbacktest 2.4.4's (Rust) FuseMarketDepth and reproduced here:
* every price level remembers the exchange time of its last change, also once removed (a "tombstone");
  an update older than its level is stale and dropped;
* a depth/snapshot row better than the side's best level is dropped if that best is newer; a BBO row is dropped
  if any level of its side is newer;
* a BBO row that would cross a newer level of the other side (or meet a newer one at its price) is dropped; a
  depth row that would cross the other side is dropped if that side's best level is newer, otherwise every
  crossed level is removed (even newer ones behind the best);
* a BBO row sets its level (emitted as DEPTH_EVENT with the row's flags) and removes the older levels better
  than it; removals are emitted as `DEPTH_EVENT|side`, qty 0, px = tick * tick_size, with the row's
  timestamps and no EXCH/LOCAL flag (as the reference does), in ascending price order per side;
* DEPTH_CLEAR removes its side from its price to the best (NaN: all), DEPTH_SNAPSHOT sets a level; both are
  emitted unchanged; other event kinds raise ValueError.
`add=False` updates the fused book without emitting rows. Prices are keyed by round(px / tick_size); a quantity
that rounds to 0 lots removes the level.

Status: `benchmarks/parity_fuse.py` (random adversarial L1/L2 streams, 200 cases) gives byte-identical output
for 147/200 cases. Known remaining differences: after a BBO removed the other side's best, the reference
still treats the removed level as that side's best for later crossing checks; a BBO row is accepted although
a better level of its side is newer (and then removes nothing); a DEPTH_CLEAR whose price lies beyond the best
still resets the side's best for the next BBO check.

The core is a cached numba kernel over typed dicts (`new_fuse_book`, `fuse_event`, `fuse_events`), callable
from @njit code; `FuseMarketDepth` is the Python class API around it.
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.typed import Dict
from numpy.typing import NDArray

from ..types import (BUY_EVENT, DEPTH_BBO_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, SELL_EVENT,
                     event_dtype)

_LEVEL = types.Tuple((types.float64, types.int64, types.boolean))  # qty, exch_ts, removed
_NONE = np.iinfo(np.int64).min

FUSE_OK = 0
FUSE_BAD_EVENT = 1


def new_fuse_book():
    """(bids, asks): typed dicts tick -> (qty, exch_ts, removed) for `fuse_event`."""
    return (Dict.empty(key_type=types.int64, value_type=_LEVEL),
            Dict.empty(key_type=types.int64, value_type=_LEVEL))


@njit(cache=True, inline="always")
def _round_half_away(x):
    return np.int64(np.floor(x + 0.5)) if x >= 0 else -np.int64(np.floor(-x + 0.5))


@njit(cache=True, inline="always")
def _better(bid, a, b):
    return a > b if bid else a < b


@njit(cache=True)
def _best(book, bid):
    """Best live tick of a side (a BBO with qty 0 still counts), or _NONE."""
    best = _NONE
    for k, lvl in book.items():
        if not lvl[2] and (best == _NONE or _better(bid, k, best)):
            best = k
    return best


@njit(cache=True)
def _live_ticks(book, lo, hi):
    """Live ticks within [lo, hi], ascending."""
    ticks = [k for k, lvl in book.items() if not lvl[2] and lo <= k <= hi]
    ticks.sort()
    return ticks


@njit(cache=True)
def _emit(out, n, row):
    if n == out.shape[0]:
        grown = np.empty((max(16, 2 * n), 8), np.uint64)
        grown[:n] = out[:n]
        out = grown
    out[n] = row
    return out, n + 1


@njit(cache=True)
def _remove(book, bid, ticks, exch, local, tick_size, add, out, n):
    row = np.zeros(8, np.uint64)
    row[0] = np.uint64(DEPTH_EVENT | (BUY_EVENT if bid else SELL_EVENT))
    row[1] = np.uint64(exch)
    row[2] = np.uint64(local)
    f = row.view(np.float64)
    for k in ticks:
        book[k] = (0.0, exch, True)
        if add:
            f[3] = k * tick_size
            out, n = _emit(out, n, row)
    return out, n


@njit(cache=True)
def fuse_event(bids, asks, row, tick_size, lot_size, add, out, n):
    """Fuse one event row (8 uint64 words of an `event_dtype` record) into the book (bids, asks).

    Emitted rows are appended to out[n:] (out grows as needed). Returns (out, n, status); status is
    FUSE_BAD_EVENT for a row that is neither depth, BBO, clear nor snapshot or has no side.
    """
    e = row[0]
    kind = e & np.uint64(0xFF)
    is_bid = (e & np.uint64(BUY_EVENT)) != 0
    if (kind != DEPTH_EVENT and kind != DEPTH_BBO_EVENT and kind != DEPTH_CLEAR_EVENT
            and kind != DEPTH_SNAPSHOT_EVENT) or (e & np.uint64(BUY_EVENT | SELL_EVENT)) == 0:
        return out, n, FUSE_BAD_EVENT
    exch = np.int64(row[1])
    local = np.int64(row[2])
    f = row.view(np.float64)
    px = f[3]
    book = bids if is_bid else asks
    other = asks if is_bid else bids
    if kind == DEPTH_CLEAR_EVENT:
        best = _best(book, is_bid)
        nan = np.isnan(px)
        t = 0 if nan else _round_half_away(px / tick_size)
        hit = [k for k, lvl in book.items() if not lvl[2] and (nan or (best != _NONE and (
            (t <= k <= best) if is_bid else (best <= k <= t))))]
        for k in hit:
            book[k] = (0.0, max(book[k][1], exch), True)
        if add:
            out, n = _emit(out, n, row)
        return out, n, FUSE_OK
    t = _round_half_away(px / tick_size)
    qty = f[4]
    live = _round_half_away(qty / lot_size) > 0
    lo, hi = (t, np.iinfo(np.int64).max) if not is_bid else (np.iinfo(np.int64).min, t)
    crossed = _live_ticks(other, lo, hi)  # live levels of the other side at or through t
    if kind == DEPTH_BBO_EVENT:
        if t in other and other[t][1] > exch:
            return out, n, FUSE_OK
        for k in crossed:
            if other[k][1] > exch:
                return out, n, FUSE_OK
        for lvl in book.values():
            if lvl[1] > exch:
                return out, n, FUSE_OK
        book[t] = (qty if live else 0.0, exch, False)
        if add:
            emitted = row.copy()
            emitted[0] = (e & ~np.uint64(0xFF)) | np.uint64(DEPTH_EVENT)
            out, n = _emit(out, n, emitted)
        lo2, hi2 = (t + 1, np.iinfo(np.int64).max) if is_bid else (np.iinfo(np.int64).min, t - 1)
        out, n = _remove(book, is_bid, _live_ticks(book, lo2, hi2), exch, local, tick_size, add, out, n)
        out, n = _remove(other, not is_bid, crossed, exch, local, tick_size, add, out, n)
        return out, n, FUSE_OK
    if len(crossed) > 0 and other[_best(other, not is_bid)][1] > exch:
        return out, n, FUSE_OK  # an L2 row may cross the other side only if that side's best level is older
    if t in book and book[t][1] > exch:
        return out, n, FUSE_OK
    best = _best(book, is_bid)
    if best != _NONE and _better(is_bid, t, best) and book[best][1] > exch:
        return out, n, FUSE_OK
    if not live:
        if t not in book or book[t][2]:
            return out, n, FUSE_OK
        book[t] = (0.0, exch, True)
    else:
        book[t] = (qty, exch, False)
    if add:
        out, n = _emit(out, n, row)
    out, n = _remove(other, not is_bid, crossed, exch, local, tick_size, add, out, n)
    return out, n, FUSE_OK


@njit(cache=True)
def fuse_events(bids, asks, rows, adds, tick_size, lot_size, out, n):
    """fuse_event over every row of an (m, 8) uint64 view of event records; adds[i] as in process_event.
    Returns (out, n, index of the first bad row or -1)."""
    for i in range(rows.shape[0]):
        out, n, status = fuse_event(bids, asks, rows[i], tick_size, lot_size, adds[i], out, n)
        if status != FUSE_OK:
            return out, n, i
    return out, n, -1


class FuseMarketDepth:
    """Combines the real-time Level-1 book ticker stream with the conflated Level-2 depth stream.

    Args:
        tick_size: tick size for the asset being processed.
        lot_size: lot size for the asset being processed.
    """

    def __init__(self, tick_size: float, lot_size: float):
        self.tick_size = float(tick_size)
        self.lot_size = float(lot_size)
        self.close()

    def process_event(self, ev: NDArray, index: int, add: bool) -> None:
        """Process `ev[index]`; with `add=False` it only updates the fused book."""
        index = int(index)
        row = np.ascontiguousarray(ev[index: index + 1]).view(np.uint64)
        self._out, self._n, status = fuse_event(self._bids, self._asks, row, self.tick_size, self.lot_size,
                                                bool(add), self._out, self._n)
        if status != FUSE_OK:
            raise ValueError(f"FuseMarketDepth cannot process event {int(row[0]):#x} at index {index}")

    def process_events(self, ev: NDArray, add=True) -> None:
        """Process every row of `ev` in one compiled loop (`add`: a bool or one bool per row)."""
        rows = np.ascontiguousarray(ev).view(np.uint64).reshape(-1, 8)
        adds = np.broadcast_to(np.asarray(add, bool), (len(rows),)).copy()
        self._out, self._n, bad = fuse_events(self._bids, self._asks, rows, adds, self.tick_size, self.lot_size,
                                              self._out, self._n)
        if bad >= 0:
            raise ValueError(f"FuseMarketDepth cannot process event {int(rows[bad, 0]):#x} at index {bad}")

    @property
    def fused_events(self) -> NDArray:
        """The fused rows emitted so far (`event_dtype`)."""
        return self._out[: self._n].copy().reshape(-1).view(event_dtype)

    def close(self) -> None:
        """Release the fused rows and book."""
        self._bids, self._asks = new_fuse_book()
        self._out = np.empty((16, 8), np.uint64)
        self._n = 0
