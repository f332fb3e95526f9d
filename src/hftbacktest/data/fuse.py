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
still resets the side's best for the next BBO check. Plain Python (not a jitclass): call it from Python, not from inside @njit code.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ..types import (BUY_EVENT, DEPTH_BBO_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, SELL_EVENT,
                     event_dtype)


def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


class FuseMarketDepth:
    """Combines the real-time Level-1 book ticker stream with the conflated Level-2 depth stream.

    Args:
        tick_size: tick size for the asset being processed.
        lot_size: lot size for the asset being processed.
    """

    def __init__(self, tick_size: float, lot_size: float):
        self.tick_size = float(tick_size)
        self.lot_size = float(lot_size)
        # side -> {tick: [qty, exch_ts]}; qty 0.0 marks a removed level that still remembers its time
        self._book: dict[bool, dict[int, list]] = {True: {}, False: {}}
        self._rows: list[tuple] = []

    # -- helpers ----------------------------------------------------------------------------------------
    # a level is [qty, exch_ts, removed]
    def _best(self, bid: bool):
        live = [t for t, lvl in self._book[bid].items() if not lvl[2]]  # a BBO with qty 0 still counts
        if not live:
            return None
        return max(live) if bid else min(live)

    @staticmethod
    def _better(bid: bool, a: int, b: int) -> bool:
        return a > b if bid else a < b

    def _crossed(self, bid: bool, t: int) -> list[int]:
        """Live levels of the other side at or through tick t, ascending."""
        other = self._book[not bid]
        return sorted(k for k, lvl in other.items() if not lvl[2] and (k <= t if bid else k >= t))

    def _remove(self, bid: bool, ticks: list[int], row, add: bool) -> None:
        side = self._book[bid]
        exch, local = int(row["exch_ts"]), int(row["local_ts"])
        for k in ticks:
            side[k] = [0.0, exch, True]
            self._emit(add, (DEPTH_EVENT | (BUY_EVENT if bid else SELL_EVENT), exch, local, k * self.tick_size,
                             0.0, 0, 0, 0.0))

    def _emit(self, add: bool, row) -> None:
        if add:
            self._rows.append(tuple(row))

    # -- API --------------------------------------------------------------------------------------------
    def process_event(self, ev: NDArray, index: int, add: bool) -> None:
        """Process `ev[index]`; with `add=False` it only updates the fused book."""
        row = ev[int(index)]
        e = int(row["ev"])
        kind = e & 0xFF
        bid = bool(e & BUY_EVENT)
        if kind not in (DEPTH_EVENT, DEPTH_BBO_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT) or not (
                e & (BUY_EVENT | SELL_EVENT)):
            raise ValueError(f"FuseMarketDepth cannot process event {e:#x} at index {index}")
        exch = int(row["exch_ts"])
        px = float(row["px"])
        book = self._book[bid]
        if kind == DEPTH_CLEAR_EVENT:
            best = self._best(bid)
            nan = math.isnan(px)
            t = 0 if nan else _round_half_away(px / self.tick_size)
            for k, lvl in book.items():
                if not lvl[2] and (nan or (best is not None and ((t <= k <= best) if bid else (best <= k <= t)))):
                    book[k] = [0.0, max(lvl[1], exch), True]
            self._emit(add, row)
            return
        t = _round_half_away(px / self.tick_size)
        qty = float(row["qty"])
        live = _round_half_away(qty / self.lot_size) > 0
        lvl = book.get(t)
        crossed = self._crossed(bid, t)
        other = self._book[not bid]
        if kind == DEPTH_BBO_EVENT:
            if (t in other and other[t][1] > exch) or any(other[k][1] > exch for k in crossed):
                return  # the other side at this price changed later (even if since removed), or a crossed level did
        elif crossed and other[self._best(not bid)][1] > exch:
            return  # an L2 row may cross the other side only if that side's best level is older
        if kind == DEPTH_BBO_EVENT:
            if any(x[1] > exch for x in book.values()):
                return
            book[t] = [qty if live else 0.0, exch, False]
            out = list(row)
            out[0] = (e & ~0xFF) | DEPTH_EVENT
            self._emit(add, out)
            self._remove(bid, sorted(k for k, x in book.items() if not x[2] and self._better(bid, k, t)), row, add)
            self._remove(not bid, crossed, row, add)
            return
        if lvl is not None and lvl[1] > exch:
            return
        best = self._best(bid)
        if best is not None and self._better(bid, t, best) and book[best][1] > exch:
            return
        if not live:
            if lvl is None or lvl[2]:
                return
            book[t] = [0.0, exch, True]
        else:
            book[t] = [qty, exch, False]
        self._emit(add, row)
        self._remove(not bid, crossed, row, add)

    @property
    def fused_events(self) -> NDArray:
        """The fused rows emitted so far (`event_dtype`)."""
        return np.array(self._rows, dtype=event_dtype) if self._rows else np.zeros(0, event_dtype)

    def close(self) -> None:
        """Release the fused rows and book (kept for API compatibility)."""
        self._rows = []
        self._book = {True: {}, False: {}}
