"""One-pass checks of an event chunk before the engine reads it (called by backtest/reader.py for every chunk).

A numpy version needed several passes with temporaries and took about a third of a warm 10 M-row replay."""
from __future__ import annotations

import numpy as np
from numba import njit

from ..types import DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT, LOCAL_EVENT, TRADE_EVENT
from .numeric import I64_MIN

ROWS_OK = 0
EXCH_TS_BACKWARDS = 1
LOCAL_TS_BACKWARDS = 2
PRICE_NOT_FINITE = 3


@njit(cache=True, error_model="numpy")
def check_rows(data, prev_exch, prev_local):
    """Violations in priority order: exch_ts going backwards (EXCH rows), then local_ts (LOCAL rows), then a
    non-finite price or quantity on a depth/trade/snapshot row; prev_*: the previous chunk's last timestamp or I64_MIN.

    Returns (code, row, before, after, from_previous, last_exch, last_local): the first violation of the
    highest-priority kind (`before -> after` are the timestamps, `from_previous` when `before` came from the
    previous chunk; `row` is -1 for ROWS_OK) and this chunk's last timestamps."""
    last = np.array([prev_exch, prev_local])
    first_bad = np.array([-1, -1, -1])
    before = np.array([0, 0])
    after = np.array([0, 0])
    seen = np.array([False, False])
    from_prev = np.array([False, False])
    for i in range(data.shape[0]):
        ev = np.int64(data[i].ev)
        for c in range(2):
            if ev & (EXCH_EVENT if c == 0 else LOCAL_EVENT):
                ts = data[i].exch_ts if c == 0 else data[i].local_ts
                if ts < last[c] and first_bad[c] < 0:
                    first_bad[c] = i
                    before[c] = last[c]
                    after[c] = ts
                    from_prev[c] = not seen[c]
                seen[c] = True
                last[c] = ts
        kind = ev & 0xFF
        if first_bad[2] < 0 and (kind == DEPTH_EVENT or kind == TRADE_EVENT or kind == DEPTH_SNAPSHOT_EVENT):
            if not (np.isfinite(data[i].px) and np.isfinite(data[i].qty)):
                first_bad[2] = i
    for c in range(3):
        if first_bad[c] >= 0:
            b = before[c] if c < 2 else 0
            a = after[c] if c < 2 else 0
            return c + 1, first_bad[c], b, a, c < 2 and from_prev[c], last[0], last[1]
    return ROWS_OK, np.int64(-1), np.int64(0), np.int64(0), False, last[0], last[1]
