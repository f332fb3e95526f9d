"""elapse inside @njit skips the engine call while nothing is due (the engine's `quiet_until`): the results must be
exactly those of the Python-side proxy, whose elapse always runs the engine. On an untested numba the trick is off
and the plain entry-point call (same results) is used."""
import warnings

import numpy as np
import pytest
from numba import njit
from numba.experimental import structref

import hftbacktest._numba_tricks as tricks
from hftbacktest._numba_tricks import elapse as elapse_trick
from hftbacktest.backtest import bot

from hftbacktest import GTC, GTX, LIMIT, BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest.types import BUY_EVENT, DEPTH_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, TRADE_EVENT, event_dtype

STEP = 700  # ns: several steps between most events, and order latencies (300 / 400 ns) end between steps
STEPS = 3000


def feed(n=400, seed=7):
    """A random-walk book around 1000 (tick 1, lot 1): depth updates on both sides and trades, 2-3000 ns apart."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, event_dtype)
    ts = 1000 + np.cumsum(rng.integers(2, 3000, n))
    mid = 1000 + np.cumsum(rng.integers(-1, 2, n))
    buy = rng.random(n) < 0.5
    trade = rng.random(n) < 0.3
    out["ev"] = EXCH_EVENT | LOCAL_EVENT | np.where(buy, BUY_EVENT, SELL_EVENT) | np.where(trade, TRADE_EVENT,
                                                                                          DEPTH_EVENT)
    out["exch_ts"] = ts
    out["local_ts"] = ts + rng.integers(1, 500, n)  # feed latency varies: local rows reorder against exchange ones
    out["local_ts"] = np.maximum.accumulate(out["local_ts"])
    out["px"] = np.where(trade, np.where(buy, mid + 1, mid - 1), np.where(buy, mid - rng.integers(1, 4, n),
                                                                         mid + rng.integers(1, 4, n)))
    out["qty"] = rng.integers(1, 6, n).astype(float)
    return out


def build(data):
    asset = (BacktestAsset().data([data]).linear_asset(1.0).constant_order_latency(300, 400)
             .risk_adverse_queue_model().no_partial_fill_exchange().trading_value_fee_model(-0.0001, 0.0004)
             .tick_size(1.0).lot_size(1.0))
    return HashMapMarketDepthBacktest([asset])


def step(hbt, k, trace):
    """One strategy step after elapse: record the clock, the position and what the local side knows of its orders
    (acknowledgements arrive between market events), and every 5th step quote one lot a side at the touch."""
    trace[k, 0] = hbt.current_timestamp
    trace[k, 1] = hbt.position(0)
    if k % 7 == 0:
        hbt.clear_inactive_orders(0)
    values = hbt.orders(0).values()
    while values.has_next():
        order = values.get()
        trace[k, 3] += order.order_id * (order.status + 16 * order.req)
    if k % 5 == 0:
        depth = hbt.depth(0)
        if depth.best_bid_tick > -(2**62) and depth.best_ask_tick < 2**62:
            hbt.submit_buy_order(0, 2 * k + 1, depth.best_bid, 1.0, GTX, LIMIT, False)
            hbt.submit_sell_order(0, 2 * k + 2, depth.best_ask, 1.0, GTC, LIMIT, False)


def make_run(elapse):
    step_nb = njit(step)  # the same step as the Python proxy's loop, compiled

    @njit
    def run(hbt, trace):
        for k in range(trace.shape[0]):
            trace[k, 2] = elapse(hbt, STEP)
            step_nb(hbt, k, trace)
        return hbt.state_values(0).num_trades

    return run


@njit(inline="always")
def _method_elapse(hbt, duration):
    return hbt.elapse(duration)


run_njit = make_run(_method_elapse)
run_plain = make_run(bot._entry_elapse)  # what an untested numba gets


@njit
def quiet_until(hbt):
    return hbt.quiet_until


@pytest.mark.parametrize("run", [run_njit, run_plain], ids=["fast", "plain"])
def test_njit_elapse_matches_the_engine_step_for_step(run):
    data = feed()
    ours = np.zeros((STEPS, 4))
    hbt = build(data)
    trades = run(hbt, ours)
    proxy = np.zeros((STEPS, 4))
    ref = build(data)
    for k in range(STEPS):
        proxy[k, 2] = ref.elapse(STEP)
        step(ref, k, proxy)
    assert trades > 10  # the quotes did trade: order timing matters to the result
    np.testing.assert_array_equal(ours, proxy)
    assert ref.state_values(0).num_trades == trades


@njit
def elapse_once(hbt, d):
    return hbt.elapse(d)


def test_quiet_until_is_the_next_due_event_and_orders_reset_it():
    data = feed()
    hbt = build(data)
    assert quiet_until(hbt) == -(2**63)  # before the first elapse the engine must run (it places the cursors)
    assert elapse_once(hbt, 1) == 0
    now = hbt.current_timestamp
    due = min(int(data["exch_ts"][data["exch_ts"] > now].min()), int(data["local_ts"][data["local_ts"] > now].min()))
    assert quiet_until(hbt) == due
    assert hbt.submit_buy_order(0, 1, 900.0, 1.0, GTC, LIMIT, False) == 0
    assert quiet_until(hbt) == -(2**63)  # an order operation leaves it unknown: the next elapse runs the engine
    assert elapse_once(hbt, 1) == 0
    later = hbt.current_timestamp
    due = min(int(data["exch_ts"][data["exch_ts"] > later].min()),
              int(data["local_ts"][data["local_ts"] > later].min()))
    assert quiet_until(hbt) == min(due, now + 300)  # the request reaches the exchange after the 300 ns entry latency
    hbt.clear_inactive_orders(0)  # touches no bus or cursor: the next elapse may still skip the engine
    assert quiet_until(hbt) == min(due, now + 300)


def test_the_fast_path_is_the_one_in_use_on_this_numba():
    assert tricks.numba_is_tested()
    assert bot._elapse is not bot._entry_elapse


def test_untested_numba_gets_no_fast_path(monkeypatch):
    monkeypatch.setattr(tricks, "numba_is_tested", lambda: False)
    monkeypatch.setattr(tricks, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert elapse_trick.quiet_elapse(0) is None
    assert any("not a tested version" in str(w.message) for w in caught)


def test_unknown_structref_internals_get_no_fast_path(monkeypatch):
    monkeypatch.delattr(structref._Utils, "get_data_struct")
    assert elapse_trick.quiet_elapse(0) is None
