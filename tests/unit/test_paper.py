"""Paper mode: its [paper] table, the start-up check of the market, and the venue following the bots' feed."""
from __future__ import annotations

import asyncio
import socket

import orjson
import pytest

from hftbacktest.connector.config import ConnectorConfig
from hftbacktest.connector.marketdata import LOCAL_ASK_DEPTH, LOCAL_BID_DEPTH, LOCAL_DEPTH_CLEAR, LOCAL_SELL_TRADE
from hftbacktest.connector.paper import PaperConfig, PaperConnector, load_paper
from hftbacktest.emulator.market import spec_for
from hftbacktest.errors import ConfigError
from hftbacktest.live.ipc import TO_ALL, codec


@pytest.mark.parametrize("table, text", [
    ({"queue": "fifo"}, "key 'queue'"),
    ({"queue": "power_prob:0"}, "key 'queue'.*n must be a finite number > 0"),
    ({"queue": "log_prob:3"}, "key 'queue'.*takes no parameter"),
    ({"exchange": "full"}, "key 'exchange'"),
    ({"balanse": 1000.0}, "key 'balanse' is unknown"),
    ({"balance": "lots"}, "key 'balance' must be a float"),
    ({"balance": 0}, "key 'balance' must be > 0"),
    ({"leverage": 500}, "key 'leverage'"),
    ({"entry_latency_ms": -1}, "key 'entry_latency_ms'"),
    ({"maker_fee": 2}, "key 'maker_fee' is a rate"),
])
def test_bad_paper_table_names_the_key(table, text):
    with pytest.raises(ConfigError, match=text):
        PaperConfig.from_mapping(table, "bf.toml")


def test_paper_table_is_read_and_its_absence_means_live(tmp_path):
    live = tmp_path / "live.toml"
    live.write_text('stream_url = "ws://127.0.0.1:1/ws"\napi_url = "http://127.0.0.1:1"\n')
    assert load_paper(live) is None
    paper = tmp_path / "paper.toml"
    paper.write_text(live.read_text() + '[paper]\nqueue = "power_prob:3"\nbalance = 5000\n')
    assert load_paper(paper) == PaperConfig(queue="power_prob:3", balance=5000.0)
    with pytest.raises(ConfigError, match="'paper' must be a table"):
        PaperConfig.from_mapping(True, "bf.toml")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_market_is_an_error_at_start_naming_the_url(tmp_path, caplog):
    from hftbacktest.connector.cli import main

    port = _closed_port()
    cfg = tmp_path / "paper.toml"
    cfg.write_text(f'stream_url = "ws://127.0.0.1:{port}/ws"\napi_url = "http://127.0.0.1:{port}"\n[paper]\n')
    assert main(["--name", "pp-unit", "--connector", "binancefutures", "--config", str(cfg)]) == 1
    assert f"api_url http://127.0.0.1:{port}/fapi/v1/time is not reachable" in caplog.text


class _Ipc:
    def __init__(self):
        self.sent = []

    def send(self, bot_id, payload):
        self.sent.append(bot_id)


def _connector(**paper) -> PaperConnector:
    cfg = ConnectorConfig(stream_url="ws://127.0.0.1:1/ws", api_url="http://127.0.0.1:1", order_prefix="u-")
    c = PaperConnector("pp-unit", cfg, PaperConfig(**paper))
    c.ipc = _Ipc()
    c.venue.add_market(spec_for("BTCUSDT"))
    return c


def _batch(c, bot_id, events):
    c.send_batch(bot_id, [codec.Feed("btcusdt", ev) for ev in events])


def _ev(kind, px, qty):
    return (kind, 1, 2, px, qty, 0, 0, 0.0)


def test_venue_follows_the_feed_and_a_resync_keeps_queue_places():
    c = _connector()
    book = [_ev(LOCAL_DEPTH_CLEAR, 0.0, 0.0), _ev(LOCAL_BID_DEPTH, 60000.0, 0.005), _ev(LOCAL_BID_DEPTH, 59999.9, 0.003),
            _ev(LOCAL_ASK_DEPTH, 60000.1, 0.004)]
    _batch(c, TO_ALL, book)
    market = c.venue.markets["BTCUSDT"]
    assert market.book.best_bid == 600_000 and market.book.best_ask == 600_001
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "60000.0",
              "quantity": "0.002", "newClientOrderId": "u-1"}
    reply = asyncio.run(c.paper_request("POST", "/fapi/v1/order", params))
    assert reply.ok and reply.data["status"] == "NEW"
    order = c.account.live[reply.data["orderId"]]
    assert market.queue_ahead(order) == 5
    _batch(c, TO_ALL, [_ev(LOCAL_BID_DEPTH, 60000.0, 0.002)])  # cancels ahead of us
    assert market.queue_ahead(order) == 2
    _batch(c, 7, book)  # a late bot's replay of the book: not market news
    _batch(c, TO_ALL, book)  # a resync to the book as it was: a difference, not a clear and rebuild
    assert market.queue_ahead(order) == 2 and market.book.qty(1, 600_000) == 5
    c.send(TO_ALL, codec.Feed("btcusdt", _ev(LOCAL_SELL_TRADE, 60000.0, 0.003)))  # 2 ahead, 1 lot for us
    assert order.executed == 1
    frames = [orjson.loads(raw) for _, raw in c._frames]
    fills = [f["o"] for f in frames if f["e"] == "ORDER_TRADE_UPDATE" and f["o"]["x"] == "TRADE"]
    assert [(f["l"], f["L"], f["m"]) for f in fills] == [("0.001", "60000.00", True)]


def test_paper_venue_refuses_like_binance():
    c = _connector(balance=10.0)
    _batch(c, TO_ALL, [_ev(LOCAL_DEPTH_CLEAR, 0.0, 0.0), _ev(LOCAL_BID_DEPTH, 60000.0, 0.005),
                       _ev(LOCAL_ASK_DEPTH, 60000.1, 0.004)])
    gtx = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTX", "price": "60000.1",
           "quantity": "0.002", "newClientOrderId": "u-2"}
    reply = asyncio.run(c.paper_request("POST", "/fapi/v1/order", gtx))
    assert reply.code == -5022 and not reply.ok
    big = dict(gtx, timeInForce="GTC", price="60000.0", quantity="0.005", newClientOrderId="u-3")
    assert asyncio.run(c.paper_request("POST", "/fapi/v1/order", big)).code == -2019  # 300 USDT at 20x > 10
    dual = asyncio.run(c.paper_request("GET", "/fapi/v1/positionSide/dual", {}))
    assert dual.data == {"dualSidePosition": False}


def test_a_long_session_forgets_old_finished_orders(monkeypatch):
    import hftbacktest.connector.paper as paper

    monkeypatch.setattr(paper, "KEEP_ORDERS", 3)
    c = _connector()
    _batch(c, TO_ALL, [_ev(LOCAL_DEPTH_CLEAR, 0.0, 0.0), _ev(LOCAL_BID_DEPTH, 60000.0, 0.005),
                       _ev(LOCAL_ASK_DEPTH, 60000.1, 0.004)])
    ids = []
    for k in range(10):
        params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "59990.0",
                  "quantity": "0.002", "newClientOrderId": f"u-{k}"}
        ids.append(asyncio.run(c.paper_request("POST", "/fapi/v1/order", params)).data["orderId"])
        if k != 9:
            asyncio.run(c.paper_request("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": ids[-1]}))
    assert len(c.account.orders) <= 7 and ids[-1] in c.account.live  # the open one is kept
    query = asyncio.run(c.paper_request("GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "u-8"}))
    assert query.ok and query.data["status"] == "CANCELED"
    gone = asyncio.run(c.paper_request("GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "u-0"}))
    assert gone.code == -2013
