"""Perpetual-futures payloads for the bots: the mark price stream and the funding fees of the user stream.

Pure logic (no I/O). A mark price goes to the bots as a MARK_PRICE_EVENT row (`hbt.mark_price`), a funding fee as
a FUNDING_FEE_EVENT row whose `px` is the amount paid, positive when paid and negative when received, the sign of
`hbt.funding` in the backtest (docs/perp.md).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time

import aiohttp
import orjson

from ..binance.wire import routed_url
from ..live.ipc import TO_ALL, codec
from ..types import FUNDING_FEE_EVENT, LOCAL_EVENT, MARK_PRICE_EVENT

log = logging.getLogger("hftbacktest.connector")

LOCAL_MARK_PRICE = MARK_PRICE_EVENT | LOCAL_EVENT
LOCAL_FUNDING_FEE = FUNDING_FEE_EVENT | LOCAL_EVENT


def mark_price_event(msg: dict, local_ts: int) -> tuple:
    """`markPriceUpdate` -> event row: px the mark price, exch_ts the event time, ival the next funding time."""
    return (LOCAL_MARK_PRICE, int(msg["E"]) * 1_000_000, local_ts, float(msg["p"]), 0.0, 0,
            int(msg.get("T") or 0) * 1_000_000, 0.0)


def funding_fee_event(paid: float, exch_ts: int, local_ts: int) -> tuple:
    return (LOCAL_FUNDING_FEE, exch_ts, local_ts, paid, 0.0, 0, 0, 0.0)


def account_funding(msg: dict) -> tuple[int, list[tuple[str, float]] | None] | None:
    """An ACCOUNT_UPDATE with reason FUNDING_FEE -> (exch_ts ns, [(symbol, paid)]), or None for another reason.

    The balance change `bc` is what the wallet gained (negative: the fee paid). An isolated position's event names
    its position (`P`), so the fee is that symbol's; a crossed position's event names only the margin asset, so
    the list is None and the symbols must come from the income history (`income_funding`)."""
    a = msg["a"]
    if a.get("m") != "FUNDING_FEE":
        return None
    ts = int(msg.get("T") or msg.get("E") or 0) * 1_000_000
    positions = [p for p in a.get("P") or [] if p.get("s")]
    if len(positions) != 1:
        return ts, None
    paid = -sum(float(b["bc"]) for b in a.get("B") or [])
    return ts, [(positions[0]["s"].lower(), paid)]


def income_funding(rows: list, seen: dict) -> list[tuple[str, float, int]]:
    """`GET /fapi/v1/income?incomeType=FUNDING_FEE` rows not in `seen` -> [(symbol, paid, exch_ts ns)]. `seen`
    (tranId, symbol) -> time ms is updated; entries a day older than the newest row are forgotten."""
    out = []
    for row in rows:
        if row.get("incomeType", "FUNDING_FEE") != "FUNDING_FEE":
            continue
        key = (row.get("tranId"), row.get("symbol"))
        if key in seen:
            continue
        seen[key] = int(row["time"])
        out.append((str(row["symbol"]).lower(), -float(row["income"]), int(row["time"]) * 1_000_000))
    if seen:
        horizon = max(seen.values()) - 86_400_000
        for key in [k for k, t in seen.items() if t < horizon]:
            del seen[key]
    return out


class FundingRelay:
    """The connector's perpetual-futures part: mark prices and funding fees to the bots of their symbol."""

    LOOKUP_DELAYS_S = (1.0, 2.0, 4.0, 8.0)  # the income history may lag the user stream by a moment

    def __init__(self, connector):
        self.con = connector
        self.seen: dict = {}  # funding rows already forwarded (income history)
        self.lookups: dict[int, asyncio.Task] = {}  # minute of a crossed FUNDING_FEE event -> its lookup
        self.url = connector.cfg.mark_price_url or routed_url(connector.cfg.stream_url, "market")
        self.ws = None  # the /market connection while it is up

    async def run(self, backoff) -> None:
        """The `/market` connection: `<symbol>@markPrice@1s` for every symbol a bot trades, reconnecting."""
        while True:
            reason = "closed"
            try:
                async with self.con._session.ws_connect(self.url, autoping=True, max_msg_size=0) as ws:
                    self.ws = ws
                    backoff.healthy_since()
                    await self.subscribe(list(self.con.books))
                    reason = await self._read(ws)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self.ws = None
            delay = backoff.next_delay()
            log.warning("mark price stream %s dropped (%s); reconnecting in %.2f s", self.url, reason, delay)
            await asyncio.sleep(delay)

    async def subscribe(self, symbols: list[str]) -> None:
        ws = self.ws
        if ws is None or ws.closed or not symbols:
            return  # run() subscribes every symbol on (re)connect
        for i in range(0, len(symbols), 50):
            params = [f"{s}@markPrice@1s" for s in symbols[i:i + 50]]
            await ws.send_str(orjson.dumps({"method": "SUBSCRIBE", "params": params,
                                            "id": random.getrandbits(31)}).decode())
            await asyncio.sleep(0.1)  # <= 10 control messages per second

    async def _read(self, ws) -> str:
        idle = self.con.cfg.stream_idle_timeout_s
        while True:
            try:
                msg = await ws.receive(timeout=idle if self.con.books else None)
            except asyncio.TimeoutError:
                return f"no data for {idle:.0f} s"
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                self.on_frame(msg.data, time.time_ns())
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return f"closed by server ({ws.close_code})"
            elif msg.type == aiohttp.WSMsgType.ERROR:
                return f"error {ws.exception()}"

    def on_frame(self, raw, local_ts: int) -> None:
        try:
            msg = orjson.loads(raw)
            if "stream" in msg and "data" in msg:
                msg = msg["data"]
            if msg.get("e") == "markPriceUpdate":
                self.on_mark_price(msg, local_ts)
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            log.warning("malformed mark price frame dropped (%s): %.120r", exc, raw)

    def on_mark_price(self, msg: dict, local_ts: int) -> None:
        symbol = msg["s"].lower()
        if symbol in self.con.books:
            self.con.send(TO_ALL, codec.Feed(symbol, mark_price_event(msg, local_ts)))

    def on_account_update(self, msg: dict, local_ts: int) -> None:
        got = account_funding(msg)
        if got is None:
            return
        ts, fees = got
        if fees is not None:
            for symbol, paid in fees:
                self._publish(symbol, paid, ts, local_ts)
            return
        minute = ts // 60_000_000_000
        task = self.lookups.get(minute)
        if task is None or task.done():
            self.lookups[minute] = self.con.spawn(self._from_income(ts))

    def _publish(self, symbol: str, paid: float, ts: int, local_ts: int) -> None:
        if symbol in self.con.books:  # a symbol no bot trades is not ours to count
            log.info("%s: funding fee %.8g paid", symbol, paid)
            self.con.send(TO_ALL, codec.Feed(symbol, funding_fee_event(paid, ts, local_ts)))

    async def _from_income(self, ts: int) -> None:
        """A crossed position's fee: its symbols from the income history around the event's time."""
        ms = ts // 1_000_000
        params = {"incomeType": "FUNDING_FEE", "startTime": ms - 60_000, "endTime": ms + 60_000, "limit": 1000}
        for delay in self.LOOKUP_DELAYS_S:
            await asyncio.sleep(delay)
            reply = await self.con._safe_request("GET", "/fapi/v1/income", params, signed=True)
            if reply is not None and reply.ok and isinstance(reply.data, list):
                fees = income_funding(reply.data, self.seen)
                if fees:
                    for symbol, paid, t in fees:
                        self._publish(symbol, paid, t, time.time_ns())
                    return
        log.warning("funding fee at %d ms: no FUNDING_FEE row in the income history; hbt.funding misses it", ms)
        self.con.error(codec.ErrorKind.Custom, f"funding fee at {ms} ms not found in the income history",
                       codec.CUSTOM_FUNDING_MISSED)
