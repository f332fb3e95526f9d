"""Mark price and funding fees live: the connector's decoding of Binance payloads (shaped as Binance documents the
USD-M `markPriceUpdate` stream and the user stream's ACCOUNT_UPDATE with reason FUNDING_FEE) and the live bot's
accessors, which count a fee as the backtest counts a settlement."""
from __future__ import annotations

import asyncio
import os

import orjson
import pytest
from numba import njit

from hftbacktest.connector.config import ConnectorConfig
from hftbacktest.connector.marketdata import SymbolBook
from hftbacktest.connector.rest import RestReply
from hftbacktest import Recorder
from hftbacktest.live import Instrument, LiveBotBuilder
from hftbacktest.live.ipc import ConnectorChannel
from hftbacktest.live.ipc import codec as c
from hftbacktest.types import FUNDING_FEE_EVENT, LOCAL_EVENT, MARK_PRICE_EVENT

T_FUNDING = 1_723_161_600_000  # 2024-08-09 00:00 UTC, a funding time (ms)


def _connector(**cfg):
    from hftbacktest.connector.binancefutures import BinanceFuturesConnector

    con = BinanceFuturesConnector("unit", ConnectorConfig.from_mapping(
        {"stream_url": "ws://127.0.0.1:1/ws", "api_url": "http://127.0.0.1:2", "api_key": "k", "secret": "s", **cfg}))
    sent, asked, answers = [], [], {}
    con.send = lambda bot_id, msg: sent.append(msg)

    async def request(method, path, params=None, **kw):
        asked.append((method, path, dict(params or {})))
        return answers[path](params or {})

    con.rest.request = request
    con.books["btcusdt"] = SymbolBook("btcusdt")  # a bot trades btcusdt only
    con.perp.LOOKUP_DELAYS_S = (0.0, 0.0)
    return con, sent, asked, answers


def _fees(sent):
    return [(m.symbol, m.event[3], m.event[1]) for m in sent
            if isinstance(m, c.Feed) and m.event[0] == FUNDING_FEE_EVENT | LOCAL_EVENT]


@pytest.mark.parametrize("stream_url, expected", [
    ("wss://fstream.binance.com/ws", "wss://fstream.binance.com/market/ws"),
    ("wss://fstream.binance.com/public/ws", "wss://fstream.binance.com/market/ws"),
    ("wss://fstream.binance.com/public/stream", "wss://fstream.binance.com/market/ws"),
    ("ws://127.0.0.1:18765/ws/", "ws://127.0.0.1:18765/market/ws"),
])
def test_mark_price_goes_to_the_market_route(stream_url, expected):
    from hftbacktest.binance.wire import routed_url
    from hftbacktest.errors import ConfigError

    assert routed_url(stream_url, "market") == expected
    assert _connector(stream_url=stream_url)[0].perp.url == expected
    assert _connector(mark_price_url="ws://h:1/x")[0].perp.url == "ws://h:1/x"
    with pytest.raises(ConfigError, match="'mark_price_url' must start with ws://"):
        _connector(mark_price_url="http://h:1/x")


def test_mark_price_stream_is_forwarded():
    con, sent, _, _ = _connector()
    frame = {"stream": "btcusdt@markPrice@1s", "data": {
        "e": "markPriceUpdate", "E": 1_723_161_255_000, "s": "BTCUSDT", "p": "56961.10000000", "i": "56990.2",
        "P": "56980.0", "r": "0.00010000", "T": T_FUNDING}}
    con.perp.on_frame(orjson.dumps(frame), 5)
    con.perp.on_frame(orjson.dumps({**frame, "data": {**frame["data"], "s": "ETHUSDT"}}), 6)  # no bot trades it
    con.perp.on_frame(orjson.dumps({"result": None, "id": 1}), 7)  # the subscription's answer
    (msg,) = sent
    ev, exch_ts, _, px, qty, _, ival, _ = msg.event
    assert msg.symbol == "btcusdt" and ev == MARK_PRICE_EVENT | LOCAL_EVENT
    assert (exch_ts, px, qty, ival) == (1_723_161_255_000 * 10**6, 56961.1, 0.0, T_FUNDING * 10**6)


def test_isolated_funding_fee_is_that_positions_and_the_sign_is_paid():
    """An isolated position's event carries its position: bc -0.5 (the wallet lost 0.5) is 0.5 paid."""
    con, sent, asked, _ = _connector()
    frame = {"e": "ACCOUNT_UPDATE", "E": T_FUNDING + 5, "T": T_FUNDING + 3, "a": {
        "m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "999.5", "cw": "899.5", "bc": "-0.50000000"}],
        "P": [{"s": "BTCUSDT", "pa": "0.100", "ep": "60000", "cr": "0", "up": "1", "mt": "isolated",
               "iw": "100", "ps": "BOTH"}]}}
    con._on_user(orjson.dumps(frame))
    assert _fees(sent) == [("btcusdt", 0.5, (T_FUNDING + 3) * 10**6)]
    assert [m for m in sent if isinstance(m, c.Position)] == [c.Position("btcusdt", 0.1, (T_FUNDING + 3) * 10**6)]
    assert asked == []
    sent.clear()
    con._on_user(orjson.dumps({**frame, "a": {**frame["a"], "m": "ORDER"}}))  # another reason: no fee
    con._on_user(orjson.dumps({**frame, "a": {**frame["a"], "P": [{**frame["a"]["P"][0], "s": "ETHUSDT"}]}}))
    assert _fees(sent) == []


def test_crossed_funding_fee_takes_its_symbols_from_the_income_history_once():
    """A crossed position's event names only USDT: the income history says which symbol paid what; a second
    event for the same funding time forwards nothing twice, and a symbol no bot trades is left out."""
    con, sent, asked, answers = _connector()
    rows = [{"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": "0.25", "asset": "USDT",
             "time": T_FUNDING, "tranId": 11},
            {"symbol": "ETHUSDT", "incomeType": "FUNDING_FEE", "income": "-1.0", "asset": "USDT",
             "time": T_FUNDING, "tranId": 12}]
    answers["/fapi/v1/income"] = lambda p: RestReply(200, rows)
    frame = {"e": "ACCOUNT_UPDATE", "E": T_FUNDING + 9, "T": T_FUNDING + 7, "a": {
        "m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "1000.25", "cw": "1000.25", "bc": "0.25"}]}}

    async def run():
        con._on_user(orjson.dumps(frame))
        con._on_user(orjson.dumps(frame))  # same minute: one lookup
        await asyncio.gather(*list(con._tasks))
        con._on_user(orjson.dumps({**frame, "T": T_FUNDING + 70_000}))  # a later event, rows already counted
        await asyncio.gather(*list(con._tasks))

    asyncio.run(run())
    assert _fees(sent) == [("btcusdt", -0.25, T_FUNDING * 10**6)]  # received 0.25: paid -0.25
    assert asked[0] == ("GET", "/fapi/v1/income", {"incomeType": "FUNDING_FEE", "startTime": T_FUNDING + 7 - 60_000,
                                                    "endTime": T_FUNDING + 7 + 60_000, "limit": 1000})
    assert len(asked) == 1 + 2  # the later event asked twice (its delays) and found nothing new
    errors = [m for m in sent if isinstance(m, c.Error)]
    assert [(e.kind, e.code) for e in errors] == [(c.ErrorKind.Custom, c.CUSTOM_FUNDING_MISSED)]


@njit
def _read(hbt):
    return hbt.mark_price(0), hbt.funding(0)


def test_live_bot_mark_price_and_funding_as_in_backtest():
    name = f"tperp{os.getpid()}"
    ch = ConnectorChannel(name)
    hbt = LiveBotBuilder().register(Instrument(name, "btcusdt", 0.1, 0.001)).id(7).build()
    try:
        mark = (MARK_PRICE_EVENT | LOCAL_EVENT, 1_000, 1_005, 60_000.0, 0.0, 0, 0, 0.0)
        fee = (FUNDING_FEE_EVENT | LOCAL_EVENT, 2_000, 2_005, 0.6, 0.0, 0, 0, 0.0)
        rebate = (FUNDING_FEE_EVENT | LOCAL_EVENT, 3_000, 3_005, -0.2, 0.0, 0, 0, 0.0)
        got = hbt.mark_price(0)
        assert got != got  # NaN before the first
        balance = hbt.state_values(0).balance
        for ev in (mark, fee, rebate):
            ch.send(7, c.encode_event(c.Feed("btcusdt", ev)))
        assert hbt.wait_next_feed(False, 1_000_000_000) == 2
        hbt.elapse(0)
        assert hbt.mark_price(0) == 60_000.0
        assert hbt.funding(0) == pytest.approx(0.4)  # 0.6 paid, 0.2 received
        assert hbt.state_values(0).balance == pytest.approx(balance - 0.4)  # linear: the balance pays it
        assert _read(hbt) == (60_000.0, pytest.approx(0.4))
        assert hbt.feed_latency(0) == (1_000, 1_005)  # a fee is no market data
        rec = Recorder(1, 8)
        rec.recorder.record(hbt)
        assert rec.funding(0)[-1] == pytest.approx(0.4)  # recorded as in the backtest
    finally:
        hbt.close()
        ch.close()
