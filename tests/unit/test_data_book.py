"""The quality checker's book replay (hash tables + lazy heaps) against a plain dict model."""
from __future__ import annotations

import numpy as np

from hftbacktest.data.quality import replay_book
from hftbacktest.types import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, SELL_EVENT


def _model(ev, px, qty):
    bids, asks, crossed = {}, {}, 0
    for e, p, q in zip(ev.tolist(), px.tolist(), qty.tolist()):
        book = bids if e & BUY_EVENT else asks
        if e & 0xFF == DEPTH_CLEAR_EVENT:
            for k in [k for k in book if (k >= p if book is bids else k <= p)]:
                del book[k]
        elif q <= 0:
            book.pop(p, None)
        else:
            book[p] = q
        if bids and asks and max(bids) >= min(asks):
            crossed += 1
    return bids, asks, crossed


def test_replay_matches_dict_model_on_random_streams():
    rng = np.random.default_rng(11)
    for _ in range(5):
        n = 20_000
        side = np.where(rng.random(n) < 0.5, BUY_EVENT, SELL_EVENT)
        kind = np.where(rng.random(n) < 0.002, DEPTH_CLEAR_EVENT,
                        np.where(rng.random(n) < 0.1, DEPTH_SNAPSHOT_EVENT, DEPTH_EVENT))
        ev = (side | kind).astype(np.uint64)
        px = np.round(rng.integers(900, 1100, n) * 0.1, 1)
        qty = np.where(rng.random(n) < 0.35, 0.0, rng.random(n))
        starts = np.arange(n, dtype=np.int64)
        bp, bq, ap, aq, crossed, _ = replay_book(ev, px, qty, starts, starts + 1, starts, False, 0.0, False, 5)
        bids, asks, expected_crossed = _model(ev, px, qty)
        assert dict(zip(bp.tolist(), bq.tolist())) == bids
        assert dict(zip(ap.tolist(), aq.tolist())) == asks
        assert crossed == expected_crossed


def test_full_clear_and_nan_clear_empty_the_side():
    ev = np.array([BUY_EVENT | DEPTH_EVENT, BUY_EVENT | DEPTH_EVENT, BUY_EVENT | DEPTH_CLEAR_EVENT,
                   SELL_EVENT | DEPTH_EVENT], np.uint64)
    px = np.array([10.0, 9.0, np.nan, 11.0])
    qty = np.array([1.0, 2.0, 0.0, 1.0])
    starts = np.arange(4, dtype=np.int64)
    bp, _, ap, _, crossed, _ = replay_book(ev, px, qty, starts, starts + 1, starts, False, 0.0, False, 5)
    assert len(bp) == 0 and ap.tolist() == [11.0] and crossed == 0
