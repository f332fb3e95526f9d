"""`binance-futures-connector` (UMFutures + its WebSocket client) drives the emulator (base URLs changed only)."""
from __future__ import annotations

import json
import queue

import pytest

pytest.importorskip("binance.um_futures")
from binance.error import ClientError  # noqa: E402
from binance.um_futures import UMFutures  # noqa: E402
from binance.websocket.um_futures.websocket_client import UMFuturesWebsocketClient  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("loopback_only"), pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def um(client_emu):
    return UMFutures(key="k", secret="s", base_url=client_emu.rest_url)


def test_market_data_and_account(um):
    assert um.time()["serverTime"] > 0
    assert um.exchange_info()["symbols"][0]["symbol"] == "BTCUSDT"
    book = um.depth("BTCUSDT", limit=5)
    assert float(book["bids"][0][0]) < float(book["asks"][0][0])
    assert um.trades("BTCUSDT", limit=3) and um.agg_trades("BTCUSDT", limit=3) and um.klines("BTCUSDT", "1m", limit=3)
    assert float(um.ticker_24hr_price_change("BTCUSDT")["lastPrice"]) > 0
    assert float(um.ticker_price("BTCUSDT")["price"]) > 0
    assert float(um.book_ticker("BTCUSDT")["bidPrice"]) > 0
    assert float(um.mark_price("BTCUSDT")["markPrice"]) > 0
    assert um.funding_rate("BTCUSDT") == [] and um.open_interest("BTCUSDT")["symbol"] == "BTCUSDT"
    assert um.funding_info() == []  # only symbols with an adjusted funding cap/floor/interval are listed
    old = um.historical_trades("BTCUSDT", limit=3)
    assert len(old) == 3 and old[0]["id"] < old[-1]["id"] and isinstance(old[0]["isBuyerMaker"], bool)
    candles = um.continuous_klines("BTCUSDT", "PERPETUAL", "1m", limit=3)
    assert candles and float(candles[-1][2]) >= float(candles[-1][3]) > 0
    acct = um.account()
    assert float(acct["totalWalletBalance"]) > 0 and "totalMaintMargin" in acct
    assert float(um.balance()[0]["balance"]) > 0
    assert um.get_position_risk(symbol="BTCUSDT")[0]["positionSide"] == "BOTH"
    assert um.change_leverage("BTCUSDT", 10)["leverage"] == 10
    with pytest.raises(ClientError) as err:
        um.change_margin_type("BTCUSDT", "CROSSED")
    assert (err.value.status_code, err.value.error_code) == (400, -4046)
    assert um.leverage_brackets(symbol="BTCUSDT")["brackets"][0]["bracket"] == 1
    assert um.commission_rate("BTCUSDT")["takerCommissionRate"] == "0.000500"
    assert um.get_position_mode() == {"dualSidePosition": False}


def test_orders_batch_amend_history(um, resting_bid):
    px = resting_bid(0.99)
    o = um.new_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTX", quantity=0.002, price=px)
    assert um.modify_order(symbol="BTCUSDT", side="BUY", quantity=0.003, price=round(px - 10, 1),
                           orderId=o["orderId"])["origQty"] == "0.003"
    assert um.get_open_orders("BTCUSDT", orderId=o["orderId"])["status"] == "NEW"
    assert um.cancel_order("BTCUSDT", orderId=o["orderId"])["status"] == "CANCELED"
    batch = um.new_batch_order([{"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.002",
                                 "price": str(round(px - 20 - i, 1)), "timeInForce": "GTC",
                                 "newClientOrderId": f"fc-{i}"} for i in range(2)])
    assert [b["clientOrderId"] for b in batch] == ["fc-0", "fc-1"]
    cancelled = um.cancel_batch_order("BTCUSDT", orderIdList=[b["orderId"] for b in batch], origClientOrderIdList=[])
    assert [c["status"] for c in cancelled] == ["CANCELED", "CANCELED"]
    assert um.cancel_open_orders("BTCUSDT")["code"] == 200
    um.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=0.002)
    um.new_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity=0.002, reduceOnly="true")
    assert {h["orderId"] for h in um.get_all_orders("BTCUSDT")} >= {o["orderId"]}
    assert {t["side"] for t in um.get_account_trades("BTCUSDT")} >= {"BUY", "SELL"}
    assert um.get_income_history(symbol="BTCUSDT")
    assert um.countdown_cancel_order("BTCUSDT", 0)["countdownTime"] == "0"
    with pytest.raises(ClientError) as err:
        um.new_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity=0.002, price=px * 2)
    assert err.value.error_code == -4016


def test_websocket_client_on_routed_urls(client_emu, um):
    """The connector's thread-based client on /public and /market (its default unrouted /ws gets only /public
    streams, as on Binance) and the user stream on /private."""
    base = client_emu.ws_url.rsplit("/ws", 1)[0]
    seen: queue.Queue = queue.Queue()
    on_message = lambda _, raw: seen.put(json.loads(raw))
    clients = [UMFuturesWebsocketClient(stream_url=base + route, on_message=on_message)
               for route in ("/public", "/market", "/private")]
    try:
        public, market, private = clients
        public.diff_book_depth("btcusdt", speed=100)
        market.agg_trade("btcusdt")
        market.kline("btcusdt", "1m")
        key = um.new_listen_key()["listenKey"]
        private.user_data(listen_key=key)
        wanted = {"depthUpdate", "aggTrade", "kline", "ORDER_TRADE_UPDATE", "TRADE_LITE", "ACCOUNT_UPDATE"}
        kinds: set = set()
        traded = False
        while not wanted <= kinds:
            m = seen.get(timeout=10)
            kinds.add(m.get("e"))
            if not traded and {"depthUpdate", "aggTrade", "kline"} <= kinds:
                traded = True  # every subscription is live: now trade
                um.new_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=0.002)
                um.new_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity=0.002, reduceOnly="true")
    finally:
        for c in clients:
            c.stop()
