"""Connector pieces without a network: config validation, formatting, depth sync, order state merging, signing."""
from __future__ import annotations

import hashlib
import hmac
import asyncio
import re
from urllib.parse import parse_qsl

import pytest

from hftbacktest.connector.config import ConnectorConfig, load_config
from hftbacktest.connector.marketdata import (
    LOCAL_ASK_DEPTH, LOCAL_BID_DEPTH, LOCAL_BUY_TRADE, LOCAL_DEPTH_CLEAR, LOCAL_SELL_TRADE, DepthGap, StaleSnapshot,
    SymbolBook, trade_event,
)
from hftbacktest.connector.orders import OrderManager
from hftbacktest.binance.numbers import format_step
from hftbacktest.connector.rest import BinanceRest
from hftbacktest.errors import ConfigError
from hftbacktest.live.ipc.codec import WireOrder
from hftbacktest.types import BUY, CANCELED, EXPIRED, FILLED, GTX, LIMIT, NEW, NONE, PARTIALLY_FILLED, REPLACED

BASE = {"stream_url": "ws://127.0.0.1:1/ws", "api_url": "http://127.0.0.1:2"}


def test_user_stream_goes_to_the_private_route():
    """Binance serves listen keys on `/private` only; an unrouted connection would get no order updates."""
    from hftbacktest.connector.config import ConnectorConfig

    def cfg(**kw):
        return ConnectorConfig.from_mapping({"api_url": "https://fapi.binance.com", **kw})

    assert cfg(stream_url="wss://fstream.binance.com/ws").user_stream_base == "wss://fstream.binance.com/private/ws"
    assert cfg(stream_url="ws://127.0.0.1:9/public/stream?streams=a").user_stream_base == "ws://127.0.0.1:9/private/ws"
    assert cfg(stream_url="wss://x/ws", user_stream_url="wss://y/ws/").user_stream_base == "wss://y/ws"
    with pytest.raises(ConfigError, match="user_stream_url"):
        cfg(stream_url="wss://x/ws", user_stream_url="https://y")


def test_config_errors_name_the_key_and_never_show_secrets(tmp_path):
    with pytest.raises(ConfigError, match="'api_url'"):
        ConnectorConfig.from_mapping({"stream_url": "ws://x/ws"})
    with pytest.raises(ConfigError, match="'order_prefix'"):
        ConnectorConfig.from_mapping({**BASE, "order_prefix": "bad prefix!"})
    with pytest.raises(ConfigError, match="'recv_window_ms'"):
        ConnectorConfig.from_mapping({**BASE, "recv_window_ms": "5000"})
    with pytest.raises(ConfigError) as exc:
        ConnectorConfig.from_mapping({**BASE, "api_key": 12345678, "secret": "s3cr3t-value"})
    assert "12345678" not in str(exc.value) and "'api_key'" in str(exc.value)
    cfg = ConnectorConfig.from_mapping({**BASE, "api_key": "KEY-abcdef", "secret": "SECRET-xyz"})
    assert "KEY-abcdef" not in repr(cfg) and "SECRET-xyz" not in str(cfg) and "***" in repr(cfg)
    path = tmp_path / "c.toml"
    path.write_text('stream_url = "ws://127.0.0.1:1/ws"\napi_url = "http://127.0.0.1:2"\norder_prefx = "hbt"\n')
    with pytest.raises(ConfigError, match=f"{path}: unknown key 'order_prefx', did you mean 'order_prefix'"):
        load_config(path)  # a typo must not start the connector without its prefix
    path.write_text('stream_url = "ws://127.0.0.1:1/ws"\napi_url = "http://127.0.0.1:2"\n[limits]\nrate = 1\n')
    with pytest.raises(ConfigError, match="unknown key 'limits'"):
        load_config(path)
    path.write_text("stream_url = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)


def test_prices_and_quantities_use_the_step_precision():
    assert format_step(61800.30000000001, 0.1) == "61800.3"
    assert format_step(0.0012000001, 0.001) == "0.001"
    assert format_step(123.0, 1.0) == "123"
    assert format_step(0.00000123, 0.00000001) == "0.00000123"  # no scientific notation


def diff(U, u, pu, b=(), a=(), T=1000):
    return {"e": "depthUpdate", "E": T, "T": T, "s": "BTCUSDT", "U": U, "u": u, "pu": pu,
            "b": [list(x) for x in b], "a": [list(x) for x in a]}


def test_depth_bootstrap_drops_old_diffs_and_publishes_clear_then_levels():
    book = SymbolBook("btcusdt")
    assert book.on_depth(diff(90, 95, 89, b=[("10.0", "9")]), 1) == []
    assert book.on_depth(diff(96, 105, 95, b=[("10.0", "2")], a=[("11.0", "0")]), 1) == []
    snap = {"lastUpdateId": 100, "T": 900, "bids": [["10.0", "1"], ["9.9", "3"]], "asks": [["11.0", "4"]]}
    events = book.on_snapshot(snap, 7)
    assert events[0][0] == LOCAL_DEPTH_CLEAR
    kinds = [(e[0], e[3], e[4]) for e in events[1:]]
    assert kinds == [(LOCAL_BID_DEPTH, 10.0, 1.0), (LOCAL_BID_DEPTH, 9.9, 3.0), (LOCAL_ASK_DEPTH, 11.0, 4.0),
                     (LOCAL_BID_DEPTH, 10.0, 2.0), (LOCAL_ASK_DEPTH, 11.0, 0.0)]
    assert book.bids == {10.0: 2.0, 9.9: 3.0} and book.asks == {}
    assert book.last_u == 105
    assert book.on_depth(diff(96, 105, 95, b=[("10.0", "8")]), 1) == []  # duplicate dropped
    assert len(book.on_depth(diff(106, 110, 105, a=[("11.5", "1")]), 1)) == 1
    with pytest.raises(DepthGap, match="pu=111 last_u=110"):
        book.on_depth(diff(112, 115, 111), 1)


def test_book_age_counts_from_the_last_applied_change():
    book = SymbolBook("btcusdt")
    assert not book.is_stale(10**12, 10.0)  # syncing: the snapshot task owns it
    book.on_snapshot({"lastUpdateId": 100, "bids": [["10.0", "1"]], "asks": []}, 1_000_000_000)
    assert not book.is_stale(10_000_000_000, 10.0) and book.is_stale(11_000_000_001, 10.0)
    book.on_depth(diff(100, 101, 99, b=[("10.0", "2")]), 5_000_000_000)
    assert not book.is_stale(11_000_000_001, 10.0)
    assert book.on_depth(diff(90, 95, 89), 9_000_000_000) == [] and book.updated_ns == 5_000_000_000  # dropped


def test_first_diff_must_straddle_the_snapshot_id():
    """Binance's rule U <= lastUpdateId <= u: a first diff starting after the snapshot id may have skipped ids."""
    book = SymbolBook("btcusdt")
    book.on_snapshot({"lastUpdateId": 100, "bids": [["10.0", "1"]], "asks": []}, 1)
    assert book.on_depth(diff(90, 99, 89), 1) == []  # older than the snapshot: dropped
    with pytest.raises(DepthGap, match="does not bridge snapshot 100"):
        book.on_depth(diff(102, 104, 99), 1)


def test_stale_snapshot_is_detected():
    book = SymbolBook("btcusdt")
    book.on_depth(diff(200, 210, 199), 1)
    with pytest.raises(StaleSnapshot):
        book.on_snapshot({"lastUpdateId": 150, "bids": [], "asks": []}, 1)


def test_replayed_binance_session_bootstraps_from_its_snapshot(sample_data_dir):
    """Real payloads: diffs buffered before the recorded REST snapshot, then 2000 live diffs chained by pu."""
    import gzip

    import orjson

    book = SymbolBook("btcusdt")
    applied = 0
    with gzip.open(sample_data_dir / "btcusdt_20240808.gz", "rt") as fh:
        for line in fh:
            msg = orjson.loads(line.split(" ", 1)[1])
            if "lastUpdateId" in msg and book.state != "LIVE":
                events = book.on_snapshot(msg, 0)
                assert events[0][0] == LOCAL_DEPTH_CLEAR and len(events) > len(msg["bids"])
                continue
            msg = msg.get("data", {})
            if msg.get("e") == "depthUpdate":
                book.on_depth(msg, 0)
                applied += book.state == "LIVE"
                if applied == 2000:
                    break
    assert applied == 2000
    assert max(book.bids) < min(book.asks)  # a book rebuilt correctly is not crossed


def test_trades_map_aggressor_side_and_skip_non_market():
    t = {"e": "trade", "T": 5, "s": "BTCUSDT", "t": 9, "p": "61800.30", "q": "0.006", "X": "MARKET", "m": False}
    assert trade_event(t, 1)[:5] == (LOCAL_BUY_TRADE, 5_000_000, 1, 61800.3, 0.006)
    assert trade_event({**t, "m": True}, 1)[0] == LOCAL_SELL_TRADE
    assert trade_event({**t, "X": "INSURANCE_FUND"}, 1) is None


def order(order_id=1, qty=0.01, price_tick=600000):
    return WireOrder(qty, qty, 0.0, 0, price_tick, 0.1, 0, 123, order_id, False, LIMIT, NEW, NEW, BUY, GTX)


def ws(cid, x, X, z, l=0.0, T=2000, L="0"):
    return {"s": "BTCUSDT", "c": cid, "S": "BUY", "o": "LIMIT", "f": "GTX", "q": "0.01", "p": "60000.0",
            "x": x, "X": X, "z": str(z), "l": str(l), "L": L, "T": T, "m": True}


@pytest.mark.parametrize("rest_first", [True, False])
def test_terminal_state_reaches_the_bot_exactly_once(rest_first):
    om = OrderManager("hbt-")
    rec = om.submit(7, "btcusdt", order())
    assert rec.client_id.startswith("hbt-") and len(rec.client_id) == 20
    assert om.submit(7, "btcusdt", order()) is None  # id still live
    assert om.on_rest_order(rec, {"status": "NEW", "origQty": "0.01", "executedQty": "0", "updateTime": 1000}).req == NONE
    forwarded = []
    rest_cancel = {"status": "CANCELED", "origQty": "0.01", "executedQty": "0", "updateTime": 3000}
    if rest_first:
        forwarded.append(om.on_rest_order(rec, rest_cancel))
        forwarded.append(om.on_ws_update(ws(rec.client_id, "CANCELED", "CANCELED", 0, T=3000), 3000))
    else:
        forwarded.append(om.on_ws_update(ws(rec.client_id, "CANCELED", "CANCELED", 0, T=3000), 3000))
        forwarded.append(om.on_rest_order(rec, rest_cancel))
    sent = [f for f in forwarded if f is not None]
    assert len(sent) == 1
    assert rec.client_id not in om.by_client and om.find_live("btcusdt", 1) is None
    assert om.submit(7, "btcusdt", order()) is not None  # the id is reusable


def test_late_fill_after_cancel_is_still_forwarded_and_req_always_clears():
    om = OrderManager("")
    rec = om.submit(1, "btcusdt", order())
    om.on_ws_update(ws(rec.client_id, "NEW", "NEW", 0, T=1500), 1500)
    om.mark_request(rec, CANCELED, 99)
    om.on_rest_order(rec, {"status": "CANCELED", "origQty": "0.01", "executedQty": "0", "updateTime": 1400})
    assert rec.order.req == NONE  # a stale REST reply still ends the pending request
    fill = om.on_ws_update(ws(rec.client_id, "TRADE", "PARTIALLY_FILLED", 0.004, l=0.004, T=1450, L="60000.0"), 1450)
    assert fill is not None and fill.order.exec_qty == 0.004 and fill.order.exec_price_tick == 600000
    assert om.on_ws_update(ws(rec.client_id, "TRADE", "PARTIALLY_FILLED", 0.004, l=0.004, T=1450), 1450) is None


def test_client_ids_carry_the_bot_order_id_for_adoption():
    om = OrderManager("grid.1-")
    ids = {om.new_client_id(2**64 - 1) for _ in range(50)}
    assert len(ids) == 50  # a reused order id still gets a fresh client id
    for cid in ids:
        assert len(cid) == 23 and om.order_id_of(cid) == 2**64 - 1
        assert re.fullmatch(r"[\.A-Z\:/a-z0-9_-]{1,36}", cid)  # Binance's client id rule
    assert om.order_id_of(om.new_client_id(600_123)) == 600_123
    assert om.order_id_of("grid.1-short") is None and om.order_id_of("other-" + "0" * 16) is None
    rec = om.adopt("btcusdt", om.new_client_id(5), order(5), 0)
    assert rec is not None and om.find_live("btcusdt", 5) is rec
    assert om.adopt("btcusdt", om.new_client_id(5), order(5), 0) is None  # the id is taken
    with pytest.raises(ConfigError, match="adopt_orders"):
        ConnectorConfig.from_mapping({"stream_url": "ws://x/ws", "api_url": "http://x", "adopt_orders": True})


def test_user_stream_echo_of_a_rest_reply_is_not_forwarded():
    om = OrderManager("")
    rec = om.submit(1, "btcusdt", order())
    ack = om.on_rest_order(rec, {"status": "NEW", "origQty": "0.01", "executedQty": "0", "updateTime": 1000,
                                 "price": "60000.0"})
    assert ack is not None and ack.req == NONE
    om.mark_request(rec, REPLACED, 99)  # the bot asked for a modify meanwhile
    assert om.on_ws_update({**ws(rec.client_id, "NEW", "NEW", 0, T=1000), "m": False}, 1000) is None
    assert rec.order.req == REPLACED  # still pending: only the modify's own answer ends it
    amended = om.on_ws_update({**ws(rec.client_id, "AMENDMENT", "NEW", 0, T=1100), "p": "60000.5", "m": False}, 1100)
    assert amended.order.price_tick == 600005 and amended.order.req == NONE  # the amendment answers the modify


def test_a_late_amendment_event_does_not_answer_the_next_modify():
    """Modify 1 is answered by its reply; its user-stream AMENDMENT arrives only while modify 2 is pending. That
    event shows modify 1's price and qty, so modify 2 stays pending until its own answer (here: Binance cancels
    the GTX order the amendment would make take)."""
    om = OrderManager("")
    rec = om.submit(1, "btcusdt", order())
    om.on_rest_order(rec, {"status": "NEW", "origQty": "0.01", "executedQty": "0", "updateTime": 1000,
                           "price": "60000.0"})
    om.mark_request(rec, REPLACED, 10, target=(600005, 0.02))
    first = om.on_rest_order(rec, {"status": "NEW", "origQty": "0.02", "executedQty": "0", "updateTime": 1100,
                                   "price": "60000.5"}, REPLACED)
    assert first.req == NONE and first.price_tick == 600005
    om.mark_request(rec, REPLACED, 20, target=(610000, 0.02))
    late = om.on_ws_update({**ws(rec.client_id, "AMENDMENT", "NEW", 0, T=1100), "p": "60000.5", "q": "0.02"}, 1100)
    assert late is None or late.order.req == REPLACED
    assert rec.order.req == REPLACED  # still waiting for modify 2's answer
    done = om.on_ws_update(ws(rec.client_id, "CANCELED", "CANCELED", 0, T=1200), 1200)
    assert done.order.status == CANCELED and done.order.req == NONE


def test_a_late_amendment_event_does_not_answer_a_modify_that_changes_nothing():
    """Modify 1 is answered by its reply; modify 2 asks for the same price and qty (Binance refuses it with -5027,
    no event follows). Modify 1's late AMENDMENT shows exactly modify 2's values: it must not answer modify 2,
    else the bot moves on and modify 2's refusal lands on the next request (CI failure of the live e2e)."""
    om = OrderManager("")
    rec = om.submit(1, "btcusdt", order())
    om.on_rest_order(rec, {"status": "NEW", "origQty": "0.01", "executedQty": "0", "updateTime": 1000,
                           "price": "60000.0"})
    om.mark_request(rec, REPLACED, 10, target=(600005, 0.02))
    om.on_rest_order(rec, {"status": "NEW", "origQty": "0.02", "executedQty": "0", "updateTime": 1100,
                           "price": "60000.5"}, REPLACED)
    om.mark_request(rec, REPLACED, 20, target=(600005, 0.02))
    late = om.on_ws_update({**ws(rec.client_id, "AMENDMENT", "NEW", 0, T=1100), "p": "60000.5", "q": "0.02"}, 1100)
    assert late is None or late.order.req == REPLACED
    assert rec.order.req == REPLACED  # modify 2 still waits for its own (refusing) reply
    refused = om.on_rest_failure(rec, False)
    assert refused.req == NONE and refused.price_tick == 600005 and refused.status == NEW


def test_rejected_submit_expires_and_unknown_enum_is_kept():
    om = OrderManager("p")
    rec = om.submit(1, "btcusdt", order())
    out = om.on_rest_failure(rec, True)
    assert out.status == EXPIRED and out.req == NONE and not om.by_client
    rec = om.submit(1, "btcusdt", order(2))
    upd = om.on_ws_update({**ws(rec.client_id, "NEW", "NEW", 0), "f": "GTD", "X": "SOMETHING_NEW"}, 1)
    assert upd is not None and upd.order.status == 255 and upd.order.time_in_force == 255
    upd = om.on_ws_update(ws(rec.client_id, "TRADE", "FILLED", 0.01, l=0.01, T=2500, L="60000.0"), 2500)
    assert upd.order.status == FILLED and upd.order.leaves_qty == 0.0 and upd.order.maker


def test_signed_requests_verify_on_a_loopback_server():
    """A tiny aiohttp server recomputes the HMAC over query+body exactly as Binance does."""
    from aiohttp import web

    seen = {}

    async def handler(request: web.Request):
        body = (await request.read()).decode()
        query = request.query_string
        total = query + body
        payload, sig = total.rsplit("&signature=", 1)
        seen.update(key=request.headers.get("X-MBX-APIKEY"), method=request.method,
                    ok=hmac.new(b"sec", payload.encode(), hashlib.sha256).hexdigest() == sig,
                    params=dict(parse_qsl(payload)))
        return web.json_response({"orderId": 1, "status": "NEW", "updateTime": 1}, headers={"X-MBX-USED-WEIGHT-1M": "7"})

    async def run():
        app = web.Application()
        app.router.add_route("*", "/fapi/v1/order", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        cfg = ConnectorConfig.from_mapping({"stream_url": "ws://127.0.0.1:1/ws", "api_url": f"http://127.0.0.1:{port}",
                                            "api_key": "k", "secret": "sec"})
        rest = BinanceRest(cfg)
        try:
            post = await rest.request("POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "price": "1.0"}, signed=True)
            assert post.ok and seen["ok"] and seen["method"] == "POST" and seen["key"] == "k"
            assert seen["params"]["symbol"] == "BTCUSDT" and "timestamp" in seen["params"]
            delete = await rest.request("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT"}, signed=True)
            assert delete.ok and seen["ok"] and seen["method"] == "DELETE"
            assert rest.used_weight_1m == 7
        finally:
            await rest.close()
            await runner.cleanup()

    asyncio.run(run())


def _offline_connector():
    """A connector whose REST calls and bot messages go to the test (no network, no IPC)."""
    from hftbacktest.connector.binancefutures import BinanceFuturesConnector

    cfg = ConnectorConfig.from_mapping({**BASE, "api_key": "k", "secret": "s", "order_prefix": "t-"})
    con = BinanceFuturesConnector("unit", cfg)
    sent, answers, asked = [], {}, []
    con.send = lambda bot_id, msg: sent.append(msg)

    async def request(method, path, params=None, **kw):
        asked.append((method, path, (params or {}).get("origClientOrderId")))
        return answers[path](params or {})

    con.rest.request = request
    con.symbol_info["btcusdt"] = (0.1, 0.001)
    con._user_connected_once = True
    return con, sent, answers, asked


def test_reconciliation_after_the_exchange_lost_its_state():
    """After a gap the exchange still lists one order, filled another meanwhile and has never heard of a third
    (it restarted empty); the position it reports is flat with update time 0. The bot must end up with exactly
    that: no phantom order, the missed fill counted once, the flat position, the in-flight order left alone."""
    from hftbacktest.connector.rest import RestReply
    from hftbacktest.live.ipc import codec as c

    con, sent, answers, asked = _offline_connector()
    kept, filled, lost = (con.orders.submit(7, "btcusdt", order(i)) for i in (1, 2, 3))
    for rec in (kept, filled, lost):
        con.orders.on_rest_order(rec, {"status": "NEW", "origQty": "0.01", "executedQty": "0", "updateTime": 1000})
    filled.cum_qty, filled.cum_value = 0.004, 0.004 * 60000.0  # one partial fill came over the stream
    pending = con.orders.submit(7, "btcusdt", order(4))
    pending.inflight = 1  # its submit is still waiting for an answer: only that answer may decide
    con.positions["btcusdt"] = (0.5, 5_000 * 10**6)
    row = lambda rec, status, executed, avg: {
        "clientOrderId": rec.client_id, "status": status, "origQty": "0.01", "executedQty": executed,
        "avgPrice": avg, "price": "60000.0", "updateTime": 9000}
    answers["/fapi/v1/openOrders"] = lambda p: RestReply(200, [row(kept, "NEW", "0", "0")])
    answers["/fapi/v1/order"] = lambda p: {
        filled.client_id: RestReply(200, row(filled, "FILLED", "0.01", "60000.6")),
        lost.client_id: RestReply(400, None, -2013, "Order does not exist."),
    }[p["origClientOrderId"]]
    answers["/fapi/v2/positionRisk"] = lambda p: RestReply(
        200, [{"symbol": "BTCUSDT", "positionSide": "BOTH", "positionAmt": "0.000", "updateTime": 0}])

    async def run():
        con.request_reconcile("test")
        await con._reconciler

    asyncio.run(run())
    updates = {m.order.order_id: m.order for m in sent if isinstance(m, c.OrderUpdate)}
    assert set(updates) == {2, 3}  # the listed order did not change; the in-flight one was not touched
    assert (updates[2].status, updates[2].leaves_qty, updates[2].exec_qty) == (FILLED, 0.0, pytest.approx(0.006))
    assert updates[2].exec_price_tick == 600010  # the missed 0.006 at (0.01 x 60000.6 - 0.004 x 60000) / 0.006
    assert (updates[3].status, updates[3].req) == (EXPIRED, NONE)
    assert ("GET", "/fapi/v1/order", pending.client_id) not in asked
    assert con.orders.open_orders("btcusdt") == [kept, pending]
    positions = [m for m in sent if isinstance(m, c.Position)]
    assert [p.qty for p in positions] == [0.0]  # the flat REST position replaces the stream's older 0.5
    con.publish_position("btcusdt", 0.5, 4_000 * 10**6)  # a late stream update from before the question
    assert con.positions["btcusdt"][0] == 0.0


def test_rest_position_older_than_a_stream_update_is_ignored_and_outage_end_reconciles():
    from hftbacktest.connector.rest import RestReply
    from hftbacktest.live.ipc import codec as c

    con, sent, answers, asked = _offline_connector()
    future = (con.rest.now_ms() + 60_000) * 10**6
    con.positions["btcusdt"] = (0.5, future)  # the stream reported a change after the question was asked
    answers["/fapi/v1/openOrders"] = lambda p: RestReply(200, [])
    answers["/fapi/v2/positionRisk"] = lambda p: RestReply(
        200, [{"symbol": "BTCUSDT", "positionSide": "BOTH", "positionAmt": "0.000", "updateTime": 0}])

    async def run():
        con.rest.outage = True
        con.rest.on_recovered()  # what BinanceRest calls at the first answer after an outage
        await con._reconciler

    asyncio.run(run())
    assert ("GET", "/fapi/v1/openOrders", None) in asked
    assert not [m for m in sent if isinstance(m, c.Position)] and con.positions["btcusdt"] == (0.5, future)


def test_rest_calls_back_once_at_the_first_answer_after_an_outage():
    from aiohttp import web

    statuses = [503, 200, 200]

    async def handler(request: web.Request):
        return web.json_response({"serverTime": 1}, status=statuses.pop(0))

    async def run():
        app = web.Application()
        app.router.add_get("/fapi/v1/time", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        rest = BinanceRest(ConnectorConfig.from_mapping({**BASE, "api_url": f"http://127.0.0.1:{port}"}))
        calls = []
        rest.on_recovered = lambda: calls.append(1)
        try:
            assert (await rest.request("GET", "/fapi/v1/time")).status == 503 and rest.outage
            assert (await rest.request("GET", "/fapi/v1/time")).ok and not rest.outage and calls == [1]
            assert (await rest.request("GET", "/fapi/v1/time")).ok and calls == [1]
            await runner.cleanup()
            assert (await rest.request("GET", "/fapi/v1/time")).status == 0 and rest.outage  # nobody listens
        finally:
            await rest.close()
            await runner.cleanup()

    asyncio.run(run())


def test_a_live_order_of_ours_unknown_here_is_cancelled_by_reconciliation():
    """A submit given up as never placed (-2013) that lands after all: its user-stream NEW finds no record, so
    the connector reconciles and cancels it rather than leave an order nobody manages."""
    import orjson

    from hftbacktest.connector.rest import RestReply

    con, sent, answers, asked = _offline_connector()
    rec = con.orders.submit(7, "btcusdt", order(1))
    con.orders.expire_unknown(rec)
    answers["/fapi/v1/openOrders"] = lambda p: RestReply(200, [{"clientOrderId": rec.client_id, "status": "NEW"}])
    answers["/fapi/v1/order"] = lambda p: RestReply(200, {"status": "CANCELED"})
    answers["/fapi/v2/positionRisk"] = lambda p: RestReply(200, [])
    frame = {"e": "ORDER_TRADE_UPDATE", "T": 5, "o": {"c": rec.client_id, "X": "NEW", "x": "NEW", "s": "BTCUSDT"}}

    async def run():
        assert con._on_user(orjson.dumps(frame)) is False
        assert con._reconciler is not None
        await con._reconciler
        con._on_user(orjson.dumps({**frame, "o": {**frame["o"], "c": "someone-else"}}))  # not ours: left alone
        assert con._reconciler.done()

    asyncio.run(run())
    assert ("DELETE", "/fapi/v1/order", rec.client_id) in asked


def test_reconciliation_yields_to_a_request_sent_while_it_asked():
    """The bot cancels while reconciliation's query is on its way: the cancel's own answer decides, not the query."""
    from hftbacktest.connector.rest import RestReply
    from hftbacktest.live.ipc import codec as c

    con, sent, answers, asked = _offline_connector()
    rec = con.orders.submit(7, "btcusdt", order(1))
    con.orders.on_rest_order(rec, {"status": "NEW", "origQty": "0.01", "executedQty": "0", "updateTime": 1000})

    def query(params):
        rec.inflight += 1  # what _cancel does when the bot's request arrives meanwhile
        return RestReply(400, None, -2013, "Order does not exist.")

    answers["/fapi/v1/openOrders"] = lambda p: RestReply(200, [])
    answers["/fapi/v1/order"] = query
    answers["/fapi/v2/positionRisk"] = lambda p: RestReply(200, [])

    async def run():
        con.request_reconcile("test")
        await con._reconciler

    asyncio.run(run())
    assert not [m for m in sent if isinstance(m, c.OrderUpdate)] and con.orders.find_live("btcusdt", 1) is rec


def test_a_cancel_racing_a_fill_counts_the_fill_once():
    """The grid's everyday race under load: the bot cancels an order that has just filled; the cancel is refused
    (-2011), the connector asks for the order and hears FILLED before the user stream's TRADE_LITE and
    ORDER_TRADE_UPDATE of that fill are read. The bot gets the fill once (its num_trades and balance)."""
    import orjson

    from hftbacktest.connector.rest import RestReply
    from hftbacktest.live.ipc import codec as c

    con, sent, answers, asked = _offline_connector()
    rec = con.orders.submit(7, "btcusdt", order(1))
    con.orders.on_rest_order(rec, {"status": "NEW", "origQty": "0.01", "executedQty": "0", "updateTime": 1000})
    answers["/fapi/v1/order"] = lambda p: {
        "DELETE": RestReply(400, None, -2011, "Unknown order sent."),
        "GET": RestReply(200, {"clientOrderId": rec.client_id, "status": "FILLED", "origQty": "0.01",
                               "executedQty": "0.01", "avgPrice": "60000.0", "price": "60000.0",
                               "updateTime": 2000}),
    }[asked[-1][0]]
    asyncio.run(con._cancel(7, "btcusdt", order(1)._replace(req=CANCELED)))
    lite = {"e": "TRADE_LITE", "E": 2001, "T": 2000, "s": "BTCUSDT", "q": "0.01", "p": "60000.0", "m": True,
            "c": rec.client_id, "S": "BUY", "L": "60000.0", "l": "0.01", "t": 77, "i": 9}
    upd = {"e": "ORDER_TRADE_UPDATE", "E": 2002, "T": 2000,
           "o": {**ws(rec.client_id, "TRADE", "FILLED", 0.01, l=0.01, L="60000.0"), "t": 77}}
    assert not con._on_user(orjson.dumps(lite)) and not con._on_user(orjson.dumps(upd))
    fills = [m.order for m in sent if isinstance(m, c.OrderUpdate) and m.order.exec_qty > 0]
    assert [(f.exec_qty, f.exec_price_tick, f.status) for f in fills] == [(0.01, 600000, FILLED)]
    assert rec.client_id not in con.orders.by_client  # both channels ended it: forgotten



def test_the_registration_replay_carries_no_execution():
    """A bot that fell behind re-registers; the replay of a partly filled live order restates the order, it is not
    its last fill a second time (the bot counts every update with exec_qty > 0)."""
    import orjson

    from hftbacktest.live.ipc import codec as c

    con, sent, answers, asked = _offline_connector()
    rec = con.orders.submit(7, "btcusdt", order(1))
    con.orders.on_rest_order(rec, {"status": "NEW", "origQty": "0.01", "executedQty": "0", "updateTime": 1000})
    lite = {"e": "TRADE_LITE", "E": 2001, "T": 2000, "s": "BTCUSDT", "q": "0.01", "p": "60000.0", "m": True,
            "c": rec.client_id, "S": "BUY", "L": "60000.0", "l": "0.004", "t": 77, "i": 9}
    con._on_user(orjson.dumps(lite))
    assert [m.order.exec_qty for m in sent if isinstance(m, c.OrderUpdate)] == [0.004]
    sent.clear()
    con._register(7, c.RegisterInstrument("btcusdt", 0.1, 0.001))
    replay = [m.order for m in sent if isinstance(m, c.OrderUpdate)]
    assert [(o.order_id, o.status, o.leaves_qty, o.exec_qty) for o in replay] == [
        (1, PARTIALLY_FILLED, pytest.approx(0.006), 0.0)]


def test_reconciliation_recovers_a_fill_of_a_dead_order_the_stream_lost():
    """The cancel's reply says CANCELED with 0.004 executed, and the user stream dropped before delivering that
    fill. The order is dead, yet after the reconnect reconciliation still asks for it: the bot gets the fill once,
    and the stream's report of it, should it come after all, counts nothing."""
    from hftbacktest.connector.rest import RestReply
    from hftbacktest.live.ipc import codec as c

    con, sent, answers, asked = _offline_connector()
    rec = con.orders.submit(7, "btcusdt", order(1))
    con.orders.on_rest_order(rec, {"status": "NEW", "origQty": "0.01", "executedQty": "0", "updateTime": 1000})
    body = {"clientOrderId": rec.client_id, "status": "CANCELED", "origQty": "0.01", "executedQty": "0.004",
            "avgPrice": "60000.0", "price": "60000.0", "updateTime": 3000}
    con.orders.mark_request(rec, CANCELED, 99)
    assert con.orders.on_rest_order(rec, body, CANCELED).status == CANCELED  # the cancel's reply
    answers["/fapi/v1/openOrders"] = lambda p: RestReply(200, [])
    answers["/fapi/v1/order"] = lambda p: RestReply(200, body)
    answers["/fapi/v2/positionRisk"] = lambda p: RestReply(200, [])

    async def run():
        con.request_reconcile("user stream reconnected")
        await con._reconciler

    asyncio.run(run())
    fills = [m.order for m in sent if isinstance(m, c.OrderUpdate) and m.order.exec_qty > 0]
    assert [(f.exec_qty, f.exec_price_tick, f.status) for f in fills] == [(0.004, 600000, CANCELED)]
    late = {**ws(rec.client_id, "TRADE", "PARTIALLY_FILLED", 0.004, l=0.004, T=2500, L="60000.0"), "t": 5}
    assert con.orders.on_ws_update(late, 2500) is None
    assert con.orders.on_ws_update(ws(rec.client_id, "CANCELED", "CANCELED", 0.004, T=3000), 3000) is None
    assert rec.client_id not in con.orders.by_client and not con.orders.unforwarded("btcusdt")


def test_a_refused_modify_sends_its_error_before_the_answer():
    """IPC keeps the order of messages; the OrderError goes first, so a strategy whose wait returns on the answer
    has had the refusal through its error handler (else the error could arrive after the strategy ended)."""
    from hftbacktest.connector.rest import RestReply
    from hftbacktest.live.ipc import codec as c

    con, sent, answers, asked = _offline_connector()
    rec = con.orders.submit(7, "btcusdt", order(1))
    con.orders.on_rest_order(rec, {"status": "NEW", "origQty": "0.01", "executedQty": "0", "updateTime": 1000,
                                   "price": "60000.0"})
    answers["/fapi/v1/order"] = lambda p: RestReply(400, None, -5027, "No need to modify the order.")
    asyncio.run(con._modify(7, "btcusdt", order(1)._replace(req=REPLACED)))
    kinds = [type(m) for m in sent if isinstance(m, (c.Error, c.OrderUpdate))]
    assert kinds == [c.Error, c.OrderUpdate]
    assert sent[0].value["code"] == -5027 and sent[-1].order.req == NONE
    sent.clear()
    asyncio.run(con._modify(7, "btcusdt", order(99)._replace(req=REPLACED)))  # not an order of this connector
    assert [type(m) for m in sent] == [c.Error, c.OrderUpdate] and sent[0].value["code"] == -2013
