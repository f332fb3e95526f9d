"""FuseMarketDepth: merge the L1 bookTicker stream (DEPTH_BBO_EVENT rows) into the L2 depth stream.

Behaviour learned by experiment from hftbacktest 2.4.4's (Rust) FuseMarketDepth (hand-made probes and random
streams, `benchmarks/parity_fuse.py`) and reproduced here. Each side keeps its levels (tick -> qty, exch_ts),
a best-tick pointer and a "best time":
* DEPTH_CLEAR deletes the levels from its price to the best (NaN: all), recomputes the best and sets the best
  time to the clear's time; it is emitted unchanged.
* A depth or snapshot row is dropped when: it crosses the other side while that side has a best newer than the
  row; its level is newer; it is at or better than its side's best while the best time is newer; or its side
  has no best and a newer best time. Otherwise it sets its level (qty rounding to 0 lots deletes the level;
  deleting a missing level is dropped), moves the best if at or better than it (deleting the best moves it to
  the next level and sets the best time), is emitted, and deletes every crossed level of the other side (whose
  best is recomputed and best time set to the row's).
* A BBO row is dropped when its side's best time is newer, or it crosses the other side while that side's best
  time is newer. Otherwise it sets its level (also with qty 0), is emitted as DEPTH_EVENT with the row's flags,
  deletes its side's better levels, becomes the best (pointer and time), and deletes the crossed levels of the
  other side as above.
* Deletions are emitted as `DEPTH_EVENT|side`, qty 0, px = tick * tick_size, with the row's timestamps and no
  EXCH/LOCAL flag (as the reference does), in ascending price order per side. Other event kinds raise
  ValueError. `add=False` updates the fused book without emitting rows. Prices are keyed by
  round(px / tick_size).

Status: `benchmarks/parity_fuse.py` gives byte-identical output for 198/200 random adversarial streams; the two
others involve a BBO worse than levels that survived an earlier DEPTH_CLEAR, which the reference leaves in
place (this model deletes them).

The core is cached numba code over typed dicts (`new_fuse_book`, `fuse_event`, `fuse_events`), callable from
@njit code; `FuseMarketDepth` is the Python class API around it.
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.typed import Dict
from numpy.typing import NDArray

from ..types import (BUY_EVENT, DEPTH_BBO_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, SELL_EVENT,
                     event_dtype)

_LEVEL = types.Tuple((types.float64, types.int64))  # qty, exch_ts
_NONE = np.iinfo(np.int64).min
_LO = np.iinfo(np.int64).min
_HI = np.iinfo(np.int64).max

FUSE_OK = 0
FUSE_BAD_EVENT = 1


def new_fuse_book():
    """(bids, asks, state) for `fuse_event`: typed dicts tick -> (qty, exch_ts), and
    state = [bid best tick, bid best time, ask best tick, ask best time]."""
    return (Dict.empty(key_type=types.int64, value_type=_LEVEL),
            Dict.empty(key_type=types.int64, value_type=_LEVEL),
            np.array([_NONE, -1, _NONE, -1], np.int64))


@njit(cache=True, inline="always")
def _round_half_away(x):
    return np.int64(np.floor(x + 0.5)) if x >= 0 else -np.int64(np.floor(-x + 0.5))


@njit(cache=True, inline="always")
def _better(bid, a, b):
    return a > b if bid else a < b


@njit(cache=True)
def _best(levels, bid):
    best = _NONE
    for k in levels.keys():
        if best == _NONE or _better(bid, k, best):
            best = k
    return best


@njit(cache=True)
def _ticks(levels, lo, hi):
    """Ticks of the levels within [lo, hi], ascending."""
    ticks = [k for k in levels.keys() if lo <= k <= hi]
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
def _delete(levels, bid, ticks, exch, local, tick_size, add, out, n):
    row = np.zeros(8, np.uint64)
    row[0] = np.uint64(DEPTH_EVENT | (BUY_EVENT if bid else SELL_EVENT))
    row[1] = np.uint64(exch)
    row[2] = np.uint64(local)
    f = row.view(np.float64)
    for k in ticks:
        del levels[k]
        if add:
            f[3] = k * tick_size
            out, n = _emit(out, n, row)
    return out, n


@njit(cache=True)
def fuse_event(bids, asks, state, row, tick_size, lot_size, add, out, n):
    """Fuse one event row (8 uint64 words of an `event_dtype` record) into the book from `new_fuse_book`.

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
    me, other = (bids, asks) if is_bid else (asks, bids)
    m = 0 if is_bid else 2  # state slots of this side; o: of the other side
    o = 2 - m
    if kind == DEPTH_CLEAR_EVENT:
        best = state[m]
        if np.isnan(px):
            hit = _ticks(me, _LO, _HI)
        elif best == _NONE:
            hit = _ticks(me, 1, 0)  # nothing to clear (an empty typed list)
        else:
            t = _round_half_away(px / tick_size)
            hit = _ticks(me, t, best) if is_bid else _ticks(me, best, t)
        for k in hit:
            del me[k]
        state[m] = _best(me, is_bid)
        state[m + 1] = exch
        if add:
            out, n = _emit(out, n, row)
        return out, n, FUSE_OK
    t = _round_half_away(px / tick_size)
    qty = f[4]
    live = _round_half_away(qty / lot_size) > 0
    crossed = _ticks(other, _LO, t) if is_bid else _ticks(other, t, _HI)
    if kind == DEPTH_BBO_EVENT:
        if state[m + 1] > exch or (len(crossed) > 0 and state[o + 1] > exch):
            return out, n, FUSE_OK
        me[t] = (qty if live else 0.0, exch)
        if add:
            emitted = row.copy()
            emitted[0] = (e & ~np.uint64(0xFF)) | np.uint64(DEPTH_EVENT)
            out, n = _emit(out, n, emitted)
        better = _ticks(me, t + 1, _HI) if is_bid else _ticks(me, _LO, t - 1)
        out, n = _delete(me, is_bid, better, exch, local, tick_size, add, out, n)
        state[m] = t
        state[m + 1] = exch
    else:
        if len(crossed) > 0 and state[o] != _NONE and state[o + 1] > exch:
            return out, n, FUSE_OK
        if t in me and me[t][1] > exch:
            return out, n, FUSE_OK
        best = state[m]
        if best == _NONE:
            if state[m + 1] > exch:
                return out, n, FUSE_OK
        elif (t == best or _better(is_bid, t, best)) and state[m + 1] > exch:
            return out, n, FUSE_OK
        if not live:
            if t not in me:
                return out, n, FUSE_OK
            del me[t]
            if t == best:
                state[m] = _best(me, is_bid)
                state[m + 1] = exch
        else:
            me[t] = (qty, exch)
            if best == _NONE or t == best or _better(is_bid, t, best):
                state[m] = t
                state[m + 1] = exch
        if add:
            out, n = _emit(out, n, row)
    out, n = _delete(other, not is_bid, crossed, exch, local, tick_size, add, out, n)
    if len(crossed) > 0:
        state[o] = _best(other, not is_bid)
        state[o + 1] = exch
    return out, n, FUSE_OK


@njit(cache=True)
def fuse_events(bids, asks, state, rows, adds, tick_size, lot_size, out, n):
    """fuse_event over every row of an (m, 8) uint64 view of event records; adds[i] as in process_event.
    Returns (out, n, index of the first bad row or -1)."""
    for i in range(rows.shape[0]):
        out, n, status = fuse_event(bids, asks, state, rows[i], tick_size, lot_size, adds[i], out, n)
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
        self._out, self._n, status = fuse_event(self._bids, self._asks, self._state, row, self.tick_size,
                                                self.lot_size, bool(add), self._out, self._n)
        if status != FUSE_OK:
            raise ValueError(f"FuseMarketDepth cannot process event {int(row[0]):#x} at index {index}")

    def process_events(self, ev: NDArray, add=True) -> None:
        """Process every row of `ev` in one compiled loop (`add`: a bool or one bool per row)."""
        rows = np.ascontiguousarray(ev).view(np.uint64).reshape(-1, 8)
        adds = np.broadcast_to(np.asarray(add, bool), (len(rows),)).copy()
        self._out, self._n, bad = fuse_events(self._bids, self._asks, self._state, rows, adds, self.tick_size,
                                              self.lot_size, self._out, self._n)
        if bad >= 0:
            raise ValueError(f"FuseMarketDepth cannot process event {int(rows[bad, 0]):#x} at index {bad}")

    @property
    def fused_events(self) -> NDArray:
        """The fused rows emitted so far (`event_dtype`)."""
        return self._out[: self._n].copy().reshape(-1).view(event_dtype)

    def close(self) -> None:
        """Release the fused rows and book."""
        self._bids, self._asks, self._state = new_fuse_book()
        self._out = np.empty((16, 8), np.uint64)
        self._n = 0
