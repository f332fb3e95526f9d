"""FuseMarketDepth on small streams whose fused output was observed from hftbacktest 2.4.4.

Each expected list was printed by running the same rows through the reference's FuseMarketDepth(0.1, 0.001)
in .venv-ref (rows: side, px, qty, has EXCH|LOCAL flags) on 2026-11-25.
"""
from __future__ import annotations

import numpy as np
import pytest

from hftbacktest.data import FuseMarketDepth
from hftbacktest.types import (BUY_EVENT, DEPTH_BBO_EVENT, DEPTH_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT,
                               TRADE_EVENT, event_dtype)

XL = EXCH_EVENT | LOCAL_EVENT
D, B = DEPTH_EVENT, DEPTH_BBO_EVENT


def fuse(rows, adds=None):
    a = np.zeros(len(rows), event_dtype)
    for i, r in enumerate(rows):
        a[i] = r + (0, 0, 0.0)
    f = FuseMarketDepth(0.1, 0.001)
    for i in range(len(a)):
        f.process_event(a, i, True if adds is None else adds[i])
    out = f.fused_events
    f.close()
    return [("bid" if int(r["ev"]) & BUY_EVENT else "ask", float(r["px"]), float(r["qty"]),
             bool(int(r["ev"]) & XL == XL), int(r["exch_ts"])) for r in out]


CASES = {
    "stale depth dropped, bbo sweeps older better asks": (
        [(XL | D | BUY_EVENT, 10, 20, 100.0, 1.0), (XL | D | SELL_EVENT, 10, 20, 100.1, 2.0),
         (XL | B | BUY_EVENT, 12, 22, 100.0, 5.0), (XL | B | SELL_EVENT, 12, 22, 100.2, 4.0),
         (XL | D | BUY_EVENT, 11, 23, 100.0, 1.5), (XL | D | SELL_EVENT, 13, 24, 100.1, 0.5)],
        [("bid", 100.0, 1.0, True, 10), ("ask", 100.1, 2.0, True, 10), ("bid", 100.0, 5.0, True, 12),
         ("ask", 100.2, 4.0, True, 12), ("ask", 100.10000000000001, 0.0, False, 12), ("ask", 100.1, 0.5, True, 13)]),
    "depth crossing two older bids removes them": (
        [(XL | D | BUY_EVENT, 10, 13, 100.1, 2.0), (XL | D | BUY_EVENT, 10, 13, 100.0, 2.0),
         (XL | D | BUY_EVENT, 10, 13, 99.5, 2.0), (XL | D | SELL_EVENT, 14, 17, 99.7, 1.0)],
        [("bid", 100.1, 2.0, True, 10), ("bid", 100.0, 2.0, True, 10), ("bid", 99.5, 2.0, True, 10),
         ("ask", 99.7, 1.0, True, 14), ("bid", 100.0, 0.0, False, 14), ("bid", 100.10000000000001, 0.0, False, 14)]),
    "depth crossing a newer bid is dropped": (
        [(XL | D | BUY_EVENT, 15, 13, 100.1, 2.0), (XL | D | SELL_EVENT, 14, 17, 99.7, 1.0)],
        [("bid", 100.1, 2.0, True, 15)]),
    "bbo behind a newer better level is dropped": (
        [(XL | D | BUY_EVENT, 10, 20, 100.0, 1.0), (XL | D | BUY_EVENT, 14, 24, 100.2, 1.0),
         (XL | D | BUY_EVENT, 10, 20, 100.3, 1.0), (XL | B | BUY_EVENT, 12, 22, 100.1, 5.0)],
        [("bid", 100.0, 1.0, True, 10), ("bid", 100.2, 1.0, True, 14)]),
    "removed level remembers its time": (
        [(XL | D | BUY_EVENT, 10, 20, 100.0, 1.0), (XL | D | BUY_EVENT, 13, 23, 100.0, 0.0),
         (XL | B | BUY_EVENT, 12, 24, 100.0, 3.0), (XL | D | BUY_EVENT, 14, 25, 100.0, 2.0)],
        [("bid", 100.0, 1.0, True, 10), ("bid", 100.0, 0.0, True, 13), ("bid", 100.0, 2.0, True, 14)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference_output(name):
    rows, expected = CASES[name]
    assert fuse(rows) == expected


def test_add_false_updates_without_emitting():
    out = fuse([(XL | D | BUY_EVENT, 10, 20, 100.0, 1.0), (XL | D | SELL_EVENT, 10, 20, 100.3, 2.0),
                (XL | B | BUY_EVENT, 12, 22, 100.1, 5.0)], [False, True, True])
    assert out == [("ask", 100.3, 2.0, True, 10), ("bid", 100.1, 5.0, True, 12)]


def test_trades_are_refused():
    with pytest.raises(ValueError):
        fuse([(XL | TRADE_EVENT | BUY_EVENT, 12, 22, 99.5, 1.0)])


def _stream(n, seed):
    rng = np.random.default_rng(seed)
    a = np.zeros(n, event_dtype)
    side = np.where(rng.random(n) < 0.5, BUY_EVENT, SELL_EVENT)
    a["ev"] = XL | side | np.where(rng.random(n) < 0.4, B, D)
    a["exch_ts"] = np.sort(rng.integers(0, n, n)) + rng.integers(-3, 4, n)
    a["local_ts"] = a["exch_ts"] + 5
    a["px"] = np.round((np.where(side == BUY_EVENT, 999, 1001) + rng.integers(-5, 6, n)) * 0.1, 1)
    a["qty"] = np.where(rng.random(n) < 0.2, 0.0, np.round(rng.random(n) * 3, 3))
    return a


def test_batch_and_njit_kernel_match_the_per_row_api():
    from numba import njit

    from hftbacktest.data.fuse import fuse_events, new_fuse_book

    a = _stream(400, 3)
    adds = np.random.default_rng(4).random(len(a)) < 0.9
    one = FuseMarketDepth(0.1, 0.001)
    for i in range(len(a)):
        one.process_event(a, i, bool(adds[i]))
    batch = FuseMarketDepth(0.1, 0.001)
    batch.process_events(a, adds)

    @njit
    def inside_njit(bids, asks, state, rows, adds):  # the kernel as part of a user's compiled pipeline
        out = np.empty((4, 8), np.uint64)
        out, n, bad = fuse_events(bids, asks, state, rows, adds, 0.1, 0.001, out, 0)
        return out[:n], bad

    out, bad = inside_njit(*new_fuse_book(), a.view(np.uint64).reshape(-1, 8), adds)
    assert bad == -1 and len(one.fused_events) > 100
    assert one.fused_events.tobytes() == batch.fused_events.tobytes() == out.tobytes()
