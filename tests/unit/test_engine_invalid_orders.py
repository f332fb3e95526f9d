"""Invalid order prices/quantities are refused with code 13 and change nothing (backtest from Python and @njit,
live bot before anything reaches the connector); a closed backtest refuses to advance or trade (code 20)."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from numba import njit

from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest
from hftbacktest.types import BUY, GTC, IOC, LIMIT, MARKET, NEW, ReturnCode

from _engine_data import ask, bid, rows, sell_trade

INVALID = int(ReturnCode.INVALID_ORDER_REQUEST)
CLOSED = int(ReturnCode.CLOSED)
BOOK = rows(bid(1_000, 99.0, 2.0), ask(1_000, 101.0, 3.0), bid(2_000, 98.0, 1.0), sell_trade(3_000, 99.0, 1.0),
            ask(50_000, 101.0, 4.0))
INF, NAN = math.inf, math.nan
# (price, qty, order type): every one must be refused
BAD = [(NAN, 1.0, LIMIT), (INF, 1.0, LIMIT), (-INF, 1.0, LIMIT), (-1.0, 1.0, LIMIT), (0.0, 1.0, LIMIT),
       (1e300, 1.0, LIMIT), (100.0, NAN, LIMIT), (100.0, 0.0, LIMIT), (100.0, -1.0, LIMIT), (100.0, INF, LIMIT),
       (NAN, 1.0, MARKET), (-1.0, 1.0, MARKET), (101.0, 0.0, MARKET)]


def make(cls=HashMapMarketDepthBacktest):
    asset = (BacktestAsset().data(BOOK).tick_size(1.0).lot_size(1.0).constant_order_latency(10, 10)
             .no_partial_fill_exchange().risk_adverse_queue_model().linear_asset(1.0)
             .trading_value_fee_model(0.0, 0.0).roi_lb(0.0).roi_ub(200.0))
    return cls([asset])


def untouched(hbt):
    sv = hbt.state_values(0)
    return len(hbt.orders(0)) == 0 and sv.position == 0.0 and sv.num_trades == 0 and sv.balance == 0.0


@pytest.mark.parametrize("cls", [HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest])
def test_python_submit_and_modify_refuse_bad_numbers(cls):
    hbt = make(cls)
    assert hbt.elapse(1_500) == 0
    for price, qty, kind in BAD:
        assert hbt.submit_buy_order(0, 1, price, qty, GTC if kind == LIMIT else IOC, kind, False) == INVALID, (price, qty)
        assert hbt.submit_sell_order(0, 2, price, qty, GTC if kind == LIMIT else IOC, kind, True) == INVALID
    assert hbt.elapse(10_000) == 0
    assert untouched(hbt)  # in particular: no taker fill of a buy at +inf
    # a market order's price is not used: 0 is accepted
    assert hbt.submit_buy_order(0, 3, 0.0, 1.0, IOC, MARKET, True) in (0, 3)
    assert hbt.submit_buy_order(0, 4, 90.0, 1.0, GTC, LIMIT, True) in (0, 3)
    for price, qty, _ in BAD[:10]:
        assert hbt.modify(0, 4, price, qty, False) == INVALID, (price, qty)
    o = hbt.orders(0).get(4)
    assert (o.price_tick, o.qty, o.status, o.req) == (90, 1.0, NEW, 0)  # unchanged, nothing in flight


@njit
def _njit_probe(hbt, prices, qtys, out):
    hbt.elapse(1_500)
    for k in range(prices.shape[0]):
        out[k] = hbt.submit_buy_order(0, k + 1, prices[k], qtys[k], GTC, LIMIT, False)
    hbt.elapse(10_000)
    hbt.submit_buy_order(0, 100, 90.0, 1.0, GTC, LIMIT, True)
    out[prices.shape[0]] = hbt.modify(0, 100, np.inf, 1.0, False)
    out[prices.shape[0] + 1] = hbt.modify(0, 100, 91.0, -2.0, False)
    return len(hbt.orders(0)), hbt.state_values(0).num_trades, hbt.orders(0).get(100).price_tick


def test_njit_submit_and_modify_refuse_bad_numbers():
    limit = [b for b in BAD if b[2] == LIMIT]
    prices = np.array([b[0] for b in limit])
    qtys = np.array([b[1] for b in limit])
    out = np.zeros(len(limit) + 2, np.int64)
    n_orders, n_trades, tick = _njit_probe(make(), prices, qtys, out)
    assert out.tolist() == [INVALID] * len(out)
    assert (n_orders, n_trades, tick) == (1, 0, 90)


@njit
def _njit_after_close(hbt):
    hbt.elapse(1_500)
    rc_close = hbt.close()
    return (rc_close, hbt.elapse(1_000), hbt.wait_next_feed(False, 1_000), hbt.submit_buy_order(0, 1, 90.0, 1.0, GTC,
            LIMIT, False), hbt.cancel(0, 1, False), hbt.current_timestamp)


def test_calls_after_close_return_closed():
    hbt = make()
    assert hbt.elapse(1_500) == 0
    assert hbt.submit_buy_order(0, 1, 90.0, 1.0, GTC, LIMIT, True) in (0, 3)
    ts = hbt.current_timestamp
    assert hbt.close() == 0
    assert hbt.elapse(1_000) == CLOSED
    assert hbt.wait_next_feed(True, 1_000) == CLOSED
    assert hbt.wait_order_response(0, 1, 1_000) == CLOSED
    assert hbt.submit_buy_order(0, 2, 90.0, 1.0, GTC, LIMIT, False) == CLOSED
    assert hbt.modify(0, 1, 91.0, 1.0, False) == CLOSED
    assert hbt.cancel(0, 1, False) == CLOSED
    assert hbt.current_timestamp == ts and len(hbt.orders(0)) == 1  # state still readable, unchanged
    assert hbt.depth(0).best_bid == 99.0

    rc = _njit_after_close(make())
    assert rc[:5] == (0, CLOSED, CLOSED, CLOSED, CLOSED) and rc[5] == 2_500  # first row at 1 000, then 1 500 ns


def test_live_bot_refuses_bad_numbers_before_sending():
    pytest.importorskip("iceoryx2")
    from hftbacktest.live import Instrument, LiveBotBuilder
    from hftbacktest.live.ipc import ConnectorChannel
    from hftbacktest.live.ipc import codec as c
    from hftbacktest.types import NONE

    name = f"tinv{os.getpid()}"
    ch = ConnectorChannel(name)
    hbt = LiveBotBuilder().register(Instrument(name, "btcusdt", 0.1, 0.001)).error_handler(lambda e: None).id(45).build()
    try:
        while ch.recv() is not None:  # hello + registration
            pass
        for price, qty, kind in BAD:
            assert hbt.submit_buy_order(0, 1, price, qty, GTC if kind == LIMIT else IOC, kind, False) == INVALID
        assert ch.recv() is None  # nothing was sent
        assert len(hbt.orders(0)) == 0
        assert hbt.submit_buy_order(0, 2, 100.0, 0.002, GTC, LIMIT, False) == 0
        req = c.decode_request(ch.recv()[1])
        ack = req.order._replace(req=NONE, status=NEW, exch_timestamp=req.order.local_timestamp + 1000)
        ch.send(45, c.encode_event(c.OrderUpdate("btcusdt", ack)))
        assert hbt.wait_order_response(0, 2, 1_000_000_000) == int(ReturnCode.ORDER_RESPONSE)
        assert hbt.modify(0, 2, INF, 0.002, False) == INVALID
        assert hbt.modify(0, 2, 100.0, NAN, False) == INVALID
        assert ch.recv() is None
        o = hbt.orders(0).get(2)
        assert (o.price_tick, o.qty, o.side) == (1000, 0.002, BUY)
    finally:
        hbt.close()
        ch.close()
