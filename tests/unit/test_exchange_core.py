"""kernels.core.ExchangeCore on hand-built books (tick 1, lot 1): replies, queue positions, latency, configuration.
Expected values follow from the kernels' rules (kernels/exchange.py, kernels/models.py)."""
from __future__ import annotations

import pytest

from hftbacktest.errors import ConfigError
from hftbacktest.kernels import models as m
from hftbacktest.kernels.core import CoreConfig, CoreError, ExchangeCore, parse_queue
from hftbacktest.types import BUY, CANCELED, EXPIRED, FILLED, NEW, PARTIALLY_FILLED, SELL, ReturnCode


def core(queue="risk_averse", exchange="partial_fill", **kw):
    c = ExchangeCore(CoreConfig.from_names(1.0, 1.0, queue, exchange, maker_fee=-0.0001, taker_fee=0.0004, **kw))
    c.depth(BUY, 99, 5.0, 1)
    c.depth(SELL, 101, 2.0, 1)
    c.depth(SELL, 102, 3.0, 1)
    return c


def test_resting_order_queue_and_partial_fills():
    c = core()
    (r,) = c.submit(1, BUY, 99, 3.0, "GTC", "LIMIT", 10)
    assert (r.status, r.leaves_qty, r.fill_qty, r.exch_ts) == (NEW, 3.0, 0.0, 10)
    assert c.queue_ahead(1) == 5.0  # behind the displayed 5
    assert c.trade(SELL, 99, 4.0, 11) == [] and c.queue_ahead(1) == 1.0
    assert c.depth(BUY, 99, 0.5, 12) == [] and c.queue_ahead(1) == 0.5  # risk averse: min(front, level)
    (r,) = c.trade(SELL, 99, 2.5, 13)  # overruns the queue by 2: a partial maker fill at the order's price
    assert (r.status, r.fill_qty, r.leaves_qty, r.exec_price_tick, r.maker) == (PARTIALLY_FILLED, 2.0, 1.0, 99, True)
    (r,) = c.cancel(1, 14)
    assert (r.status, r.fill_qty, r.rejected) == (CANCELED, 0.0, False)
    (r,) = c.cancel(1, 15)
    assert r.rejected and r.order_id == 1
    sv = c.state_values()
    assert (sv["position"], sv["balance"], sv["num_trades"]) == (2.0, -198.0, 1)
    assert sv["fee"] == pytest.approx(-0.0001 * 198.0)


def test_crossing_limit_walks_levels_then_fills_the_rest_at_its_price():
    c = core()
    replies = c.submit(2, BUY, 102, 6.0, "GTC", "LIMIT", 10)
    # partial-fill exchange: 2 @ 101, then (a buy's own tick excluded from the walk) the rest 4 @ 102, as taker
    assert [(r.fill_qty, r.exec_price_tick, r.maker, r.status) for r in replies] == [
        (2.0, 101, False, PARTIALLY_FILLED), (4.0, 102, False, FILLED)]
    assert c.resting() == 0


def test_no_partial_fill_taker_and_time_in_force():
    c = core(exchange="no_partial_fill")
    (r,) = c.submit(3, BUY, 105, 7.0, "IOC", "LIMIT", 10)
    assert (r.fill_qty, r.exec_price_tick, r.status) == (7.0, 101, FILLED)  # whole qty at the touch
    (r,) = c.submit(4, BUY, 101, 1.0, "GTX", "LIMIT", 11)
    assert (r.status, r.fill_qty) == (EXPIRED, 0.0)  # post-only crossing
    (r,) = c.submit(5, SELL, 110, 1.0, "IOC", "LIMIT", 12)
    assert r.status == EXPIRED  # not crossing, not resting


def test_book_moving_through_a_resting_order_fills_it_whole_as_maker():
    c = core()
    c.submit(6, SELL, 103, 2.0, "GTC", "LIMIT", 10)
    (r,) = c.depth(BUY, 103, 1.0, 11)  # best bid reaches the resting sell
    assert (r.order_id, r.fill_qty, r.exec_price_tick, r.maker, r.status) == (6, 2.0, 103, True, FILLED)


def test_modify_keeps_or_loses_the_queue():
    c = core()
    c.submit(7, BUY, 99, 3.0, "GTC", "LIMIT", 10)
    c.trade(SELL, 99, 4.0, 11)  # 1 ahead
    (r,) = c.modify(7, 99, 2.0, 12)  # same price, less qty: keeps its place
    assert (r.status, r.leaves_qty) == (NEW, 2.0) and c.queue_ahead(7) == 1.0
    c.modify(7, 99, 4.0, 13)  # more qty: back of the queue (the level shows 5)
    assert c.queue_ahead(7) == 5.0
    replies = c.modify(7, 101, 4.0, 14)  # re-entered at a crossing price: a taker (own tick: all of it there)
    assert [(r.fill_qty, r.exec_price_tick, r.maker) for r in replies] == [(4.0, 101, False)]
    assert replies[-1].status == FILLED


def test_power_prob_moves_the_queue_on_cancels_ahead():
    c = core("power_prob:2")
    c.submit(8, BUY, 99, 1.0, "GTC", "LIMIT", 10)  # front 5, back 0
    c.depth(BUY, 99, 10.0, 11)  # 5 joined behind: front 5, back 5
    c.depth(BUY, 99, 8.0, 12)  # 2 cancelled: p = 5^2/(5^2+5^2) = 0.5 of it ahead
    assert c.queue_ahead(8) == pytest.approx(5.0 - 0.5 * 2.0)
    r = core("risk_averse")
    r.submit(8, BUY, 99, 1.0, "GTC", "LIMIT", 10)
    r.depth(BUY, 99, 10.0, 11)
    r.depth(BUY, 99, 8.0, 12)
    assert r.queue_ahead(8) == 5.0  # risk averse: only min(front, level)


def test_entry_latency_delays_requests_behind_market_events():
    c = core(entry_latency=5, response_latency=3)
    assert c.submit(9, BUY, 99, 1.0, "GTC", "LIMIT", 10) == []  # arrives at 15
    assert c.depth(BUY, 99, 4.0, 15) == []  # a market event at the arrival time goes first
    (r,) = c.advance(15)
    assert (r.status, r.exch_ts, r.local_ts) == (NEW, 15, 18) and c.queue_ahead(9) == 4.0
    c.cancel(9, 16)
    (r,) = c.trade(SELL, 98, 1.0, 30)  # the cancel (at 21) is handed in before the later event
    assert r.status == CANCELED and r.exch_ts == 21


def test_order_id_in_use_is_a_core_error():
    c = core()
    c.submit(1, BUY, 90, 1.0, "GTC", "LIMIT", 10)
    with pytest.raises(CoreError) as exc:
        c.submit(1, BUY, 91, 1.0, "GTC", "LIMIT", 11)
    assert exc.value.code == ReturnCode.ORDER_ID_EXIST


def test_configuration_by_name_and_errors():
    assert parse_queue("risk_averse") == (m.QUEUE_RISK_ADVERSE, 0.0)
    assert parse_queue("power_prob:2") == (m.QUEUE_POWER, 2.0)
    assert parse_queue("log_prob") == (m.QUEUE_LOG, 0.0)
    for bad, msg in (("fifo", "expected one of"), ("power_prob", "needs a number"), ("power_prob:0", "> 0"),
                     ("power_prob:nan", "> 0"), ("risk_averse:2", "takes no parameter")):
        with pytest.raises(ConfigError, match=msg):
            parse_queue(bad)
    with pytest.raises(ConfigError, match="exchange model 'full'"):
        CoreConfig.from_names(1.0, 1.0, exchange="full")
    with pytest.raises(ConfigError, match="fee model"):
        CoreConfig.from_names(1.0, 1.0, fee="percent")
    with pytest.raises(ConfigError, match="tick_size"):
        CoreConfig(0.0, 1.0)
    with pytest.raises(ConfigError, match="entry_latency"):
        CoreConfig(1.0, 1.0, entry_latency=-1)
    with pytest.raises(ConfigError, match="queue_model code 7"):
        CoreConfig(1.0, 1.0, queue_model=m.QUEUE_CUSTOM)
    c = core()
    with pytest.raises(ConfigError, match="time in force 'DAY'"):
        c.submit(1, BUY, 99, 1.0, "DAY")
    with pytest.raises(ConfigError, match="quantity"):
        c.submit(1, BUY, 99, float("nan"))
