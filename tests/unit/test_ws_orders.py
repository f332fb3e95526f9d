"""The connector's WebSocket API order transport against the in-process emulator: signing, replies, REST
fallback while the connection is down, unknown outcomes after a lost reply, reconnects and silent servers."""
from __future__ import annotations

import asyncio
import time

import pytest

from hftbacktest.connector.config import ConnectorConfig
from hftbacktest.connector.rest import BinanceRest
from hftbacktest.connector.ws_orders import WsOrderApi
from hftbacktest.errors import ConfigError


@pytest.fixture(scope="module")
def emu():
    from hftbacktest.emulator import Emulator

    with Emulator.start("synthetic:BTCUSDT:30", speed=1.0) as e:
        e.add_account("k", "s", balance=100_000)
        deadline = time.monotonic() + 30
        while not e.book("BTCUSDT", 1)["bids"]:
            assert time.monotonic() < deadline, "the emulator's book stayed empty"
            time.sleep(0.05)
        yield e


def _cfg(emu, **kw) -> ConnectorConfig:
    raw = {"stream_url": emu.ws_url, "api_url": emu.rest_url, "api_key": "k", "secret": "s", "order_prefix": "u-",
           "order_transport": "ws", "ws_api_url": emu.ws_url.rsplit("/ws", 1)[0] + "/ws-fapi/v1", **kw}
    return ConnectorConfig.from_mapping(raw)


def _order(emu, cid: str) -> dict:
    price = round(emu.book("BTCUSDT", 1)["bids"][0][0] * 0.1 * 0.98, 1)  # rests below the touch
    return {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.002",
            "price": f"{price:.1f}", "newClientOrderId": cid}


class _Backoff:
    def __init__(self, delay: float):
        self.delay = delay
        self.failures = 0

    def healthy_since(self) -> None:
        pass

    def next_delay(self) -> float:
        self.failures += 1
        return self.delay


async def _start(cfg, delay: float):
    import aiohttp

    session = aiohttp.ClientSession()
    rest = BinanceRest(cfg)
    api = WsOrderApi(cfg, rest)
    task = asyncio.get_running_loop().create_task(api.run(session, _Backoff(delay)))
    return session, rest, api, task


async def _stop(session, rest, task):
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await rest.close()
    await session.close()


def test_order_transport_config_is_validated():
    base = {"stream_url": "ws://127.0.0.1:1/ws", "api_url": "http://127.0.0.1:2"}
    assert ConnectorConfig.from_mapping(base).order_transport == "rest"
    with pytest.raises(ConfigError, match="'order_transport'"):
        ConnectorConfig.from_mapping({**base, "order_transport": "fix"})
    with pytest.raises(ConfigError, match="'ws_api_url'"):
        ConnectorConfig.from_mapping({**base, "order_transport": "ws"})
    cfg = ConnectorConfig.from_mapping({**base, "order_transport": "ws", "ws_api_url": "ws://127.0.0.1:1/ws-fapi/v1"})
    assert cfg.order_transport == "ws"


def test_place_modify_cancel_over_the_ws_api_and_rest_before_it_connects(emu):
    async def go():
        session, rest, api, task = await _start(_cfg(emu), 0.05)
        try:
            early = await api.send("POST", "/fapi/v1/order", _order(emu, "u-early"))  # not connected yet: REST
            assert early.ok and early.data["status"] == "NEW" and (api.sent_rest, api.sent_ws) == (1, 0)
            assert await api.wait_up(10)
            placed = await api.send("POST", "/fapi/v1/order", _order(emu, "u-ws1"))
            assert placed.ok and placed.data["clientOrderId"] == "u-ws1" and placed.data["status"] == "NEW"
            assert api.sent_ws == 1 and rest.order_count_10s >= 2  # counted from the reply's rateLimits
            new_price = f"{float(placed.data['price']) - 1:.1f}"
            amended = await api.send("PUT", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "u-ws1",
                                                               "side": "BUY", "quantity": "0.003",
                                                               "price": new_price})
            assert amended.ok and float(amended.data["price"]) == float(new_price) and float(amended.data["origQty"]) == 0.003
            for cid in ("u-ws1", "u-early"):
                gone = await api.send("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": cid})
                assert gone.ok and gone.data["status"] == "CANCELED"
            again = await api.send("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "u-ws1"})
            assert again.code == -2011 and not again.unknown  # a definite refusal, Binance's code
            assert (api.sent_rest, api.sent_ws) == (1, 5)
        finally:
            await _stop(session, rest, task)

    asyncio.run(go())


def test_a_wrong_secret_is_a_definite_refusal(emu):
    async def go():
        session, rest, api, task = await _start(_cfg(emu, secret="not-s"), 0.05)
        try:
            assert await api.wait_up(10)
            reply = await api.send("POST", "/fapi/v1/order", _order(emu, "u-badsig"))
            assert reply.code == -1022 and not reply.unknown and api.sent_ws == 1
        finally:
            await _stop(session, rest, task)

    asyncio.run(go())


def test_lost_reply_is_unknown_then_rest_until_reconnected(emu):
    """The connection drops after the order was executed: the reply says 'unknown' (the connector then queries the
    order); while the connection is down, orders go over REST; once it is back, over the WS API again."""
    async def go():
        session, rest, api, task = await _start(_cfg(emu), 0.05)
        try:
            assert await api.wait_up(10)
            emu.inject("ws_api_drop")
            lost = await api.send("POST", "/fapi/v1/order", _order(emu, "u-lost"))
            assert lost.status == 0 and lost.unknown, lost
            assert not api.up  # the reader saw the close before the pending request was failed
            during = await api.send("POST", "/fapi/v1/order", _order(emu, "u-during"))
            assert during.ok and api.sent_rest == 1
            query = await rest.request("GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "u-lost"},
                                       signed=True)
            assert query.ok and query.data["status"] == "NEW"  # it was placed exactly once
            assert await api.wait_up(10) and api.connects == 2
            after = await api.send("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "u-lost"})
            assert after.ok and after.data["status"] == "CANCELED" and api.sent_ws == 2
            await api.send("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "u-during"})
        finally:
            await _stop(session, rest, task)
        ours = [e for e in emu.ledger("k") if e.get("clientOrderId") == "u-lost"]
        assert [e["event"] for e in ours] == ["NEW", "CANCELED"]

    asyncio.run(go())


def test_a_silent_server_times_out_as_unknown_and_is_abandoned():
    """No reply within rest_timeout_s: outcome unknown, and the (maybe half-open) connection is closed so later
    orders go over REST."""
    from aiohttp import web

    async def go():
        received = asyncio.Event()

        async def silent(request):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for _ in ws:
                received.set()
            return ws

        app = web.Application()
        app.router.add_get("/ws-fapi/v1", silent)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        cfg = ConnectorConfig.from_mapping({
            "stream_url": f"ws://127.0.0.1:{port}/ws", "api_url": f"http://127.0.0.1:{port}", "api_key": "k",
            "secret": "s", "order_transport": "ws", "ws_api_url": f"ws://127.0.0.1:{port}/ws-fapi/v1",
            "rest_timeout_s": 0.3})
        session, rest, api, task = await _start(cfg, 60.0)
        try:
            assert await api.wait_up(10)
            reply = await api.send("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "x"})
            assert received.is_set() and reply.status == 0 and reply.unknown
            deadline = time.monotonic() + 10
            while api.up:
                assert time.monotonic() < deadline, "the silent connection was kept"
                await asyncio.sleep(0.01)
        finally:
            await _stop(session, rest, task)
            await runner.cleanup()

    asyncio.run(go())
