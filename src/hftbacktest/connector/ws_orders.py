"""Order entry over Binance's USD-M WebSocket API (`ws-fapi`), with REST as the fallback while it is down.

Shapes follow Binance's pages websocket-api-general-info and trade/websocket-api/{New-Order, Cancel-Order,
Modify-Order}: a request is `{"id", "method", "params"}` whose params carry `apiKey`, `timestamp`, `recvWindow`
and `signature` = hex HMAC-SHA256 of the other params sorted by name and joined as `k=v&…`; the reply is
`{"id", "status", "result" | "error": {"code", "msg"}, "rateLimits": [...]}` with the REST endpoint's body as
`result`. Replies are turned into `RestReply`s, so the connector applies both transports with one code path and
the same guarantees: a request whose connection drops (or that gets no reply in `rest_timeout_s`) is answered
`status=0` (outcome unknown), which the connector resolves by querying the order, exactly like a REST timeout.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from typing import Any

import aiohttp
import orjson

from .config import ConnectorConfig
from ..binance.signing import sign, ws_payload
from .rest import BinanceRest, RateLimited, RestReply

log = logging.getLogger("hftbacktest.connector")

# (REST method, REST path) -> WebSocket API method with the same parameters and result
METHODS = {
    ("POST", "/fapi/v1/order"): "order.place",
    ("DELETE", "/fapi/v1/order"): "order.cancel",
    ("PUT", "/fapi/v1/order"): "order.modify",
}
_LIMIT_FIELDS = {("REQUEST_WEIGHT", "MINUTE", 1): "used_weight_1m", ("ORDERS", "SECOND", 10): "order_count_10s",
                 ("ORDERS", "MINUTE", 1): "order_count_1m"}


class WsOrderApi:
    """One long-lived WS API connection (`run` keeps it up); `send` routes an order request over it or REST."""

    def __init__(self, cfg: ConnectorConfig, rest: BinanceRest):
        self.cfg = cfg
        self.rest = rest
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._tag = secrets.token_hex(3)  # request ids stay unique across connections and restarts
        self._ids = itertools.count(1)
        self._closing: asyncio.Task | None = None
        self._up = asyncio.Event()
        self.connects = 0
        self.sent_ws = 0
        self.sent_rest = 0  # order requests that went over REST because the WS API was down

    @property
    def up(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def wait_up(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def send(self, method: str, path: str, params: dict[str, Any]) -> RestReply:
        """The request's reply from the WS API when it is up, else from REST. May raise `RateLimited`."""
        ws_method = METHODS.get((method, path))
        if ws_method is not None and self.up:
            reply = await self._request(ws_method, params)
            if reply is not None:
                self.sent_ws += 1
                return reply
        self.sent_rest += 1
        return await self.rest.request(method, path, params, signed=True)

    def signed_params(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {**params, "apiKey": self.cfg.api_key, "recvWindow": self.cfg.recv_window_ms,
               "timestamp": self.rest.now_ms()}
        out["signature"] = sign(self.cfg.secret, ws_payload(out))
        return out

    async def _request(self, method: str, params: dict[str, Any], retry_timestamp: bool = True) -> RestReply | None:
        """None when the request was not sent (no connection): the caller may use REST instead."""
        wait = self.rest.blocked_until - time.monotonic()
        if wait > 0:  # Binance counts the WS API and REST against the same IP limits
            raise RateLimited(("banned" if self.rest.banned else "rate limited") + f" for another {wait:.1f} s")
        ws = self._ws
        if ws is None or ws.closed:
            return None
        rid = f"{self._tag}-{next(self._ids)}"
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            frame = orjson.dumps({"id": rid, "method": method, "params": self.signed_params(params)}).decode()
            try:
                await ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return None  # the transport was already closing: nothing was written
            try:
                reply = await asyncio.wait_for(fut, self.cfg.rest_timeout_s)
            except asyncio.TimeoutError:
                # A silent connection may be half-open: stop using it, so later orders go over REST meanwhile.
                log.warning("WS API: no reply to %s within %.1f s; closing the connection", method,
                            self.cfg.rest_timeout_s)
                self._closing = asyncio.get_running_loop().create_task(ws.close())  # referenced until done
                return RestReply(0, None, None, f"WS API: no reply within {self.cfg.rest_timeout_s:g} s")
        finally:
            self._pending.pop(rid, None)
        if reply.code == -1021 and retry_timestamp:
            log.warning("timestamp rejected (-1021): re-syncing clock and retrying %s once", method)
            await self.rest.sync_time()
            return await self._request(method, params, retry_timestamp=False) or reply
        return reply

    def on_frame(self, raw: str) -> None:
        try:
            msg = orjson.loads(raw)
            rid = msg.get("id")
        except (orjson.JSONDecodeError, AttributeError):
            log.warning("WS API: unparseable frame dropped: %.120r", raw)
            return
        self._track_limits(msg.get("rateLimits"))
        fut = self._pending.get(rid) if isinstance(rid, str) else None
        if fut is None or fut.done():
            log.warning("WS API: reply to an unknown or expired request %r dropped", rid)
            return
        fut.set_result(self.reply_of(msg))

    def reply_of(self, msg: dict) -> RestReply:
        status = int(msg.get("status") or 0)
        if status == 200 and "result" in msg:
            return RestReply(200, msg["result"])
        err = msg.get("error") if isinstance(msg.get("error"), dict) else {}
        code = err.get("code")
        reply = RestReply(status or 400, err, int(code) if isinstance(code, int) else None, str(err.get("msg", "")))
        if status in (418, 429):
            # `error.data.retryAfter` is the epoch ms until which Binance refuses requests
            data = err.get("data") if isinstance(err.get("data"), dict) else {}
            until_ms = data.get("retryAfter")
            if isinstance(until_ms, (int, float)):
                wait = max(until_ms - self.rest.now_ms(), 0) / 1000
            else:
                wait = 60.0 if status == 418 else 1.0
            self.rest.blocked_until = time.monotonic() + wait
            self.rest.banned = status == 418
            log.error("WS API answered %d; no order request for %.0f s", status, wait)
        return reply

    def _track_limits(self, limits) -> None:
        for row in limits if isinstance(limits, list) else ():
            try:
                attr = _LIMIT_FIELDS.get((row["rateLimitType"], row["interval"], int(row["intervalNum"])))
                if attr is not None:
                    setattr(self.rest, attr, int(row["count"]))
            except (KeyError, TypeError, ValueError):
                continue

    def _fail_pending(self, reason: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result(RestReply(0, None, None, f"WS API connection lost before the reply: {reason}"))

    async def run(self, session: aiohttp.ClientSession, backoff) -> None:
        """Keep the connection up (reconnect with `backoff`); pending requests end `unknown` when it drops."""
        while True:
            reason = "closed"
            try:
                async with session.ws_connect(self.cfg.ws_api_url, autoping=True, max_msg_size=1 << 22) as ws:
                    self._ws = ws
                    self.connects += 1
                    backoff.healthy_since()
                    self._up.set()
                    log.info("order WebSocket API connected (%s)", self.cfg.ws_api_url)
                    reason = await self._read(ws)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._ws = None
                self._up.clear()
                self._fail_pending(reason)
            delay = backoff.next_delay()
            log.warning("order WebSocket API down (%s); orders go over REST; reconnecting in %.2f s", reason, delay)
            await asyncio.sleep(delay)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.on_frame(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return f"closed by server ({ws.close_code})"
            elif msg.type == aiohttp.WSMsgType.ERROR:
                return f"error {ws.exception()}"
