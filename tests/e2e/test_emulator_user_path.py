"""A new user's path against the emulator on the real BTCUSDT/ETHUSDT sample feeds, over real sockets."""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from test_emulator_client import EmuClient, recv_json, recv_until

from hftbacktest.emulator import Emulator, EmulatorConfig

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def emu(sample_data_dir):
    feeds = [sample_data_dir / "btcusdt_20240808.gz", sample_data_dir / "ethusdt_20240808.gz"]
    with Emulator.start(feeds=feeds, speed=20.0, config=EmulatorConfig(ping_interval=0.3, pong_timeout=1.0)) as emu:
        emu.add_account("alice", "alice-secret", balance=50_000)
        emu.add_account("bob", "bob-secret", balance=1_000, maker_fee=-0.00005, taker_fee=0.0007)
        yield emu


def _apply(book: dict, levels) -> None:
    for px, qty in levels:
        if float(qty) == 0:
            book.pop(float(px), None)
        else:
            book[float(px)] = float(qty)


def test_new_user_path(emu):
    """Snapshot + gap-free diff chain, GTX order NEW then FILL on the user stream, typical rejections."""
    async def run():
        async with EmuClient(emu, "alice", "alice-secret") as c:
            ws = await c.ws("/stream?streams=btcusdt@depth@0ms/btcusdt@trade/btcusdt@bookTicker")
            first, buffered = await recv_until(ws, lambda m: m["stream"] == "btcusdt@depth@0ms")
            status, snap, _ = await c.public("GET", "/fapi/v1/depth", symbol="BTCUSDT", limit=1000)
            assert status == 200 and snap["E"] >= snap["T"]
            last_id = snap["lastUpdateId"]
            bids, asks = {}, {}
            _apply(bids, snap["bids"])
            _apply(asks, snap["asks"])
            # Binance's procedure: drop u < lastUpdateId, first applied event has U <= lastUpdateId <= u, then pu chain
            diffs = [m["data"] for m in buffered if m["stream"].endswith("@depth@0ms")]
            last_u = None
            checked_bbo = trades = 0
            while checked_bbo < 20 or trades < 3:
                if not diffs:
                    msg = await recv_json(ws)
                    data = msg["data"]
                    if msg["stream"].endswith("@trade"):
                        trades += 1
                        assert data["X"] == "MARKET" and isinstance(data["m"], bool) and data["E"] >= data["T"]
                        continue
                    if msg["stream"].endswith("@bookTicker"):
                        if last_u is not None and data["u"] == last_u and bids and asks:
                            assert float(data["b"]) == max(bids) and float(data["a"]) == min(asks)
                            assert float(data["B"]) == bids[max(bids)] and float(data["A"]) == asks[min(asks)]
                            checked_bbo += 1
                        continue
                    diffs.append(data)
                d = diffs.pop(0)
                if d["u"] < last_id:
                    continue
                if last_u is None:
                    assert d["U"] <= last_id <= d["u"], (d["U"], last_id, d["u"])
                else:
                    assert d["pu"] == last_u, f"gap: pu={d['pu']} last u={last_u}"
                assert d["E"] >= d["T"]
                _apply(bids, d["b"])
                _apply(asks, d["a"])
                assert max(bids) < min(asks), "crossed book rebuilt from the stream"
                last_u = d["u"]
            await ws.close()

            key = await c.listen_key()
            uws = await c.ws("/ws/" + key)

            async def post_at_touch(side: str, cid: str):
                # the replay runs at 20x: the touch can move between the snapshot and the order, retry on -5022
                for _ in range(20):
                    _, book, _ = await c.public("GET", "/fapi/v1/depth", symbol="BTCUSDT", limit=5)
                    price = book["bids" if side == "BUY" else "asks"][0][0]
                    status, body, headers = await c.order(symbol="BTCUSDT", side=side, type="LIMIT",
                                                          timeInForce="GTX", quantity="0.005", price=price,
                                                          newClientOrderId=cid)
                    if status == 200:
                        return price, body, headers
                    assert body["code"] == -5022, body
                raise AssertionError("could not rest a GTX order at the touch")

            before = emu.state()["accounts"]["alice"]["positions"].get("BTCUSDT", {}).get("qty", 0.0)
            bid, buy, h = await post_at_touch("BUY", "path-buy")
            ask, sell, _ = await post_at_touch("SELL", "path-sell")
            assert buy["status"] == sell["status"] == "NEW", (buy, sell)
            assert int(h["X-MBX-ORDER-COUNT-10S"]) >= 1 and int(h["X-MBX-USED-WEIGHT-1M"]) >= 1
            # read until both NEW updates and a fill arrived (at 20x the buy can fill before the sell is placed,
            # and the sell can fill too before we look: keep every event, in order, to pair the first fill with
            # the ACCOUNT_UPDATE that follows it rather than with whichever one comes next)
            news, fill, events = set(), None, []
            while fill is None or len(news) < 2:
                m, seen = await recv_until(uws, lambda m: m.get("e") == "ORDER_TRADE_UPDATE", timeout=40)
                events += seen
                if m["o"]["x"] == "NEW":
                    news.add(m["o"]["c"])
                elif m["o"]["x"] == "TRADE" and fill is None:
                    fill = m
            after_fill = events[events.index(fill) + 1:]
            acct = next((m for m in after_fill if m.get("e") == "ACCOUNT_UPDATE"), None)
            if acct is None:
                acct, _ = await recv_until(uws, lambda m: m.get("e") == "ACCOUNT_UPDATE", timeout=5)
            assert news == {"path-buy", "path-sell"}
            o = fill["o"]
            assert o["m"] is True and o["c"] in news and float(o["l"]) > 0 and o["L"] in (bid, ask)
            assert o["N"] == "USDT" and float(o["n"]) == pytest.approx(float(o["l"]) * float(o["L"]) * 0.0002)
            for field in ("c", "i", "X", "x", "l", "z", "L", "ap", "n", "N", "T", "m", "R", "ps", "ot"):
                assert field in o
            # the update of that fill: the position moved by exactly the fill, signed by its side
            signed_fill = float(o["l"]) if o["S"] == "BUY" else -float(o["l"])
            assert acct["a"]["P"][0]["ps"] == "BOTH"
            assert round(float(acct["a"]["P"][0]["pa"]) - before, 3) == round(signed_fill, 3)

            # rejections
            _, book, _ = await c.public("GET", "/fapi/v1/depth", symbol="BTCUSDT", limit=5)
            status, body, _ = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTX",
                                            quantity="0.005", price=book["asks"][0][0])
            assert (status, body["code"]) == (400, -5022)
            status, body, _ = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                            quantity="0.005", price=bid, secret="wrong-secret")
            assert (status, body["code"]) == (400, -1022)
            status, body, _ = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                            quantity="0.005", price=bid, timestamp=int(time.time() * 1000) - 60_000)
            assert (status, body["code"]) == (400, -1021)
            status, body, _ = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                            quantity="0.005", price=bid, timestamp=int(time.time() * 1000) + 5_000)
            assert (status, body["code"]) == (400, -1021)
            status, body, _ = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                            quantity="0.005", price=bid, api_key="nobody")
            assert (status, body["code"]) == (401, -2015)
            await uws.close()
        ledger = emu.ledger("alice")
        placed = [e for e in ledger if e["event"] == "NEW"]
        assert {e["clientOrderId"] for e in placed} >= {"path-buy", "path-sell"}
        assert any(e["event"] == "REJECTED" and e["code"] == -5022 for e in ledger)

    asyncio.run(run())


def test_rest_order_lifecycle_and_account_views(emu):
    async def run():
        async with EmuClient(emu, "bob", "bob-secret") as c:
            key = await c.listen_key()
            assert key == await c.listen_key(), "the same key while valid"
            uws = await c.ws("/ws/" + key)
            _, info, _ = await c.public("GET", "/fapi/v1/exchangeInfo")
            eth = next(s for s in info["symbols"] if s["symbol"] == "ETHUSDT")
            filters = {f["filterType"]: f for f in eth["filters"]}
            assert {"PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "MIN_NOTIONAL", "PERCENT_PRICE",
                    "MAX_NUM_ORDERS"} <= set(filters)
            assert filters["PRICE_FILTER"]["tickSize"] == "0.01" and filters["LOT_SIZE"]["stepSize"] == "0.001"
            _, book, _ = await c.public("GET", "/fapi/v1/depth", symbol="ETHUSDT", limit=5)
            bid = float(book["bids"][0][0])
            far = f"{bid - 20:.2f}"
            status, o, _ = await c.order(symbol="ETHUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                         quantity="0.010", price=far, newClientOrderId="bob-1",
                                         newOrderRespType="RESULT")
            assert status == 200 and o["origQty"] == "0.010" and o["price"] == far
            status, body, _ = await c.order(symbol="ETHUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                            quantity="0.010", price=far, newClientOrderId="bob-1")
            assert body["code"] == -4116
            for bad, code in (({"price": f"{bid - 20:.3f}1"}, -1111), ({"symbol": "BTCUSDT", "price": "50000.05"}, -4014),
                              ({"quantity": "0.0105"}, -1111), ({"quantity": "0.001"}, -4164),
                              ({"side": "UP"}, -1117), ({"type": "STOP"}, -4120), ({"type": "OCO"}, -1116),
                              ({"priceMatch": "QUEUE"}, -1000), ({"symbol": "XRPUSDT"}, -1121),
                              ({"quantity": None}, -1102), ({"newClientOrderId": "bad id!"}, -4015),
                              ({"reduceOnly": "true"}, -2022), ({"quantity": "100.000"}, -2019)):
                params = dict(symbol="ETHUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010",
                              price=far)
                params.update(bad)
                status, body, _ = await c.order(**params)
                assert status == 400 and body["code"] == code, (bad, body)
            status, body, _ = await c.order(symbol="ETHUSDT", side="BUY", type="MARKET", quantity="0.010", price=far)
            assert body["code"] == -1106
            status, body, _ = await c.signed("PUT", "/fapi/v1/order", symbol="ETHUSDT", origClientOrderId="bob-1",
                                             side="BUY", quantity="0.020", price=f"{bid - 21:.2f}")
            assert status == 200 and body["origQty"] == "0.020" and body["price"] == f"{bid - 21:.2f}"
            status, q, _ = await c.signed("GET", "/fapi/v1/order", symbol="ETHUSDT", orderId=o["orderId"])
            assert q["status"] == "NEW" and q["origQty"] == "0.020" and "time" in q
            status, batch, _ = await c.signed(
                "POST", "/fapi/v1/batchOrders",
                batchOrders='[{"symbol":"ETHUSDT","side":"BUY","type":"LIMIT","timeInForce":"GTC","quantity":"0.010",'
                            f'"price":"{bid - 22:.2f}","newClientOrderId":"bob-2"}},'
                            '{"symbol":"ETHUSDT","side":"SIDEWAYS","type":"LIMIT","timeInForce":"GTC",'
                            f'"quantity":"0.010","price":"{bid - 22:.2f}"}}]')
            assert status == 200 and batch[0]["clientOrderId"] == "bob-2" and batch[1]["code"] == -1117
            status, open_orders, _ = await c.signed("GET", "/fapi/v1/openOrders", symbol="ETHUSDT")
            assert {x["clientOrderId"] for x in open_orders} == {"bob-1", "bob-2"}
            status, cancelled, _ = await c.signed("DELETE", "/fapi/v1/order", symbol="ETHUSDT",
                                                  origClientOrderId="bob-2")
            assert cancelled["status"] == "CANCELED"
            status, body, _ = await c.signed("DELETE", "/fapi/v1/order", symbol="ETHUSDT", origClientOrderId="bob-2")
            assert body["code"] == -2011
            status, body, _ = await c.signed("GET", "/fapi/v1/order", symbol="ETHUSDT", origClientOrderId="nope")
            assert body["code"] == -2013
            status, body, _ = await c.signed("DELETE", "/fapi/v1/allOpenOrders", symbol="ETHUSDT")
            assert body == {"code": 200, "msg": "The operation of cancel all open order is done."}
            status, body, _ = await c.signed("GET", "/fapi/v1/openOrders", symbol="ETHUSDT")
            assert body == []
            # taker buy then reduce-only sell: position, realised PnL and fees on both channels
            status, mkt, _ = await c.order(symbol="ETHUSDT", side="BUY", type="MARKET", quantity="0.050",
                                           newOrderRespType="RESULT")
            assert mkt["status"] == "FILLED" and float(mkt["avgPrice"]) > 0
            status, rows, _ = await c.signed("GET", "/fapi/v2/positionRisk", symbol="ETHUSDT")
            assert rows[0]["positionAmt"] == "0.050" and rows[0]["positionSide"] == "BOTH"
            status, close, _ = await c.order(symbol="ETHUSDT", side="SELL", type="MARKET", quantity="0.050",
                                             reduceOnly="true", newOrderRespType="RESULT")
            assert close["status"] == "FILLED"
            status, acct, _ = await c.signed("GET", "/fapi/v2/account")
            status, bal, _ = await c.signed("GET", "/fapi/v2/balance")
            fees = 0.0007 * 0.05 * (float(mkt["avgPrice"]) + float(close["avgPrice"]))
            pnl = 0.05 * (float(close["avgPrice"]) - float(mkt["avgPrice"]))
            assert float(acct["totalWalletBalance"]) == pytest.approx(1000 + pnl - fees, abs=1e-6)
            assert float(bal[0]["balance"]) == pytest.approx(1000 + pnl - fees, abs=1e-6)
            status, lev, _ = await c.signed("POST", "/fapi/v1/leverage", symbol="ETHUSDT", leverage=5)
            assert lev["leverage"] == 5
            status, dual, _ = await c.signed("GET", "/fapi/v1/positionSide/dual")
            assert dual == {"dualSidePosition": False}
            _, events = await recv_until(uws, lambda m: m.get("e") == "ACCOUNT_UPDATE"
                                         and m["a"]["P"][0]["pa"] == "0.000")
            kinds = [(m["o"]["c"], m["o"]["x"]) for m in events if m.get("e") == "ORDER_TRADE_UPDATE"]
            assert ("bob-1", "NEW") in kinds and ("bob-1", "AMENDMENT") in kinds and ("bob-1", "CANCELED") in kinds
            assert ("bob-2", "CANCELED") in kinds
            times = [m["o"]["T"] for m in events if m.get("e") == "ORDER_TRADE_UPDATE"]
            assert times == sorted(times)
            m, _ = await recv_until(uws, lambda m: m.get("e") == "ACCOUNT_CONFIG_UPDATE")  # the leverage change
            assert m["ac"] == {"s": "ETHUSDT", "l": 5}
            status, body, _ = await c.signed("PUT", "/fapi/v1/listenKey")
            assert status == 200
            status, body, _ = await c.signed("DELETE", "/fapi/v1/listenKey")
            closing = await asyncio.wait_for(uws.receive(), 5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        ledger = emu.ledger("bob")
        new_ids = [e["orderId"] for e in ledger if e["event"] == "NEW"]
        assert len(new_ids) == len(set(new_ids)) == 4  # bob-1, bob-2, two market orders: none lost, none duplicated
        terminal = {e["orderId"] for e in ledger if e["event"] in ("CANCELED", "FILLED", "EXPIRED")
                    or (e["event"] == "TRADE" and e["status"] == "FILLED")}
        assert terminal == set(new_ids)

    asyncio.run(run())


def test_ws_subscribe_coalesced_depth_and_other_streams(emu):
    async def run():
        async with EmuClient(emu) as c:
            ws = await c.ws("/ws")
            await ws.send_json({"method": "SUBSCRIBE", "params": ["ethusdt@depth@100ms", "ethusdt@aggTrade",
                                                                  "ethusdt@markPrice@1s", "btcusdt@depth5@100ms"],
                                "id": 1})
            reply, _ = await recv_until(ws, lambda m: m.get("id") == 1)
            assert reply == {"result": None, "id": 1}
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": "x"})
            listed, _ = await recv_until(ws, lambda m: m.get("id") == "x")
            assert set(listed["result"]) == {"ethusdt@depth@100ms", "ethusdt@aggTrade", "ethusdt@markPrice@1s",
                                             "btcusdt@depth5@100ms"}
            # aggTrade and markPrice belong to Binance's /market route: an unrouted connection never gets them
            last_u, kinds, depth_times = None, set(), []
            while len(depth_times) < 8 or kinds != {"depthUpdate", "partial"}:
                m = await recv_json(ws)
                if m["e"] == "depthUpdate" and m["s"] == "BTCUSDT":
                    assert len(m["b"]) <= 5 and len(m["a"]) <= 5
                    kinds.add("partial")
                    continue
                kinds.add(m["e"])
                assert m["e"] == "depthUpdate", m
                if m["e"] == "depthUpdate":
                    if last_u is not None:
                        assert m["pu"] == last_u
                    last_u = m["u"]
                    depth_times.append(time.monotonic())
            gaps = [b - a for a, b in zip(depth_times, depth_times[1:])]
            assert min(gaps) > 0.05, "100 ms stream is coalesced"
            await ws.send_json({"method": "UNSUBSCRIBE", "params": ["ethusdt@aggTrade"], "id": 2})
            await recv_until(ws, lambda m: m.get("id") == 2)
            await ws.send_json({"method": "SUBSCRIBE", "params": "nope", "id": 3})
            err, _ = await recv_until(ws, lambda m: m.get("id") == 3)
            assert err["error"]["code"] == 2
            await ws.close()

    asyncio.run(run())


def test_server_pings_and_pong_timeout(emu):
    async def run():
        async with EmuClient(emu) as c:
            ws = await c.ws("/market/ws/btcusdt@markPrice@1s", autoping=False)
            # first a ping frame arrives; we never answer, so the server closes the connection
            kinds = []
            while True:
                msg = await asyncio.wait_for(ws.receive(), 10)
                kinds.append(msg.type)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
            assert aiohttp.WSMsgType.PING in kinds
            ok = await c.ws("/market/ws/btcusdt@markPrice@1s")  # autoping answers: stays open past the timeout
            received = 0
            while received < 3:
                await recv_json(ok)
                received += 1
            assert not ok.closed
            await ok.close()

    asyncio.run(run())


def test_rate_limits_429_then_418(sample_data_dir):
    config = EmulatorConfig(weight_limit=10, ban_after=2, ban_s=30, order_limit_10s=3)
    with Emulator.start(sample_data_dir / "btcusdt_20240808.gz", speed=1.0, config=config) as emu:
        emu.add_account("k", "s")

        async def run():
            async with EmuClient(emu, "k", "s") as c:
                statuses = []
                for _ in range(12):
                    status, body, headers = await c.public("GET", "/fapi/v1/time")
                    statuses.append(status)
                    if status == 429:
                        assert body["code"] == -1003 and int(headers["Retry-After"]) >= 1
                        break
                    assert int(headers["X-MBX-USED-WEIGHT-1M"]) == len(statuses)
                assert statuses[-1] == 429 and statuses.count(200) == 10
                status, _, _ = await c.public("GET", "/fapi/v1/time")
                assert status == 429  # still limited, first strike
                status, body, headers = await c.public("GET", "/fapi/v1/time")
                assert status == 418 and body["code"] == -1003 and int(headers["Retry-After"]) > 20

        asyncio.run(run())

    with Emulator.start(sample_data_dir / "btcusdt_20240808.gz", speed=1.0,
                        config=EmulatorConfig(order_limit_10s=3)) as emu:
        emu.add_account("k", "s")

        async def orders():
            async with EmuClient(emu, "k", "s") as c:
                codes = []
                for i in range(4):
                    status, body, headers = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT",
                                                          timeInForce="GTC", quantity="0.002", price="50000.0")
                    codes.append((status, body.get("code"), headers.get("X-MBX-ORDER-COUNT-10S")))
                assert codes[-1] == (429, -1015, "4") and codes[0][2] == "1"

        asyncio.run(orders())


def test_signature_over_query_plus_body_split_forms(emu):
    """Binance signs `query string + request body`; the signature may sit in either part."""
    from test_emulator_client import sign

    async def run():
        async with aiohttp.ClientSession() as s:
            headers = {"X-MBX-APIKEY": "alice"}
            ts = int(time.time() * 1000)
            # Binance docs' "mixed" example: order fields in the query, the rest and the signature in the body
            query = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
            body = f"quantity=0.002&price=50000.0&newClientOrderId=split-1&recvWindow=5000&timestamp={ts}"
            async with s.post(f"{emu.rest_url}/fapi/v1/order?{query}", headers={
                    **headers, "Content-Type": "application/x-www-form-urlencoded"},
                    data=body + "&signature=" + sign("alice-secret", query + body)) as r:
                assert r.status == 200, await r.text()
            # the reference connector's form: recvWindow/timestamp/signature in the URL, order fields in the body
            query = f"recvWindow=5000&timestamp={ts}"
            body = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.002&price=50000.0&newClientOrderId=split-2"
            async with s.post(f"{emu.rest_url}/fapi/v1/order?{query}&signature={sign('alice-secret', query + body)}",
                              headers=headers, data=body.encode()) as r:
                assert r.status == 200, await r.text()
            body = body.replace("split-2", "split-3")
            async with s.post(f"{emu.rest_url}/fapi/v1/order?{query}&signature={sign('alice-secret', body + query)}",
                              headers=headers, data=body.encode()) as r:
                assert (await r.json())["code"] == -1022  # order matters: query first
        assert {"split-1", "split-2"} <= {o["clientOrderId"] for o in emu.orders("alice")}

    asyncio.run(run())


def test_accounts_are_isolated(emu):
    async def run():
        async with EmuClient(emu, "alice", "alice-secret") as alice, EmuClient(emu, "bob", "bob-secret") as bob:
            bob_stream = await bob.ws("/ws/" + await bob.listen_key())
            status, mine, _ = await alice.order(symbol="ETHUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                                quantity="0.010", price="2000.00", newClientOrderId="alice-only")
            assert status == 200
            _, theirs, _ = await bob.signed("GET", "/fapi/v1/openOrders", symbol="ETHUSDT")
            assert "alice-only" not in {o["clientOrderId"] for o in theirs}
            _, body, _ = await bob.signed("DELETE", "/fapi/v1/order", symbol="ETHUSDT", orderId=mine["orderId"])
            assert body["code"] == -2011  # another account's order is unknown
            await alice.signed("DELETE", "/fapi/v1/order", symbol="ETHUSDT", orderId=mine["orderId"])
            with pytest.raises(asyncio.TimeoutError):
                while True:  # bob's user stream never carries alice's order
                    m = await recv_json(bob_stream, timeout=0.5)
                    assert m.get("o", {}).get("c") != "alice-only"
            await bob_stream.close()

    asyncio.run(run())


def test_feed_loop_keeps_the_chain():
    """A short synthetic feed loops several times; the diff chain and the book stay consistent across seams."""
    with Emulator.start("synthetic:BTCUSDT:0.05", speed=2.0) as emu:
        async def run():
            async with EmuClient(emu) as c:
                ws = await c.ws("/ws/btcusdt@depth@0ms")
                last = (await recv_json(ws))["u"]
                while emu.state()["books"]["BTCUSDT"]["feed_loops"] < 2:
                    m = await recv_json(ws)
                    assert m["pu"] == last
                    last = m["u"]
                await ws.close()

        asyncio.run(run())
