"""Binance protocol details that client libraries rely on, checked with an independent aiohttp client:
signing over the query string as sent, WebSocket routes, user-stream filters, TRADE_LITE, countdownCancelAll."""
from __future__ import annotations

import asyncio
import socket
import time
from urllib.parse import unquote, urlencode

import aiohttp
import pytest
import yarl
from test_emulator_client import EmuClient, recv_json, recv_until, sign

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_loopback_guard_refuses_other_hosts(loopback_only):
    with pytest.raises(ConnectionRefusedError, match="loopback guard"):
        socket.create_connection(("192.0.2.1", 9), timeout=1)  # TEST-NET-1: refused before any packet
    with pytest.raises(ConnectionRefusedError, match="loopback guard"):
        socket.getaddrinfo("fapi.binance.com", 443)  # no DNS query either
    assert len(loopback_only.refused) == 2
    loopback_only.refused.clear()  # expected refusals: do not fail the module


def test_signature_is_over_the_query_string_as_sent(client_emu, resting_bid):
    """`:` and `/` are legal in client order ids and are percent-encoded on the wire; the HMAC covers the
    encoded text (a signature over the decoded text is -1022, as on Binance)."""
    async def go():
        async with aiohttp.ClientSession() as s:
            def query(cid: str, decoded: bool) -> str:
                q = urlencode({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                               "quantity": "0.002", "price": f"{resting_bid(0.98):.1f}", "newClientOrderId": cid,
                               "timestamp": int(time.time() * 1000)})
                return q + "&signature=" + sign("s", unquote(q) if decoded else q)

            results = []
            for cid, decoded in (("enc:1/a", False), ("enc:2/a", True)):
                url = yarl.URL(f"{client_emu.rest_url}/fapi/v1/order?{query(cid, decoded)}", encoded=True)
                async with s.post(url, headers={"X-MBX-APIKEY": "k"}) as r:  # sent byte for byte
                    results.append((r.status, await r.json()))
            assert results[0][0] == 200 and results[0][1]["clientOrderId"] == "enc:1/a"
            assert results[1] == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
        async with EmuClient(client_emu, "k", "s") as c:
            await c.signed("DELETE", "/fapi/v1/allOpenOrders", symbol="BTCUSDT")

    asyncio.run(go())


def test_routed_websocket_endpoints(client_emu):
    """/public carries book data, /market everything else; a stream on the wrong route is accepted and stays
    silent (Binance's behaviour), and an unrouted connection gets the /public streams only."""
    async def go():
        async with EmuClient(client_emu) as c:
            public = await c.ws("/public/ws/btcusdt@depth@100ms/btcusdt@aggTrade")
            market = await c.ws("/market/stream?streams=btcusdt@aggTrade/btcusdt@depth@100ms/btcusdt@kline_1m/"
                                "btcusdt@ticker/btcusdt@miniTicker/btcusdt@markPrice@1s")
            legacy = await c.ws("/ws/btcusdt@bookTicker/btcusdt@markPrice@1s")
            await legacy.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 1})
            listed, _ = await recv_until(legacy, lambda m: m.get("id") == 1)
            assert set(listed["result"]) == {"btcusdt@bookTicker", "btcusdt@markPrice@1s"}  # accepted...
            _, seen = await recv_until(public, lambda m: m["e"] == "depthUpdate", limit=50)
            assert {m["e"] for m in seen} == {"depthUpdate"}
            kinds: set = set()
            while kinds != {"aggTrade", "kline", "24hrTicker", "24hrMiniTicker", "markPriceUpdate"}:
                m = await recv_json(market)
                assert m["stream"] != "btcusdt@depth@100ms", "book data on /market"
                kinds.add(m["data"]["e"])
            for _ in range(30):  # ...but the unrouted connection never carries the /market stream
                assert (await recv_json(legacy))["e"] == "bookTicker"
            # ccxt opens /public/ws/<n> with a plain number and SUBSCRIBEs afterwards
            numbered = await c.ws("/public/ws/0")
            await numbered.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 7})
            await recv_until(numbered, lambda m: m.get("e") == "bookTicker")
            for ws in (public, market, legacy, numbered):
                await ws.close()

    asyncio.run(go())


def test_private_route_listen_key_forms_event_filter_and_trade_lite(client_emu):
    async def go():
        async with EmuClient(client_emu, "k", "s") as c:
            key = await c.listen_key()
            filtered = await c.ws(f"/private/ws?listenKey={key}&events=ORDER_TRADE_UPDATE")
            full = await c.ws("/private/stream")
            await full.send_json({"method": "SUBSCRIBE", "params": [key], "id": 1})
            await recv_until(full, lambda m: m.get("id") == 1)
            market_on_private = await c.ws("/private/ws/btcusdt@bookTicker")
            status, body, _ = await c.order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.002",
                                            newClientOrderId="lite-1")
            assert status == 200, body
            _, events = await recv_until(full, lambda m: m["data"]["e"] == "ACCOUNT_UPDATE")
            assert all(m["stream"] == key for m in events)
            kinds = [(m["data"]["e"], m["data"].get("o", {}).get("x")) for m in events]
            assert kinds == [("ORDER_TRADE_UPDATE", "NEW"), ("TRADE_LITE", None), ("ORDER_TRADE_UPDATE", "TRADE"),
                             ("ACCOUNT_UPDATE", None)]
            lite, trade = events[1]["data"], events[2]["data"]["o"]
            for f in ("c", "S", "l", "L", "t", "i", "m", "q", "p"):
                assert lite[f] == trade[f], f
            assert lite["s"] == "BTCUSDT" and lite["T"] == events[2]["data"]["T"]
            # the filtered connection got the two order updates and nothing else before this reply
            await filtered.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
            _, got = await recv_until(filtered, lambda m: m.get("id") == 2)
            assert [(m.get("e"), m.get("o", {}).get("x")) for m in got[:-1]] == [
                ("ORDER_TRADE_UPDATE", "NEW"), ("ORDER_TRADE_UPDATE", "TRADE")]
            await market_on_private.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 3})
            reply = await recv_json(market_on_private)
            assert reply == {"result": ["btcusdt@bookTicker"], "id": 3}  # accepted, never fed on /private
            await c.order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.002", reduceOnly="true")
            status, body, _ = await c.signed("POST", "/fapi/v1/leverage", symbol="BTCUSDT", leverage=7)
            assert status == 200 and body["leverage"] == 7
            m, _ = await recv_until(full, lambda m: m["data"]["e"] == "ACCOUNT_CONFIG_UPDATE")
            assert m["data"]["ac"] == {"s": "BTCUSDT", "l": 7} and m["data"]["T"] >= m["data"]["E"] - 1000
            for ws in (filtered, full, market_on_private):
                await ws.close()

    asyncio.run(go())


def test_countdown_cancel_all(client_emu, resting_bid):
    async def go():
        async with EmuClient(client_emu, "k", "s") as c:
            uws = await c.ws("/private/ws/" + await c.listen_key())
            status, order, _ = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                             quantity="0.002", price=f"{resting_bid(0.98):.1f}")
            assert status == 200
            t0 = time.monotonic()
            status, body, _ = await c.signed("POST", "/fapi/v1/countdownCancelAll", symbol="BTCUSDT",
                                             countdownTime=1000)
            assert (status, body) == (200, {"symbol": "BTCUSDT", "countdownTime": "1000"})
            m, _ = await recv_until(uws, lambda m: m.get("e") == "ORDER_TRADE_UPDATE" and m["o"]["x"] == "CANCELED")
            assert m["o"]["i"] == order["orderId"] and time.monotonic() - t0 >= 0.95  # not before the countdown
            _, body, _ = await c.signed("POST", "/fapi/v1/countdownCancelAll", symbol="BTCUSDT", countdownTime=500)
            assert body["code"] == -1130
            await uws.close()

    asyncio.run(go())


def test_ws_api_signing_errors_and_user_stream(client_emu, resting_bid):
    """ws-fapi requests are signed over their sorted, url-encoded params; errors carry Binance's codes; an order
    placed over the WS API pushes the same user-stream events as one placed over REST."""
    from urllib.parse import urlencode as encode

    def signed(rid, method, secret="s", **params):
        params = {**params, "apiKey": "k", "timestamp": int(time.time() * 1000)}
        params["signature"] = sign(secret, encode(sorted(params.items())))
        return {"id": rid, "method": method, "params": params}

    async def go():
        async with EmuClient(client_emu, "k", "s") as c:
            uws = await c.ws("/private/ws/" + await c.listen_key())
            api = await c.ws("/ws-fapi/v1")
            px = f"{resting_bid(0.98):.1f}"
            await api.send_json(signed("a", "order.place", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                       timeInForce="GTC", quantity="0.002", price=px, newClientOrderId="wsapi:2"))
            reply = await recv_json(api)
            assert reply["id"] == "a" and reply["status"] == 200 and reply["result"]["clientOrderId"] == "wsapi:2"
            assert {r["rateLimitType"] for r in reply["rateLimits"]} == {"REQUEST_WEIGHT", "ORDERS"}
            m, _ = await recv_until(uws, lambda m: m.get("e") == "ORDER_TRADE_UPDATE")
            assert m["o"]["c"] == "wsapi:2" and m["o"]["x"] == "NEW"
            await api.send_json(signed("b", "order.cancel", secret="wrong", symbol="BTCUSDT",
                                       origClientOrderId="wsapi:2"))
            assert await recv_json(api) == {"id": "b", "status": 400, "error": {
                "code": -1022, "msg": "Signature for this request is not valid."}, "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": client_emu.config.weight_limit, "count": client_emu._weight[1]}]}
            await api.send_json(signed("c", "order.cancel", symbol="BTCUSDT", origClientOrderId="wsapi:2"))
            assert (await recv_json(api))["result"]["status"] == "CANCELED"
            await api.send_json(signed("d", "order.cancel", symbol="BTCUSDT", origClientOrderId="wsapi:2"))
            assert (await recv_json(api))["error"]["code"] == -2011
            await api.send_json({"id": "e", "method": "order.teleport", "params": {}})
            assert (await recv_json(api))["status"] == 400
            for ws in (api, uws):
                await ws.close()

    asyncio.run(go())
