"""Binance USD-M REST: HMAC-SHA256 signing, server-time offset, rate-limit tracking, typed replies."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlencode

import aiohttp
import orjson

from ..binance.signing import sign
from .config import ConnectorConfig

log = logging.getLogger(__name__)

# Replies that do not tell whether the exchange executed the request.
UNKNOWN_STATUS_CODES = frozenset({-1001, -1006, -1007})
AUTH_FAILURE_CODES = frozenset({-1022, -2014, -2015})


@dataclass
class RestReply:
    status: int  # HTTP status; 0 = transport failure (no reply)
    data: Any = None
    code: int | None = None  # Binance error code
    msg: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.code is None

    @property
    def unknown(self) -> bool:
        """True when the request may or may not have been executed."""
        return self.status == 0 or self.status >= 500 or self.code in UNKNOWN_STATUS_CODES

    def error_value(self) -> dict:
        if self.code is not None:
            return {"code": self.code, "msg": self.msg}
        return {"status_code": str(self.status) if self.status else None, "msg": self.msg}


class RateLimited(Exception):
    """A request was not sent because Binance asked us to wait (429) or banned the IP (418)."""


class BinanceRest:
    def __init__(self, cfg: ConnectorConfig):
        self.cfg = cfg
        self.time_offset_ms = 0
        self.blocked_until = 0.0  # monotonic time before which no request is sent
        self.banned = False
        self.used_weight_1m = 0
        self.order_count_10s = 0
        self.order_count_1m = 0
        self._session: aiohttp.ClientSession | None = None
        self.outage = False  # the last reply was a transport failure or a 5xx
        self.on_recovered: Callable[[], None] | None = None  # called at the first answer after an outage

    async def start(self) -> None:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.cfg.rest_timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout, json_serialize=lambda o: orjson.dumps(o).decode())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.time_offset_ms

    def near_limit(self) -> bool:
        return (
            self.used_weight_1m > 0.9 * self.cfg.rate_limit_weight_1m
            or self.order_count_10s > 0.9 * self.cfg.rate_limit_orders_10s
            or self.order_count_1m > 0.9 * self.cfg.rate_limit_orders_1m
        )

    async def sync_time(self) -> int:
        t0 = time.time()
        reply = await self.request("GET", "/fapi/v1/time")
        t1 = time.time()
        if reply.ok:
            mid_ms = int((t0 + t1) * 500)
            self.time_offset_ms = int(reply.data["serverTime"]) - mid_ms
            if abs(self.time_offset_ms) > 500:
                log.warning("local clock differs from Binance by %d ms", self.time_offset_ms)
        return self.time_offset_ms

    def signed_query(self, params: dict[str, Any]) -> str:
        params = dict(params)
        params["recvWindow"] = self.cfg.recv_window_ms
        params["timestamp"] = self.now_ms()
        query = urlencode(params)
        return f"{query}&signature={sign(self.cfg.secret, query)}"

    async def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, *, signed: bool = False,
        api_key: bool = False, retry_timestamp: bool = True,
    ) -> RestReply:
        if self._session is None:
            await self.start()
        wait = self.blocked_until - time.monotonic()
        if wait > 0:
            raise RateLimited(("banned" if self.banned else "rate limited") + f" for another {wait:.1f} s")
        params = params or {}
        query = self.signed_query(params) if signed else urlencode(params)
        headers = {"X-MBX-APIKEY": self.cfg.api_key} if (signed or api_key) and self.cfg.api_key else {}
        url = self.cfg.api_url + path
        kwargs: dict[str, Any] = {"headers": headers}
        if method in ("POST", "PUT"):
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            kwargs["data"] = query.encode()
        elif query:
            url = f"{url}?{query}"
        try:
            async with self._session.request(method, url, **kwargs) as resp:
                raw = await resp.read()
                self._track_limits(resp)
                reply = self._parse(resp.status, raw)
                if resp.status in (418, 429):
                    retry_after = float(resp.headers.get("Retry-After", "60" if resp.status == 418 else "1"))
                    self.blocked_until = time.monotonic() + retry_after
                    self.banned = resp.status == 418
                    log.error("Binance answered HTTP %d; no REST request for %.0f s", resp.status, retry_after)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            reply = RestReply(0, None, None, f"transport error: {type(exc).__name__}: {exc}"[:300])
            if not self.outage:
                log.error("cannot reach the exchange at %s: %s", self.cfg.api_url, reply.msg)
            self.outage = True
            return reply
        if reply.status >= 500:
            self.outage = True
        elif self.outage:
            self.outage = False
            log.info("REST answers again after an outage")
            if self.on_recovered is not None:
                self.on_recovered()
        if reply.code == -1021 and signed and retry_timestamp:
            log.warning("timestamp rejected (-1021): re-syncing clock and retrying %s %s once", method, path)
            await self.sync_time()
            return await self.request(method, path, params, signed=True, retry_timestamp=False)
        return reply

    @staticmethod
    def _parse(status: int, raw: bytes) -> RestReply:
        try:
            data = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return RestReply(status, None, None, raw[:200].decode(errors="replace"))
        if isinstance(data, dict) and "code" in data and "msg" in data and not (200 <= status < 300 and data["code"] == 200):
            return RestReply(status, data, int(data["code"]), str(data["msg"]))
        if status >= 300:
            return RestReply(status, data, None, f"HTTP {status}")
        return RestReply(status, data)

    def _track_limits(self, resp: aiohttp.ClientResponse) -> None:
        h = resp.headers
        for header, attr in (
            ("X-MBX-USED-WEIGHT-1M", "used_weight_1m"),
            ("X-MBX-ORDER-COUNT-10S", "order_count_10s"),
            ("X-MBX-ORDER-COUNT-1M", "order_count_1m"),
        ):
            value = h.get(header)
            if value is not None and value.isdigit():
                setattr(self, attr, int(value))
