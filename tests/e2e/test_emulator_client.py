"""An independent Binance USD-M client for the emulator tests (aiohttp + hmac, not the project's connector).

Other emulator test modules import `EmuClient` from here; the tests below pin the signing rule itself.
"""
from __future__ import annotations

import asyncio
import ctypes
import hashlib
import hmac
import os
import signal
import time
from urllib.parse import urlencode

import aiohttp
import orjson


def isolate_child() -> None:
    """`preexec_fn` for e2e child processes: their own process group (teardown kills the whole group) and
    SIGKILL when the test process dies, even by a segfault, so no emulator or connector is left behind."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def kill_group(proc) -> None:
    """Kill whatever is left of a child's process group (the child itself and anything it started)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def interrupt(proc, timeout: float = 20.0) -> tuple[str, str]:
    """Ctrl-C a child started with `isolate_child`, collect its output, and kill whatever is left of it."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class EmuClient:
    """Signed REST calls and WebSocket helpers against one emulator. Use inside `asyncio.run`."""

    def __init__(self, emu, api_key: str = "", secret: str = ""):
        self.emu, self.api_key, self.secret = emu, api_key, secret
        self.session: aiohttp.ClientSession | None = None
        self.time_offset_ms = 0

    async def __aenter__(self) -> "EmuClient":
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    async def public(self, method: str, path: str, **params):
        async with self.session.request(method, self.emu.rest_url + path, params=params or None) as r:
            return r.status, orjson.loads(await r.read()), r.headers

    async def signed(self, method: str, path: str, *, in_body: bool | None = None, timestamp: int | None = None,
                     secret: str | None = None, api_key: str | None = None, timeout: float = 10.0, **params):
        """Signed request: query string for GET/DELETE, form body for POST/PUT (signature last)."""
        params = {k: v for k, v in params.items() if v is not None}
        params.setdefault("recvWindow", 5000)
        params["timestamp"] = timestamp if timestamp is not None else int(time.time() * 1000) + self.time_offset_ms
        payload = urlencode(params)
        payload += "&signature=" + sign(secret or self.secret, payload)
        headers = {"X-MBX-APIKEY": api_key or self.api_key}
        body_mode = in_body if in_body is not None else method in ("POST", "PUT")
        url = self.emu.rest_url + path
        kwargs = {"timeout": aiohttp.ClientTimeout(total=timeout)}
        if body_mode:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            kwargs["data"] = payload
        else:
            url += "?" + payload
        async with self.session.request(method, url, headers=headers, **kwargs) as r:
            return r.status, orjson.loads(await r.read()), r.headers

    async def order(self, **params):
        return await self.signed("POST", "/fapi/v1/order", **params)

    async def listen_key(self) -> str:
        async with self.session.post(self.emu.rest_url + "/fapi/v1/listenKey",
                                     headers={"X-MBX-APIKEY": self.api_key}) as r:
            return (await r.json())["listenKey"]

    async def ws(self, path: str, **kwargs) -> aiohttp.ClientWebSocketResponse:
        base = self.emu.ws_url.rsplit("/ws", 1)[0]
        return await self.session.ws_connect(base + path, **kwargs)


async def recv_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0):
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
    return orjson.loads(msg.data)


async def recv_until(ws, predicate, timeout: float = 15.0, limit: int = 100_000):
    """Read messages until `predicate(msg)` holds; returns (matching message, all messages read)."""
    seen = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(seen) < limit:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"condition not met within {timeout}s; last messages: {seen[-3:]}"
        msg = await recv_json(ws, left)
        seen.append(msg)
        if predicate(msg):
            return msg, seen
    raise AssertionError("message limit reached")


def test_signature_matches_binance_documented_example():
    # Example from Binance's API docs ("SIGNED Endpoint Examples", HMAC key and query string published there).
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    assert sign(secret, query) == "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
