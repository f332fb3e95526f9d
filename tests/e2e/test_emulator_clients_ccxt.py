"""ccxt (REST) and ccxt.pro (WebSocket) drive the emulator unchanged except for their base URLs."""
from __future__ import annotations

import asyncio

import pytest

ccxt = pytest.importorskip("ccxt")
import ccxt.pro  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("loopback_only"), pytest.mark.timeout(120)]
SYMBOL = "BTC/USDT:USDT"


def _urls(emu) -> dict:
    urls = {name: f"{emu.rest_url}/fapi/v{v}" for name, v in (
        ("fapiPublic", 1), ("fapiPrivate", 1), ("fapiPublicV2", 2), ("fapiPrivateV2", 2), ("fapiPublicV3", 3),
        ("fapiPrivateV3", 3))}
    urls["fapiData"] = f"{emu.rest_url}/futures/data"
    urls["ws"] = {"linear": emu.ws_url}  # ccxt.pro derives /public/ws, /market/ws, /private/ws from it
    return urls


def _client(module, emu, key="k", secret="s"):
    return module.binanceusdm({"apiKey": key, "secret": secret, "urls": {"api": _urls(emu)},
                               "options": {"fetchCurrencies": False}})


@pytest.fixture(scope="module")
def x(client_emu):
    x = _client(ccxt, client_emu)
    x.load_markets()
    return x


def test_market_data(x, client_emu):
    m = x.market(SYMBOL)
    assert m["id"] == "BTCUSDT" and m["precision"]["price"] == 0.1 and m["precision"]["amount"] == 0.001
    assert m["limits"]["cost"]["min"] == 100 and m["contract"] and m["linear"]
    assert abs(x.fetch_time() - client_emu.now_ms()) < 5_000
    book = x.fetch_order_book(SYMBOL, 5)
    assert len(book["bids"]) == 5 and book["bids"][0][0] < book["asks"][0][0] and book["nonce"] > 0
    ticker = x.fetch_ticker(SYMBOL)
    assert ticker["last"] > 0 and ticker["high"] >= ticker["low"] > 0 and ticker["baseVolume"] > 0
    candles = x.fetch_ohlcv(SYMBOL, "1m", limit=5)
    assert candles and all(c[2] >= max(c[1], c[4]) and c[3] <= min(c[1], c[4]) for c in candles)
    trades = x.fetch_trades(SYMBOL, limit=5)
    assert 0 < len(trades) <= 5 and all(t["price"] > 0 and t["amount"] > 0 for t in trades)
    funding = x.fetch_funding_rate(SYMBOL)
    assert funding["fundingRate"] == 0.0001 and funding["markPrice"] > 0 and funding["fundingTimestamp"] > 0
    assert x.fetch_bids_asks([SYMBOL])[SYMBOL]["bid"] > 0


def test_account_and_settings(x):
    balance = x.fetch_balance()
    assert balance["USDT"]["total"] == 100_000 and balance["USDT"]["free"] > 0
    assert balance["info"]["assets"][0]["updateTime"] > 0  # a fresh account reports its creation time, not 0
    assert x.set_leverage(10, SYMBOL)["leverage"] == 10
    with pytest.raises(ccxt.MarginModeAlreadySet):  # -4046: cross margin already
        x.set_margin_mode("cross", SYMBOL)
    with pytest.raises(ccxt.ExchangeError, match="cross margin only"):
        x.set_margin_mode("isolated", SYMBOL)
    assert x.fetch_position_mode(SYMBOL)["hedged"] is False
    assert x.fetch_trading_fee(SYMBOL)["maker"] == 0.0002
    assert x.fetch_leverage_tiers([SYMBOL])[SYMBOL][0]["maxLeverage"] == 125


def test_orders_amend_cancel_batch_and_history(x, resting_bid):
    px = resting_bid(0.99)
    o = x.create_order(SYMBOL, "limit", "buy", 0.002, px, {"timeInForce": "GTX"})
    assert o["status"] == "open" and o["postOnly"] and o["price"] == px
    edited = x.edit_order(o["id"], SYMBOL, "limit", "buy", 0.003, round(px - 10, 1))
    assert edited["amount"] == 0.003 and edited["price"] == round(px - 10, 1)
    assert x.fetch_order(o["id"], SYMBOL)["amount"] == 0.003
    assert [oo["id"] for oo in x.fetch_open_orders(SYMBOL)] == [o["id"]]
    assert x.cancel_order(o["id"], SYMBOL)["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound):  # -2011 / -2013
        x.fetch_open_order(o["id"], SYMBOL)
    batch = x.create_orders([{"symbol": SYMBOL, "type": "limit", "side": "buy", "amount": 0.002,
                              "price": round(px - 20 - i, 1)} for i in range(3)])
    assert [b["status"] for b in batch] == ["open"] * 3
    cancelled = x.cancel_orders([b["id"] for b in batch[:2]], SYMBOL)
    assert [c["status"] for c in cancelled] == ["canceled"] * 2
    x.cancel_all_orders(SYMBOL)
    assert x.fetch_open_orders(SYMBOL) == []
    market = x.create_order(SYMBOL, "market", "buy", 0.002, None, {"newOrderRespType": "RESULT"})
    assert market["status"] == "closed" and market["filled"] == 0.002 and market["average"] > 0
    x.create_order(SYMBOL, "market", "sell", 0.002, None, {"reduceOnly": True})
    history = x.fetch_orders(SYMBOL)
    assert {o["id"], batch[2]["id"], market["id"]} <= {h["id"] for h in history}
    mine = x.fetch_my_trades(SYMBOL)
    assert {t["side"] for t in mine} >= {"buy", "sell"} and all(t["fee"]["currency"] == "USDT" for t in mine)
    positions = x.fetch_positions([SYMBOL])
    assert all(p["contracts"] in (0, None) for p in positions)


def test_errors_map_to_ccxt_exceptions(x, client_emu, resting_bid):
    ask = client_emu.book("BTCUSDT", 1)["asks"][0][0] * 0.1
    with pytest.raises(ccxt.InvalidOrder):  # -5022: a post-only order that would take
        x.create_order(SYMBOL, "limit", "buy", 0.002, round(ask + 5, 1), {"timeInForce": "GTX"})
    with pytest.raises(ccxt.ExchangeError, match='"code":-2019'):  # ccxt 4.5 maps -2019 to plain ExchangeError
        x.create_order(SYMBOL, "limit", "buy", 900, resting_bid(0.99))
    with pytest.raises(ccxt.ExchangeError, match='"code":-4164'):  # notional below MIN_NOTIONAL
        x.create_order(SYMBOL, "limit", "buy", 0.001, resting_bid(0.99))
    with pytest.raises(ccxt.OrderNotFound):
        x.cancel_order("123", SYMBOL)
    with pytest.raises(ccxt.AuthenticationError):  # -2015 unknown API key
        _client(ccxt, client_emu, key="nobody").fetch_balance()
    with pytest.raises(ccxt.ExchangeError) as err:  # -1022 wrong secret
        _client(ccxt, client_emu, secret="wrong").fetch_balance()
    assert "-1022" in str(err.value)


def test_ccxt_pro_streams_and_user_data(client_emu, resting_bid):
    async def go():
        p = _client(ccxt.pro, client_emu)
        try:
            await p.load_markets()
            book = await asyncio.wait_for(p.watch_order_book(SYMBOL), 10)
            assert book["bids"][0][0] < book["asks"][0][0]
            trades = await asyncio.wait_for(p.watch_trades(SYMBOL), 10)
            assert trades and trades[-1]["price"] > 0
            ticker = await asyncio.wait_for(p.watch_ticker(SYMBOL), 10)
            assert ticker["last"] > 0
            candles = await asyncio.wait_for(p.watch_ohlcv(SYMBOL, "1m"), 10)
            assert candles[-1][4] > 0
            assert (await asyncio.wait_for(p.watch_bids_asks([SYMBOL]), 10))[SYMBOL]["ask"] > 0
            orders = asyncio.ensure_future(p.watch_orders(SYMBOL))
            fills = asyncio.ensure_future(p.watch_my_trades(SYMBOL))
            balance = asyncio.ensure_future(p.watch_balance())
            await asyncio.sleep(0)  # let the three subscriptions start before anything happens
            placed = None
            while not orders.done():
                if placed is None:
                    placed = await p.create_order(SYMBOL, "limit", "buy", 0.002, resting_bid(0.99))
                await asyncio.wait([orders], timeout=0.2)
            assert (await orders)[-1]["id"] == placed["id"]
            await p.create_order(SYMBOL, "market", "sell", 0.002)
            mine = await asyncio.wait_for(fills, 10)
            assert mine[-1]["side"] == "sell" and mine[-1]["amount"] == 0.002
            bal = await asyncio.wait_for(balance, 10)
            assert bal["USDT"]["total"] > 0
            await p.cancel_all_orders(SYMBOL)
            await p.create_order(SYMBOL, "market", "buy", 0.002, None, {"reduceOnly": True})
        finally:
            await p.close()

    asyncio.run(go())
