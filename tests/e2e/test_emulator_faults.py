"""Every fault kind of the emulator, exercised over real sockets with an independent client."""
from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from test_emulator_client import EmuClient, recv_json, recv_until

from hftbacktest.emulator import FAULT_KINDS, Emulator, EmulatorConfig

pytestmark = pytest.mark.e2e
DEPTH_CHAIN_KINDS = ["ws_reorder", "ws_duplicate", "depth_gap"]
ADMIN_TOKEN = "admin-token-of-the-fault-tests"


@pytest.fixture(scope="module")
def emu(sample_data_dir):
    config = EmulatorConfig(seed=7, admin_token=ADMIN_TOKEN)
    with Emulator.start(sample_data_dir / "btcusdt_20240808.gz", speed=20.0, config=config) as emu:
        emu.add_account("k", "s", balance=100_000)
        yield emu


@pytest.fixture(autouse=True)
def clean_faults(request):
    yield
    if "emu" in request.fixturenames:
        request.getfixturevalue("emu").clear_faults()


def fired(emu, kind: str) -> bool:
    return any(e["kind"] == kind and e["what"] == "fired" for e in emu.fault_log())


def run(coro):
    return asyncio.run(coro)


async def _resting_price(c: EmuClient, side: str) -> str:
    _, book, _ = await c.public("GET", "/fapi/v1/depth", symbol="BTCUSDT", limit=5)
    best = float(book["bids"][0][0] if side == "BUY" else book["asks"][0][0])
    return f"{best - 300 if side == 'BUY' else best + 300:.1f}"


def test_ws_drop_and_refused_reconnect(emu):
    async def go():
        async with EmuClient(emu) as c:
            # a once-a-second stream, so that no backlog a loaded machine queued before the fault blurs the count
            ws = await c.ws("/market/ws/btcusdt@markPrice@1s")
            await recv_json(ws)
            emu.inject("ws_drop", channel="market", after=3, refuse_s=1.0)
            received = 0
            while True:
                msg = await asyncio.wait_for(ws.receive(), 10)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                received += 1
            assert 3 <= received <= 5 and ws.closed  # the 3 after arming, + at most those already in flight
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await c.ws("/ws/btcusdt@depth@0ms")
            assert refused.value.status == 503
            deadline = time.monotonic() + 5
            while True:  # reconnects are accepted again once refuse_s has passed
                try:
                    ws = await c.ws("/ws/btcusdt@depth@0ms")
                    break
                except aiohttp.WSServerHandshakeError:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            await recv_json(ws)
            await ws.close()
    run(go())
    assert fired(emu, "ws_drop")


def test_ws_half_open_keeps_tcp_but_goes_silent(emu):
    async def go():
        async with EmuClient(emu) as c:
            ws = await c.ws("/ws/btcusdt@bookTicker", autoping=False)
            await recv_json(ws)
            emu.inject("ws_half_open", channel="market")
            with pytest.raises(asyncio.TimeoutError):
                while True:  # drain what was in flight, then nothing more arrives
                    await asyncio.wait_for(ws.receive(), 1.0)
            await ws.ping(b"hello")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.receive(), 1.0)  # no pong either
            assert not ws.closed
            await ws.close()
    run(go())
    assert fired(emu, "ws_half_open")


def test_ws_delay(emu):
    async def go():
        async with EmuClient(emu) as c:
            ws = await c.ws("/ws/btcusdt@trade")
            emu.inject("ws_delay", ms=400, channel="market")
            lags = []
            while len(lags) < 100_000 and (len(lags) < 3 or min(lags[-3:]) < 350):  # skip what was in flight
                m = await recv_json(ws)
                lags.append(time.time() * 1000 - m["E"])
            assert min(lags[-3:]) >= 350, lags
            await ws.close()
    run(go())
    assert fired(emu, "ws_delay")


@pytest.mark.parametrize("kind", DEPTH_CHAIN_KINDS)
def test_depth_chain_faults(emu, kind):
    async def go():
        async with EmuClient(emu) as c:
            ws = await c.ws("/ws/btcusdt@depth@0ms")
            last = (await recv_json(ws))["u"]
            emu.inject(kind, **({"count": 1} if kind != "depth_gap" else {}))
            broken = None
            for _ in range(100_000):
                m = await recv_json(ws)
                if m["pu"] != last:
                    broken = (m, last)
                    break
                last = m["u"]
            assert broken is not None, "the chain should break"
            m, last = broken
            if kind == "ws_duplicate":
                assert m["u"] == last  # the same event again
            elif kind == "ws_reorder":
                assert m["U"] > last + 1  # the next event came first...
                second = await recv_json(ws)
                assert second["u"] < m["u"] and second["pu"] == last  # ...then the one held back
            else:
                assert m["pu"] > last  # ids were skipped
            await ws.close()
    run(go())
    assert fired(emu, kind)


def test_ws_malformed_and_unknown_event(emu):
    async def go():
        async with EmuClient(emu) as c:
            ws = await c.ws("/ws/btcusdt@bookTicker")
            await recv_json(ws)
            emu.inject("ws_malformed")
            emu.inject("ws_unknown_event")
            bad = unknown = 0
            for _ in range(100_000):  # at 20x the socket may hold thousands of messages sent before the fault
                msg = await asyncio.wait_for(ws.receive(), 10)
                try:
                    data = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    bad += 1
                    continue
                unknown += data.get("e") == "emuUnknownEvent"
                if bad and unknown:
                    break
            assert bad == 1 and unknown == 1
            await ws.close()
    run(go())
    assert fired(emu, "ws_malformed") and fired(emu, "ws_unknown_event")


def test_stale_snapshot(emu):
    async def go():
        async with EmuClient(emu) as c:
            ws = await c.ws("/ws/btcusdt@depth@0ms")
            first = await recv_json(ws)
            emu.inject("stale_snapshot", lag=10_000)
            _, stale, _ = await c.public("GET", "/fapi/v1/depth", symbol="BTCUSDT", limit=100)
            assert stale["lastUpdateId"] < first["U"]  # older than what the stream already delivered
            _, fresh, _ = await c.public("GET", "/fapi/v1/depth", symbol="BTCUSDT", limit=100)
            assert fresh["lastUpdateId"] >= first["u"]
            await ws.close()
    run(go())
    assert fired(emu, "stale_snapshot")


@pytest.mark.parametrize("when", ["before", "after"])
def test_rest_5xx_status_unknown(emu, when):
    cid = f"unknown-{when}"

    async def go():
        async with EmuClient(emu, "k", "s") as c:
            price = await _resting_price(c, "BUY")
            emu.inject("rest_5xx", when=when, path="/fapi/v1/order")
            status, body, _ = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                            quantity="0.002", price=price, newClientOrderId=cid)
            assert status == 503 and body["code"] == -1007
            status, body, _ = await c.signed("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId=cid)
            if when == "before":
                assert body["code"] == -2013  # not executed
            else:
                assert body["status"] == "NEW"  # executed although the reply said unknown
                await c.signed("DELETE", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId=cid)
    run(go())
    assert fired(emu, "rest_5xx")


def test_rest_timeout_after_execution(emu):
    async def go():
        async with EmuClient(emu, "k", "s") as c:
            price = await _resting_price(c, "SELL")
            emu.inject("rest_timeout", seconds=3, when="after", path="/fapi/v1/order")
            with pytest.raises(asyncio.TimeoutError):
                await c.order(symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC", quantity="0.002",
                              price=price, newClientOrderId="slow-1", timeout=0.5)
            status, body, _ = await c.signed("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="slow-1")
            assert body["status"] == "NEW"
            await c.signed("DELETE", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="slow-1")
    run(go())
    assert fired(emu, "rest_timeout")


def test_ws_api_drop_executes_then_closes_without_the_reply(emu):
    import hashlib
    import hmac
    from urllib.parse import urlencode

    async def go():
        async with EmuClient(emu, "k", "s") as c:
            price = await _resting_price(c, "SELL")
            api = await c.ws("/ws-fapi/v1")
            params = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
                      "quantity": "0.002", "price": price, "newClientOrderId": "wsdrop-1", "apiKey": "k",
                      "timestamp": int(time.time() * 1000)}
            params["signature"] = hmac.new(b"s", urlencode(sorted(params.items())).encode(), hashlib.sha256).hexdigest()
            emu.inject("ws_api_drop")
            await api.send_json({"id": "x", "method": "order.place", "params": params})
            msg = await asyncio.wait_for(api.receive(), 10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and api.closed  # no reply
            status, body, _ = await c.signed("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="wsdrop-1")
            assert body["status"] == "NEW"  # it was executed
            await c.signed("DELETE", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="wsdrop-1")
    run(go())
    assert fired(emu, "ws_api_drop")


def test_rest_delay_and_forced_rate_limits(emu):
    async def go():
        async with EmuClient(emu, "k", "s") as c:
            emu.inject("rest_delay", ms=300, path="/fapi/v1/time", count=1)
            t0 = time.monotonic()
            status, _, _ = await c.public("GET", "/fapi/v1/time")
            assert status == 200 and time.monotonic() - t0 >= 0.3
            emu.inject("rest_429", retry_after=7)
            status, body, headers = await c.public("GET", "/fapi/v1/time")
            assert (status, body["code"], headers["Retry-After"]) == (429, -1003, "7")
            emu.inject("rest_418", retry_after=9)
            status, body, headers = await c.public("GET", "/fapi/v1/time")
            assert (status, headers["Retry-After"]) == (418, "9")
            status, _, _ = await c.public("GET", "/fapi/v1/time")
            assert status == 200  # one-shot faults disarm themselves
    run(go())
    assert fired(emu, "rest_delay") and fired(emu, "rest_429") and fired(emu, "rest_418")


@pytest.mark.parametrize("code,status", [(-1021, 400), (-1008, 503), (-1015, 429)])
def test_rest_error_codes(emu, code, status):
    async def go():
        async with EmuClient(emu, "k", "s") as c:
            emu.inject("rest_error", code=code, status=status, count=2, path="/fapi/v1/order")
            for _ in range(2):
                got, body, _ = await c.signed("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="x")
                assert (got, body["code"]) == (status, code)
            got, body, _ = await c.signed("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="x")
            assert body["code"] == -2013  # back to normal after `count`
    run(go())
    assert fired(emu, "rest_error")


def test_clock_skew(emu):
    async def go():
        async with EmuClient(emu, "k", "s") as c:
            emu.inject("clock_skew", ms=20_000)
            _, t, _ = await c.public("GET", "/fapi/v1/time")
            assert t["serverTime"] - time.time() * 1000 > 15_000
            status, body, _ = await c.signed("GET", "/fapi/v2/balance")
            assert body["code"] == -1021  # our clock looks 20 s late
            c.time_offset_ms = int(t["serverTime"] - time.time() * 1000)
            status, body, _ = await c.signed("GET", "/fapi/v2/balance")
            assert status == 200  # a client that syncs with /time is fine
    run(go())
    assert fired(emu, "clock_skew")


def test_listen_key_faults(emu):
    async def go():
        async with EmuClient(emu, "k", "s") as c:
            key = await c.listen_key()
            uws = await c.ws("/ws/" + key)
            emu.inject("listen_key_keepalive_fail")
            status, body, _ = await c.signed("PUT", "/fapi/v1/listenKey")
            assert (status, body["code"]) == (400, -1125)
            emu.inject("listen_key_expire")
            m = await recv_json(uws)
            assert m["e"] == "listenKeyExpired" and m["listenKey"] == key
            msg = await asyncio.wait_for(uws.receive(), 5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            status, body, _ = await c.signed("PUT", "/fapi/v1/listenKey")
            assert body["code"] == -1125
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await c.ws("/ws/" + key)  # an expired key is refused
            assert await c.listen_key() != key
    run(go())
    assert fired(emu, "listen_key_expire") and fired(emu, "listen_key_keepalive_fail")


def test_order_reject_and_unknown_enum(emu):
    async def go():
        async with EmuClient(emu, "k", "s") as c:
            key = await c.listen_key()
            uws = await c.ws("/ws/" + key)
            price = await _resting_price(c, "BUY")
            emu.inject("order_reject", code=-2019, msg="Margin is insufficient.")
            status, body, _ = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                            quantity="0.002", price=price, newClientOrderId="rej-1")
            assert (status, body["code"]) == (400, -2019)
            emu.inject("unknown_enum")
            status, body, _ = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                            quantity="0.002", price=price, newClientOrderId="stp-1")
            assert status == 200
            m, _ = await recv_until(uws, lambda m: m.get("e") == "ORDER_TRADE_UPDATE" and m["o"]["c"] == "stp-1"
                                    and m["o"]["X"] != "NEW")
            assert m["o"]["X"] == "EXPIRED_IN_MATCH" and m["o"]["x"] == "EXPIRED"
            await uws.close()
    run(go())
    ledger = emu.ledger("k")
    assert any(e["event"] == "REJECTED" and e["clientOrderId"] == "rej-1" and e["code"] == -2019 for e in ledger)
    assert fired(emu, "order_reject") and fired(emu, "unknown_enum")


def test_insurance_fund_trade(emu):
    async def go():
        async with EmuClient(emu) as c:
            ws = await c.ws("/ws/btcusdt@trade")
            await recv_json(ws)
            emu.inject("insurance_fund_trade")
            m, seen = await recv_until(ws, lambda m: m["X"] != "MARKET")
            assert m["X"] == "INSURANCE_FUND"
            await ws.close()
    run(go())
    assert fired(emu, "insurance_fund_trade")


def test_external_order_and_liquidation(emu):
    async def go():
        async with EmuClient(emu, "k", "s") as c:
            key = await c.listen_key()
            uws = await c.ws("/ws/" + key)
            emu.inject("external_order", api_key="k", symbol="BTCUSDT")
            m, _ = await recv_until(uws, lambda m: m.get("e") == "ORDER_TRADE_UPDATE" and m["o"]["x"] == "TRADE")
            assert m["o"]["c"].startswith("web_")
            acct, _ = await recv_until(uws, lambda m: m.get("e") == "ACCOUNT_UPDATE")
            assert float(acct["a"]["P"][0]["pa"]) != 0
            size = acct["a"]["P"][0]["pa"].lstrip("-")
            force = await c.ws("/market/stream?streams=btcusdt@forceOrder/!forceOrder@arr")
            emu.inject("liquidation", api_key="k", symbol="BTCUSDT")
            m, _ = await recv_until(uws, lambda m: m.get("e") == "ORDER_TRADE_UPDATE" and m["o"]["x"] == "TRADE")
            assert m["o"]["c"].startswith("autoclose-") and m["o"]["R"] is True
            acct, _ = await recv_until(uws, lambda m: m.get("e") == "ACCOUNT_UPDATE")
            assert float(acct["a"]["P"][0]["pa"]) == 0
            # the market sees the liquidation too, on both streams (Liquidation-Order-Streams)
            streams = set()
            for _ in range(2):
                f = await recv_json(force)
                streams.add(f["stream"])
                o = f["data"]["o"]
                assert f["data"]["e"] == "forceOrder" and o["X"] == "FILLED" and o["z"] == size == o["q"]
                assert o["S"] == m["o"]["S"] and float(o["ap"]) > 0
            assert streams == {"btcusdt@forceOrder", "!forceOrder@arr"}
            await uws.close()
            await force.close()
    run(go())
    assert fired(emu, "external_order") and fired(emu, "liquidation")


def test_admin_endpoints(emu):
    async def go():
        async with EmuClient(emu) as c:
            admin = {"X-EMU-ADMIN-TOKEN": ADMIN_TOKEN}
            async with c.session.post(emu.rest_url + "/_emu/fault", json={"kind": "rest_429", "count": 1},
                                      headers=admin) as r:
                assert r.status == 200
            status, _, _ = await c.public("GET", "/fapi/v1/ping")
            assert status == 429
            async with c.session.post(emu.rest_url + "/_emu/fault", json={"kind": "nope"}, headers=admin) as r:
                assert r.status == 400 and "unknown fault kind" in (await r.json())["error"]
            async with c.session.get(emu.rest_url + "/_emu/state", headers=admin) as r:
                state = await r.json()
            assert "k" in state["accounts"] and state["books"]["BTCUSDT"]["best_bid"] > 0
            async with c.session.get(emu.rest_url + "/_emu/faults", headers=admin) as r:
                assert any(e["kind"] == "rest_429" and e["what"] == "fired" for e in await r.json())
    run(go())


def test_natural_listen_key_expiry_connection_lifetime_and_order_latency(sample_data_dir):
    config = EmulatorConfig(listen_key_validity_s=1.0, max_connection_s=1.5, order_latency_ms=300)
    with Emulator.start(sample_data_dir / "btcusdt_20240808.gz", speed=5.0, config=config) as emu:
        emu.add_account("k", "s")

        async def go():
            async with EmuClient(emu, "k", "s") as c:
                market = await c.ws("/ws/btcusdt@bookTicker")
                key = await c.listen_key()
                uws = await c.ws("/ws/" + key)
                m = await recv_json(uws, timeout=5)
                assert m["e"] == "listenKeyExpired"
                msg = await asyncio.wait_for(market.receive(), 5)
                while msg.type == aiohttp.WSMsgType.TEXT:  # market data flows until the lifetime limit
                    msg = await asyncio.wait_for(market.receive(), 5)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                t0 = time.monotonic()
                status, _, _ = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                             quantity="0.002", price="50000.0")
                assert status == 200 and time.monotonic() - t0 >= 0.3  # order entry latency
                t0 = time.monotonic()
                await c.public("GET", "/fapi/v1/time")
                assert time.monotonic() - t0 < 0.3  # only order requests are delayed

        asyncio.run(go())


def test_every_fault_kind_is_exercised():
    """Each test above asserts that the kinds it injects fired; this one checks that no kind lacks such a test.
    It reads this file instead of collecting what ran, so it also holds when tests are selected with -k."""
    checked = set(re.findall(r'fired\(emu, "(\w+)"\)', Path(__file__).read_text())) | set(DEPTH_CHAIN_KINDS)
    assert set(FAULT_KINDS) <= checked, sorted(set(FAULT_KINDS) - checked)
