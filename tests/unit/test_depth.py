"""Market depth rules (spec §8) on hand-built updates; tick 1.0 and lot 1.0 so prices are ticks."""
import math

import numpy as np
import pytest

import hftbacktest.backtest.bot  # noqa: F401  (registers the Depth boxing, also when new_depth compiles here)
from hftbacktest.kernels import depth as dp
from hftbacktest.kernels.numeric import I64_MAX, I64_MIN, rha

from _engine_data import ask, bid, rows


def hashmap():
    return dp.new_depth(dp.MODE_HASHMAP, 1.0, 1.0, 0.0, 0.0, False)


def test_rha_rounds_half_away_from_zero_and_saturates():
    assert [rha(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 2.4999)] == [1, 2, 3, -1, -3, 2]
    assert rha(float("nan")) == 0
    assert rha(1e300) == I64_MAX and rha(-1e300) == I64_MIN


def test_update_returns_previous_state_and_tracks_best():
    d = hashmap()
    assert dp.update_bid(d, 99.0, 5.0) == (99, I64_MIN, 99, 0.0)
    assert dp.update_bid(d, 98.0, 2.0) == (98, 99, 99, 0.0)
    assert dp.update_bid(d, 99.0, 3.0) == (99, 99, 99, 5.0)
    # deleting the best level moves the best bid to the next level below
    assert dp.update_bid(d, 99.0, 0.0) == (99, 99, 98, 3.0)
    assert dp.bid_qty_at(d, 99) == 0.0 and dp.bid_qty_at(d, 98) == 2.0


def test_qty_below_half_a_lot_deletes_the_level():
    d = dp.new_depth(dp.MODE_HASHMAP, 0.1, 0.001, 0.0, 0.0, False)
    dp.update_ask(d, 100.0, 0.002)
    dp.update_ask(d, 100.1, 0.002)
    dp.update_ask(d, 100.0, 0.0004)  # rounds to 0 lots
    assert d.best_ask_tick == 1001 and dp.ask_qty_at(d, 1000) == 0.0


def test_crossing_bid_moves_best_ask_without_deleting_crossed_levels():
    d = hashmap()
    dp.update_ask(d, 101.0, 1.0)
    dp.update_ask(d, 103.0, 1.0)
    dp.update_bid(d, 102.0, 1.0)
    assert d.best_ask_tick == 103
    assert dp.ask_qty_at(d, 101) == 1.0  # crossed level stays readable


def test_clear_bid_skips_the_level_just_below_the_clear_price():
    # spec §8.3 [verified in the reference]: bids 99, 98, 97, clear up to 98 -> no best bid although 97 has qty
    d = hashmap()
    for px in (99.0, 98.0, 97.0):
        dp.update_bid(d, px, 1.0)
    dp.clear_bid(d, 98.0)
    assert d.best_bid_tick == I64_MIN
    assert dp.bid_qty_at(d, 97) == 1.0


def test_clear_ask_mirrors_the_skip():
    d = hashmap()
    for px in (101.0, 102.0, 103.0, 104.0):
        dp.update_ask(d, px, 1.0)
    dp.clear_ask(d, 101.0)  # deletes 101, then searches from 103: 102 is skipped
    assert d.best_ask_tick == 103


def test_roi_ask_clear_bug_keeps_quantities():
    # spec §8.5 [verified]: ROI clear of asks up to 101 leaves the 101 level at 5.0
    d = dp.new_depth(dp.MODE_ROI, 1.0, 1.0, 90.0, 110.0, False)
    dp.update_ask(d, 101.0, 5.0)
    dp.clear_ask(d, 101.0)
    assert dp.ask_qty_at(d, 101) == 5.0
    assert math.isnan(dp.ask_qty_at(d, 200))  # outside the ROI
    assert dp.update_bid(d, 200.0, 1.0) == (200, I64_MIN, I64_MIN, 0.0)  # ignored


def test_far_levels_and_window_recentring_keep_hash_map_answers():
    d = hashmap()
    dp.update_bid(d, 5.0, 1.0)  # far outlier (outside the dense window)
    dp.update_bid(d, 100_000.0, 2.0)
    dp.update_bid(d, 100_000.0, 0.0)
    assert d.best_bid_tick == 5 and dp.bid_qty_at(d, 5) == 1.0
    dp.update_ask(d, 500_000.0, 3.0)  # best ask far away: window re-centres
    dp.update_bid(d, 499_990.0, 4.0)
    assert (d.best_bid_tick, d.best_ask_tick) == (499_990, 500_000)
    assert dp.bid_qty_at(d, 5) == 1.0 and dp.bid_qty_at(d, 499_990) == 4.0


def test_snapshot_round_trip():
    d = hashmap()
    dp.apply_snapshot(d, rows(bid(0, 99.0, 1.0), bid(0, 98.0, 2.0), ask(0, 101.0, 3.0)))
    snap = dp.snapshot(d)
    assert list(snap["px"]) == [99.0, 98.0, 101.0]
    assert list(snap["qty"]) == [1.0, 2.0, 3.0]
    e = hashmap()
    dp.apply_snapshot(e, snap)
    assert (e.best_bid_tick, e.best_ask_tick) == (99, 101)


@pytest.mark.parametrize("mode", [dp.MODE_HASHMAP, dp.MODE_ROI])
def test_random_updates_match_a_dict_model(mode):
    rng = np.random.default_rng(7)
    d = dp.new_depth(mode, 1.0, 1.0, 0.0, 200.0, False)
    model = {}
    for _ in range(2000):
        t = int(rng.integers(90, 111))
        q = float(rng.choice([0.0, 1.0, 2.0]))
        if t <= 100:
            dp.update_bid(d, float(t), q)
            model[t] = q
        assert dp.bid_qty_at(d, t) == model.get(t, 0.0)
        live = [k for k, v in model.items() if v > 0]
        assert d.best_bid_tick == (max(live) if live else I64_MIN)


def test_many_far_levels_match_a_dict_model():
    # hundreds of stale far levels per side (as in real feeds) live in the overflow lists and their tick map
    rng = np.random.default_rng(11)
    d = hashmap()
    bids, asks = {}, {}
    near, below, above = np.arange(1_000_000, 1_000_040), np.arange(100, 700), np.arange(2_000_000, 2_000_600)
    for _ in range(6000):
        q = float(rng.choice([0.0, 1.0, 2.0]))
        if rng.random() < 0.5:
            t = int(rng.choice(near[:20] if rng.random() < 0.5 else below))
            dp.update_bid(d, float(t), q)
            bids[t] = q
        else:
            t = int(rng.choice(near[20:] if rng.random() < 0.5 else above))
            dp.update_ask(d, float(t), q)
            asks[t] = q
        live_b = [k for k, v in bids.items() if v > 0]
        live_a = [k for k, v in asks.items() if v > 0]
        assert d.best_bid_tick == (max(live_b) if live_b else I64_MIN)
        assert d.best_ask_tick == (min(live_a) if live_a else I64_MAX)
    assert sum(q > 0 for t, q in bids.items() if t < 1000) > 100  # the overflow list is long
    for t in list(bids)[:300]:
        assert dp.bid_qty_at(d, t) == bids[t]
    # the touch jumps: the window re-centres and every level moves between window and overflow
    dp.update_ask(d, 5_000_000.0, 1.0)
    dp.update_bid(d, 4_999_990.0, 1.0)
    bids[4_999_990] = 1.0
    assert all(dp.bid_qty_at(d, t) == q for t, q in bids.items())
    assert all(dp.ask_qty_at(d, t) == q for t, q in asks.items() if t != 5_000_000)
    dp.clear_all(d)
    assert all(dp.bid_qty_at(d, t) == 0.0 for t in bids)
    dp.update_bid(d, 150.0, 3.0)
    assert dp.bid_qty_at(d, 150) == 3.0 and d.best_bid_tick == 150
