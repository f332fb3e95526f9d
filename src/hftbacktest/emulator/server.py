"""The emulator process: aiohttp REST (`/fapi/...`, `/_emu/...`) and WebSocket servers on 127.0.0.1, feed replay.

Python API (also usable as a pytest fixture)::

    with Emulator.start(feed="../shared/data/binance-usdm/btcusdt_20240808.gz", speed=10.0) as emu:
        emu.add_account("key", "secret", balance=10_000)
        emu.rest_url, emu.ws_url         # http://127.0.0.1:PORT, ws://127.0.0.1:PORT/ws
        emu.inject("depth_gap")          # faults at run time
        emu.ledger("key"), emu.state()   # assertions
"""
from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl

import orjson
from aiohttp import WSMsgType, web

from ..binance import signing, wire
from ..binance.depth import snapshot_id
from ..binance.numbers import money
from ..binance.symbols import SymbolSpec
from ..binance.wire import DEPTH_INTERVALS, normalize_stream, stream_route
from ..errors import ConfigError
from ..kernels.core import ExchangeCore
from .admin import refusal
from .faults import FAULT_KINDS, FaultInjector, parse_fault_spec
from .market import ASK, BID, Feed, open_feed
from .matching import Account, AccountExists, ApiError, Market, Venue
from .streams import ROUTE_ALLOWS, Conn, StreamHub
from . import ws_api
from .tape import INTERVAL_MS, Tape
from .views import FUNDING_RATE, ROUTES, Call, fire_countdowns, kline_row, ticker_24h_row

log = logging.getLogger("hftbacktest.emulator")

UNKNOWN_STATUS = ApiError(-1007, "Timeout waiting for response from backend server. Send status unknown; "
                                 "execution status unknown.", http=503)


@dataclass
class EmulatorConfig:
    """Venue behaviour; every limit can be lowered so tests reach it quickly."""

    speed: float = 1.0  # replay speed; 0 = as fast as possible
    loop: bool = True  # restart the feed at its end (the book is reset to the feed's snapshot via one diff)
    seed: int = 0
    ping_interval: float = 180.0  # server ping frames
    pong_timeout: float = 600.0  # close a connection that has not answered pings for this long
    max_connection_s: float | None = None  # Binance closes connections after 24 h; None = never
    listen_key_validity_s: float = 3600.0
    max_recv_window: int = 60_000
    weight_limit: int = 2400  # per weight window (X-MBX-USED-WEIGHT-1M)
    weight_window_s: float = 60.0
    order_limit_10s: int = 300
    order_limit_1m: int = 1200
    order_window_scale: float = 1.0  # shrink the 10 s / 1 min order windows in tests
    ban_after: int = 3  # requests sent while rate limited before the 418 ban
    ban_s: float = 120.0
    mark_price_interval_s: float = 1.0
    order_latency_ms: float = 0.0  # time before an order request reaches the matching engine
    ws_queue_limit: int = 50_000  # messages queued for one slow client before it is disconnected
    maker_fee: float = 0.0002  # VIP0
    taker_fee: float = 0.0005
    default_leverage: int = 20
    queue: str = "risk_averse"  # queue position model by name (kernels.core.parse_queue), e.g. "power_prob:2"
    exchange: str = "partial_fill"  # or "no_partial_fill" (kernels.core.EXCHANGE_MODELS)
    admin_token: str | None = field(default=None, repr=False)  # None: the `/_emu/...` admin plane is off


@dataclass
class _SymbolStream:
    """Per-symbol update-id chain of the emulator's own diff-depth stream and its coalesced variants."""

    market: Market
    feed: Feed
    name: str
    last_u: int = 1_000_000
    pending: dict[int, dict] = field(default_factory=dict)  # interval -> {(side, tick): lots}
    pending_first: dict[int, int] = field(default_factory=dict)
    last_flushed: dict[int, int] = field(default_factory=dict)
    trade_id: int = 1_000_000
    last_bbo: tuple = ()
    loops: int = 0  # times the feed restarted
    feed_ns: int = 0  # market time replayed in the current loop (feed offset of the last item applied)
    tape: Tape | None = None
    kline_sent: dict = field(default_factory=dict)  # stream -> tape version last published


WEIGHTS = {
    ("GET", "/fapi/v1/ping"): 1, ("GET", "/fapi/v1/time"): 1, ("GET", "/fapi/v1/exchangeInfo"): 1,
    ("POST", "/fapi/v1/order"): 1, ("PUT", "/fapi/v1/order"): 1, ("DELETE", "/fapi/v1/order"): 1,
    ("GET", "/fapi/v1/order"): 1, ("DELETE", "/fapi/v1/allOpenOrders"): 1, ("POST", "/fapi/v1/batchOrders"): 5,
    ("POST", "/fapi/v1/listenKey"): 1, ("PUT", "/fapi/v1/listenKey"): 1, ("DELETE", "/fapi/v1/listenKey"): 1,
    **{key: weight for key, (weight, _, _) in ROUTES.items()},
}
# without a symbol these weigh more (market-data/rest-api pages)
WEIGHTS_ALL_SYMBOLS = {"/fapi/v1/openOrders": 40, "/fapi/v1/ticker/24hr": 40, "/fapi/v1/ticker/price": 2,
                       "/fapi/v2/ticker/price": 2, "/fapi/v1/ticker/bookTicker": 5, "/fapi/v1/premiumIndex": 10}


def _ticks_between(levels: dict, lo: int | None, hi: int | None) -> list[int]:
    if lo is None or hi is None or lo > hi:
        return []
    if hi - lo < 64:
        return [t for t in range(lo, hi + 1) if t in levels]
    return [t for t in levels if lo <= t <= hi]


def _depth_weight(limit: int) -> int:
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def _klines_weight(limit: int) -> int:
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10



class Emulator:
    """A local Binance USD-M Futures venue. Use `Emulator.start(...)` (background thread) or `await serve()`."""

    def __init__(self, feeds=None, *, speed: float | None = None, config: EmulatorConfig | None = None,
                 faults: str | list | None = None, host: str = "127.0.0.1", rest_port: int = 0, ws_port: int = 0):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"the emulator binds loopback only, got host {host!r}")
        self.config = config or EmulatorConfig()
        if speed is not None:
            self.config = replace(self.config, speed=float(speed))
        if self.config.speed < 0:
            raise ConfigError(f"speed must be >= 0 (0 = as fast as possible), got {self.config.speed}")
        self.faults = FaultInjector(seed=self.config.seed)
        for kind, params in (parse_fault_spec(faults) if isinstance(faults, str) else (faults or [])):
            self.faults.add(kind, **params)
        if isinstance(feeds, (str, bytes)) or hasattr(feeds, "__fspath__"):
            feeds = [feeds]
        sources = [str(f) for f in (feeds or ["synthetic:BTCUSDT", "synthetic:ETHUSDT"])]
        self.feeds = [open_feed(src, seed=self.config.seed + i) for i, src in enumerate(sources)]
        symbols = [f.symbol for f in self.feeds]
        if len(set(symbols)) != len(symbols):
            raise ConfigError(f"two feeds for the same symbol: {symbols}")
        self.host, self._rest_port, self._ws_port = host, rest_port, ws_port
        self.venue = Venue([f.spec for f in self.feeds], now_ms=self.now_ms, notify=self._notify_user,
                           default_leverage=self.config.default_leverage, queue=self.config.queue,
                           exchange=self.config.exchange)
        # Load (or, on a cold cache, compile) every matching kernel now: the first order must not stall the event
        # loop for seconds while numba compiles, which clients see as a timeout.
        ExchangeCore.warm()
        self.venue.fault_hook = lambda kind: self.faults.fire(kind) if self.faults.faults else None
        self.streams = {f.symbol: _SymbolStream(self.venue.markets[f.symbol], f, f.symbol.lower(),
                                                tape=Tape(f.spec.tick_size, f.spec.lot_size)) for f in self.feeds}
        self.countdowns: dict[tuple[str, str], int] = {}  # (api_key, symbol) -> cancel-all deadline (ms)
        self.hub = StreamHub()
        self.user_conns: dict[str, set[Conn]] = {}
        self.listen_keys: dict[str, tuple[Account, float]] = {}  # key -> (account, expiry monotonic)
        self.refuse_until: dict[str, float] = {}
        self._weight = [0.0, 0]  # window start, used
        self._limited_until = 0.0
        self._strikes = 0
        self._ban_until = 0.0
        self._order_counts: dict[str, list] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task] = []
        self._ws_all: set[Conn] = set()
        self.rest_port = self.ws_port = 0
        self.messages_published = 0

    # -- lifecycle ------------------------------------------------------------------------------------------
    @classmethod
    def start(cls, feed=None, *, feeds=None, **kwargs) -> "Emulator":
        """Start in a background thread; returns once both servers are bound. Use as a context manager."""
        emu = cls(feeds if feeds is not None else feed, **kwargs)
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            emu._loop = loop
            try:
                loop.run_until_complete(emu.serve())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(emu._shutdown())
            loop.close()

        emu._thread = threading.Thread(target=run, name="hftbacktest-emulator", daemon=True)
        emu._thread.start()
        if not ready.wait(120):
            raise RuntimeError("the emulator did not bind its servers within 120 s")
        if errors:
            raise errors[0]
        return emu

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._thread = None

    async def serve(self) -> None:
        """Bind both servers and start the replay (inside a running loop). Pair with `await aclose()`."""
        self._loop = asyncio.get_running_loop()
        rest = web.Application(client_max_size=1 << 20)
        rest.router.add_route("*", "/{tail:.*}", self._handle_rest)
        ws = web.Application()
        for prefix in ("", "/{route:public|market|private}"):
            ws.router.add_get(prefix + "/ws", self._handle_ws)
            ws.router.add_get(prefix + "/ws/{streams:.*}", self._handle_ws)
            ws.router.add_get(prefix + "/stream", self._handle_ws)
        ws.router.add_get("/ws-fapi/v1", self._handle_ws_api)
        for app, port, attr in ((rest, self._rest_port, "rest_port"), (ws, self._ws_port, "ws_port")):
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self.host, port, reuse_address=True)
            await site.start()
            self._runners.append(runner)
            setattr(self, attr, runner.addresses[0][1])
        loop = asyncio.get_running_loop()
        for st in self.streams.values():
            self._reset_book(st)
            self._tasks.append(loop.create_task(self._replay(st)))
        for interval in sorted(set(DEPTH_INTERVALS.values()) - {0}):
            self._tasks.append(loop.create_task(self._flush_loop(interval)))
        self._tasks.append(loop.create_task(self._housekeeping()))
        log.info("emulator REST %s WS %s", self.rest_url, self.ws_url)

    async def aclose(self) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for conn in list(self._ws_all):
            conn.closed = True
            await conn.ws.close(code=1001, message=b"emulator shutting down")
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/ws"

    def _call(self, fn, *args, **kwargs):
        """Run `fn` on the emulator's loop thread (thread-safe access from tests)."""
        if self._loop is None or threading.current_thread() is self._thread or not self._loop.is_running():
            return fn(*args, **kwargs)

        async def wrapper():
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(30)

    # -- public Python API ----------------------------------------------------------------------------------
    def add_account(self, api_key: str, secret: str, balance: float = 10_000.0, *, maker_fee: float | None = None,
                    taker_fee: float | None = None, leverage: int | None = None) -> None:
        """Register an API key → account (USDT balance, fee rates: positive = cost, negative = rebate)."""
        maker = self.config.maker_fee if maker_fee is None else maker_fee
        taker = self.config.taker_fee if taker_fee is None else taker_fee
        self._call(self.venue.add_account, api_key, secret, balance, maker, taker, leverage)

    def inject(self, kind: str, **params) -> None:
        """Arm a fault now (see `FAULT_KINDS`); action kinds (listen-key expiry, external orders) run at once."""
        self._call(self._inject, kind, params)

    def clear_faults(self, kind: str | None = None) -> None:
        self._call(self._clear_faults, kind)

    def _clear_faults(self, kind: str | None) -> None:
        self.faults.clear(kind)
        if kind in (None, "ws_drop"):
            self.refuse_until.clear()

    def fault_log(self) -> list[dict]:
        return self._call(lambda: list(self.faults.log))

    def ledger(self, api_key: str | None = None) -> list[dict]:
        """Every order event (NEW, TRADE, CANCELED, EXPIRED, AMENDMENT, REJECTED) per account, in order."""
        def collect():
            accounts = [self.venue.accounts[api_key]] if api_key else self.venue.accounts.values()
            return [dict(e, api_key=a.api_key) for a in accounts for e in a.ledger]
        return sorted(self._call(collect), key=lambda e: e["seq"])

    def orders(self, api_key: str) -> list[dict]:
        return self._call(lambda: [o.rest_body(with_time=True) for o in self.venue.accounts[api_key].orders.values()])

    def state(self) -> dict:
        return self._call(self._state)

    def book(self, symbol: str, depth: int = 5) -> dict:
        def snap():
            st = self.streams[symbol.upper()]
            book = st.market.book
            return {"lastUpdateId": st.last_u, "bids": book.levels(BID, depth), "asks": book.levels(ASK, depth)}
        return self._call(snap)

    # -- clock ----------------------------------------------------------------------------------------------
    def now_ms(self) -> int:
        skew = self.faults.armed("clock_skew") if self.faults.faults else None
        return int(time.time() * 1000 + (skew["ms"] if skew else 0.0))

    # -- market replay --------------------------------------------------------------------------------------
    def _reset_book(self, st: _SymbolStream) -> None:
        """Bring the book to the feed's snapshot, publishing the difference as one diff (chain stays intact)."""
        book = st.market.book
        target = {(side, tick): lots for side, tick, lots in st.feed.snapshot}
        changes = [(side, tick, 0) for side in (BID, ASK) for tick in book.side(side) if (side, tick) not in target]
        changes += [(side, tick, lots) for (side, tick), lots in target.items() if book.qty(side, tick) != lots]
        self._apply_depth(st, changes)

    async def _replay(self, st: _SymbolStream) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            speed = self.config.speed
            for n, (offset, item) in enumerate(st.feed.iter_items()):
                delay = start + offset / 1e9 / speed - loop.time() if speed > 0 else 0.0
                if delay > 0.0005:
                    await asyncio.sleep(delay)
                elif n % 64 == 0:
                    await asyncio.sleep(0)  # behind schedule or unpaced: still let clients be served
                kind = item[0]
                if kind == "bbo":
                    self._apply_bbo(st, item)
                elif kind == "trade":
                    self._apply_trade(st, item[1], item[2], item[3])
                else:
                    self._apply_depth(st, item[1])
                st.feed_ns = offset
            if not self.config.loop:
                return
            await asyncio.sleep(0)
            st.loops += 1
            self._reset_book(st)

    def _apply_depth(self, st: _SymbolStream, changes) -> None:
        market, book = st.market, st.market.book
        venue = self.venue
        prev_bb, prev_ba = book.best_bid, book.best_ask
        effective = []
        for side, tick, lots in changes:
            prev = book.set(side, tick, lots)
            if prev != lots:
                effective.append((side, tick, lots))
        # newest information wins: levels of the other side that the update crossed are gone
        bb, ba = book.best_bid, book.best_ask
        if bb is not None and ba is not None and bb >= ba:
            stale = ASK if bb != prev_bb else BID  # the side this update did not move is the stale one
            while book.best_bid is not None and book.best_ask is not None and book.best_bid >= book.best_ask:
                tick = book.best_ask if stale == ASK else book.best_bid
                book.set(stale, tick, 0)
                effective.append((stale, tick, 0))
        if not effective:
            return
        self._emit_depth(st, effective)
        venue.on_depth(market, effective)  # the matching core follows the book (queue positions, fills)
        self._emit_bbo(st)

    def _apply_bbo(self, st: _SymbolStream, item) -> None:
        _, bt, bq, at, aq = item
        book = st.market.book
        # levels better than the new touch are gone (usually none or a few ticks away)
        changes = [(BID, t, 0) for t in _ticks_between(book.bids, bt + 1, book.best_bid)]
        changes += [(ASK, t, 0) for t in _ticks_between(book.asks, book.best_ask, at - 1)]
        changes += [(BID, bt, bq), (ASK, at, aq)]
        self._apply_depth(st, changes)

    def _emit_depth(self, st: _SymbolStream, effective) -> None:
        first = st.last_u + 1
        st.last_u += len(effective)
        for interval, pending in st.pending.items():
            if not pending:
                st.pending_first[interval] = first
            for side, tick, lots in effective:
                pending[(side, tick)] = lots
        stream = st.name + "@depth@0ms"
        if self.hub.has(stream):
            if self.faults.faults and self.faults.fire("depth_gap", stream=stream) is not None:
                return
            now = self.now_ms()
            spec = st.market.spec
            self.hub.publish(stream, {
                "e": wire.DEPTH_UPDATE, "E": now, "T": now, "s": spec.symbol, "U": first, "u": st.last_u, "pu": first - 1,
                "b": [[spec.fmt_price(t), spec.fmt_qty(q)] for s, t, q in effective if s == BID],
                "a": [[spec.fmt_price(t), spec.fmt_qty(q)] for s, t, q in effective if s == ASK]})
            self.messages_published += 1

    def _emit_bbo(self, st: _SymbolStream) -> None:
        book = st.market.book
        if book.best_bid is None or book.best_ask is None:
            return
        bbo = (book.best_bid, book.bids[book.best_bid], book.best_ask, book.asks[book.best_ask])
        if bbo == st.last_bbo:
            return
        st.last_bbo = bbo
        stream = st.name + "@bookTicker"
        if self.hub.has(stream):
            spec = st.market.spec
            now = self.now_ms()
            self.hub.publish(stream, {"e": wire.BOOK_TICKER, "u": st.last_u, "E": now, "T": now, "s": spec.symbol,
                                      "b": spec.fmt_price(bbo[0]), "B": spec.fmt_qty(bbo[1]),
                                      "a": spec.fmt_price(bbo[2]), "A": spec.fmt_qty(bbo[3])})
            self.messages_published += 1

    def _apply_trade(self, st: _SymbolStream, tick: int, lots: int, buyer_is_maker: bool) -> None:
        market = st.market
        if market.resting:
            self.venue.on_trade(market, tick, lots, buyer_is_maker)
        st.trade_id += 1
        st.tape.add(st.trade_id, tick, lots, self.now_ms(), buyer_is_maker)
        has_trade, has_agg = self.hub.has(st.name + "@trade"), self.hub.has(st.name + "@aggTrade")
        if not (has_trade or has_agg):
            return
        spec = market.spec
        now = self.now_ms()
        px, qty = spec.fmt_price(tick), spec.fmt_qty(lots)
        if has_trade:
            if self.faults.faults and self.faults.fire("insurance_fund_trade") is not None:
                self.hub.publish(st.name + "@trade", {"e": "trade", "E": now, "T": now, "s": spec.symbol, "t": 0,
                                                      "p": px, "q": qty, "X": "INSURANCE_FUND", "m": buyer_is_maker})
            self.hub.publish(st.name + "@trade", {"e": "trade", "E": now, "T": now, "s": spec.symbol,
                                                  "t": st.trade_id, "p": px, "q": qty, "X": "MARKET",
                                                  "m": buyer_is_maker})
            self.messages_published += 1
        if has_agg:
            self.hub.publish(st.name + "@aggTrade", {"e": "aggTrade", "E": now, "s": spec.symbol, "a": st.trade_id,
                                                     "p": px, "q": qty, "f": st.trade_id, "l": st.trade_id, "T": now,
                                                     "m": buyer_is_maker})
            self.messages_published += 1

    async def _flush_loop(self, interval: int) -> None:
        """Coalesced diff depth (`@depth@100ms`, `@depth` = 250 ms, `@depth@500ms`) and partial books."""
        names = [k for k, v in DEPTH_INTERVALS.items() if v == interval]
        while True:
            await asyncio.sleep(interval / 1000.0)
            for st in self.streams.values():
                streams = [f"{st.name}@depth@{n}" if n else f"{st.name}@depth" for n in names]
                diff_subs = [s for s in streams if self.hub.has(s)]
                if not diff_subs:
                    st.pending.pop(interval, None)
                pending = st.pending.get(interval)
                spec = st.market.spec
                now = self.now_ms()
                if pending:
                    first = st.pending_first[interval]
                    body = orjson.dumps({
                        "e": wire.DEPTH_UPDATE, "E": now, "T": now, "s": spec.symbol, "U": first, "u": st.last_u,
                        "pu": st.last_flushed[interval],
                        "b": [[spec.fmt_price(t), spec.fmt_qty(q)] for (s, t), q in pending.items() if s == BID],
                        "a": [[spec.fmt_price(t), spec.fmt_qty(q)] for (s, t), q in pending.items() if s == ASK]})
                    st.last_flushed[interval] = st.last_u
                    pending.clear()
                    for s in diff_subs:
                        if not (self.faults.faults and self.faults.fire("depth_gap", stream=s) is not None):
                            self.hub.publish(s, body)
                            self.messages_published += 1
                for levels in (5, 10, 20):
                    for n in names:
                        stream = f"{st.name}@depth{levels}@{n}" if n else f"{st.name}@depth{levels}"
                        if self.hub.has(stream):
                            book = st.market.book
                            self.hub.publish(stream, {
                                "e": wire.DEPTH_UPDATE, "E": now, "T": now, "s": spec.symbol, "U": st.last_u,
                                "u": st.last_u, "pu": st.last_u,
                                "b": [[spec.fmt_price(t), spec.fmt_qty(q)] for t, q in book.levels(BID, levels)],
                                "a": [[spec.fmt_price(t), spec.fmt_qty(q)] for t, q in book.levels(ASK, levels)]})

    async def _housekeeping(self) -> None:
        """Mark price streams, listen-key expiry, server pings."""
        loop = asyncio.get_running_loop()
        next_mark = next_ping = next_kline = loop.time()
        while True:
            await asyncio.sleep(0.05)
            now = loop.time()
            if self.countdowns:
                fire_countdowns(self)
            if now >= next_kline:
                next_kline = now + 0.25
                self._emit_klines()
            if now >= next_mark:
                next_mark = now + self.config.mark_price_interval_s
                self._emit_tickers()
                for st in self.streams.values():
                    for stream in (st.name + "@markPrice@1s", st.name + "@markPrice"):
                        if self.hub.has(stream):
                            spec, mark = st.market.spec, st.market.mark_price()
                            ms = self.now_ms()
                            self.hub.publish(stream, {
                                "e": wire.MARK_PRICE_UPDATE, "E": ms, "s": spec.symbol, "p": money(mark),
                                "i": money(mark), "P": money(mark), "r": FUNDING_RATE,
                                "T": (ms // 28_800_000 + 1) * 28_800_000})
            for key, (account, expiry) in list(self.listen_keys.items()):
                if now >= expiry:
                    self._expire_listen_key(key)
            if now >= next_ping:
                next_ping = now + self.config.ping_interval
                for conn in list(self._ws_all):
                    if conn.closed or conn.half_open:
                        continue
                    if now - conn.last_pong > self.config.pong_timeout:
                        log.info("closing WebSocket: no pong for %.1f s", now - conn.last_pong)
                        conn.closed = True
                        loop.create_task(conn.ws.close(code=1008, message=b"pong timeout"))
                    else:
                        loop.create_task(self._ping(conn))

    def _emit_klines(self) -> None:
        """`<symbol>@kline_<interval>` every 250 ms while the candle changes (market-data/websocket-api/
        Kline-Candlestick-Streams)."""
        for st in self.streams.values():
            for interval, ms in INTERVAL_MS.items():
                stream = f"{st.name}@kline_{interval}"
                if not self.hub.has(stream) or st.kline_sent.get(stream) == st.tape.version:
                    continue
                candles = st.tape.candles(ms, limit=1)
                if not candles:
                    continue
                st.kline_sent[stream] = st.tape.version
                c, spec, now = candles[0], st.market.spec, self.now_ms()
                row = kline_row(spec, c, ms)
                self.hub.publish(stream, {"e": "kline", "E": now, "s": spec.symbol, "k": {
                    "t": row[0], "T": row[6], "s": spec.symbol, "i": interval, "f": c.first_id, "L": c.last_id,
                    "o": row[1], "c": row[4], "h": row[2], "l": row[3], "v": row[5], "n": c.count,
                    "x": now > row[6], "q": row[7], "V": row[9], "Q": row[10], "B": "0"}})

    def _emit_tickers(self) -> None:
        """`<symbol>@ticker` and `@miniTicker` once per mark-price interval (market-data/websocket-api/
        Individual-Symbol-Ticker-Streams, Individual-Symbol-Mini-Ticker-Stream)."""
        for st in self.streams.values():
            full, mini = st.name + "@ticker", st.name + "@miniTicker"
            if not (self.hub.has(full) or self.hub.has(mini)):
                continue
            t, now = ticker_24h_row(self, st), self.now_ms()
            if self.hub.has(full):
                self.hub.publish(full, {"e": "24hrTicker", "E": now, "s": t["symbol"], "p": t["priceChange"],
                                        "P": t["priceChangePercent"], "w": t["weightedAvgPrice"], "c": t["lastPrice"],
                                        "Q": t["lastQty"], "o": t["openPrice"], "h": t["highPrice"],
                                        "l": t["lowPrice"], "v": t["volume"], "q": t["quoteVolume"],
                                        "O": t["openTime"], "C": t["closeTime"], "F": t["firstId"],
                                        "L": t["lastId"], "n": t["count"]})
            if self.hub.has(mini):
                self.hub.publish(mini, {"e": "24hrMiniTicker", "E": now, "s": t["symbol"], "c": t["lastPrice"],
                                        "o": t["openPrice"], "h": t["highPrice"], "l": t["lowPrice"],
                                        "v": t["volume"], "q": t["quoteVolume"]})

    @staticmethod
    async def _ping(conn: Conn) -> None:
        try:
            await conn.ws.ping()
        except (ConnectionError, RuntimeError):
            conn.closed = True

    # -- user stream ----------------------------------------------------------------------------------------
    def _notify_user(self, account: Account, payload: dict) -> None:
        conns = self.user_conns.get(account.api_key)
        if not conns:
            return
        data = orjson.dumps(payload)
        key, event = self._listen_key_of(account), payload.get("e")
        for conn in tuple(conns):
            if conn.user_events is None or event in conn.user_events:
                conn.push(key, data)
        self.messages_published += 1

    def _listen_key_of(self, account: Account) -> str | None:
        for key, (acc, _) in self.listen_keys.items():
            if acc is account:
                return key
        return None

    def _expire_listen_key(self, key: str) -> None:
        account, _ = self.listen_keys.pop(key)
        log.info("listenKey %s... expired", key[:4])
        payload = orjson.dumps({"e": wire.LISTEN_KEY_EXPIRED, "E": self.now_ms(), "listenKey": key})
        loop = asyncio.get_running_loop()
        for conn in tuple(self.user_conns.get(account.api_key, ())):
            if key in conn.streams:
                conn.push(key, payload)
                loop.create_task(self._close_soon(conn))

    @staticmethod
    async def _close_soon(conn: Conn) -> None:
        while conn.queue and not conn.closed:
            await asyncio.sleep(0.01)
        conn.closed = True
        await conn.ws.close(code=1000, message=b"listenKey expired")

    # -- faults ---------------------------------------------------------------------------------------------
    def _inject(self, kind: str, params: dict) -> None:
        if kind not in FAULT_KINDS:
            raise ConfigError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
        if kind == "listen_key_expire":
            self.faults.add(kind, **params)
            self.faults.fire(kind)
            for key in list(self.listen_keys):
                self._expire_listen_key(key)
        elif kind in ("external_order", "liquidation"):
            self.faults.add(kind, **params)
            fired = self.faults.fire(kind)
            self._foreign_order(kind, fired)
        else:
            self.faults.add(kind, **params)

    def _foreign_order(self, kind: str, params: dict) -> None:
        venue = self.venue
        account = venue.accounts.get(params["api_key"]) if params["api_key"] else next(iter(venue.accounts.values()), None)
        if account is None:
            log.warning("fault %s: no account", kind)
            return
        symbol = params["symbol"] or next(iter(venue.markets))
        spec = venue.markets[symbol].spec
        pos = account.position(symbol)
        if kind == "liquidation":
            if pos.lots == 0:
                log.warning("fault liquidation: %s has no %s position", account.api_key[:4], symbol)
                return
            side, lots = ("SELL" if pos.lots > 0 else "BUY"), abs(pos.lots)
            cid = f"{wire.EXCHANGE_ORDER_PREFIXES[0]}{self.now_ms()}"  # a liquidation's client id
        else:
            side, lots, cid = "BUY", max(1, round(spec.min_qty / spec.lot_size)), f"web_{secrets.token_hex(8)}"
        order, _ = venue.place_order(account, {"symbol": symbol, "side": side, "type": "MARKET",
                                               "quantity": spec.fmt_qty(lots), "newClientOrderId": cid,
                                               "reduceOnly": "true" if kind == "liquidation" else "false"})
        if kind == "liquidation" and order.executed:
            # the public side of a liquidation (websocket-market-streams/Liquidation-Order-Streams)
            now = self.now_ms()
            avg = order.avg_price()
            event = {"e": wire.FORCE_ORDER, "E": now, "o": {
                "s": symbol, "S": side, "o": "LIMIT", "f": "IOC", "q": spec.fmt_qty(order.qty),
                "p": f"{avg:.{spec.price_decimals}f}", "ap": f"{avg:.{spec.price_decimals}f}", "X": order.status,
                "l": spec.fmt_qty(order.executed), "z": spec.fmt_qty(order.executed), "T": now}}
            self.hub.publish(f"{symbol.lower()}@forceOrder", event)
            self.hub.publish("!forceOrder@arr", event)

    # -- REST -----------------------------------------------------------------------------------------------
    def _state(self) -> dict:
        out = self.venue.state()
        out["listen_keys"] = len(self.listen_keys)
        out["ws_connections"] = len(self._ws_all)
        out["messages_published"] = self.messages_published
        out["books"] = {s: {"last_update_id": st.last_u, "best_bid": st.market.book.best_bid,
                            "best_ask": st.market.book.best_ask, "feed_loops": st.loops,
                            "feed_s": st.feed_ns / 1e9}
                        for s, st in self.streams.items()}
        out["faults_armed"] = [f.kind for f in self.faults.faults]
        return out

    def _json(self, body, status: int = 200, headers: dict | None = None) -> web.Response:
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                            headers=headers)

    def _error(self, err: ApiError, headers: dict | None = None) -> web.Response:
        return self._json(err.body(), err.http, headers)

    async def _handle_rest(self, request: web.Request) -> web.Response:
        path, method = request.path, request.method
        if path.startswith("/_emu/"):
            return await self._admin(request)
        key = (method, path)
        limit = request.query.get("limit", "500")
        if key == ("GET", "/fapi/v1/depth"):
            weight = _depth_weight(int(limit) if limit.isdigit() else 500)
        elif path in ("/fapi/v1/klines", "/fapi/v1/continuousKlines") and method == "GET":
            weight = _klines_weight(int(limit) if limit.isdigit() else 500)
        elif method == "GET" and path in WEIGHTS_ALL_SYMBOLS and not request.query.get("symbol"):
            weight = WEIGHTS_ALL_SYMBOLS[path]
        elif key in WEIGHTS:
            weight = WEIGHTS[key]
        elif key == ("GET", "/fapi/v1/openOrders"):
            weight = 1
        else:
            return self._error(ApiError(-5000, f"Path {path}, Method {method} is invalid", 404))
        faults = self.faults
        headers = {}
        limited = self._rate_limit(weight)
        headers["X-MBX-USED-WEIGHT-1M"] = str(self._weight[1])
        if limited is not None:
            return limited
        if faults.faults:
            early = await self._rest_faults_before(path)
            if early is not None:
                return early
        body = await request.text() if request.can_read_body else ""
        if self.config.order_latency_ms and path in ("/fapi/v1/order", "/fapi/v1/batchOrders") and method != "GET":
            await asyncio.sleep(self.config.order_latency_ms / 1000.0)
        try:
            result = await self._dispatch(request, method, path, body, headers)
            response = self._json(result, headers=headers)
        except ApiError as err:
            response = self._error(err, headers)
        if faults.faults:
            late = await self._rest_faults_after(path)
            if late is not None:
                return late
        return response

    def _rate_limit(self, weight: int) -> web.Response | None:
        cfg = self.config
        now = time.monotonic()
        if now < self._ban_until:
            retry = math.ceil(self._ban_until - now)
            banned_ms = int((time.time() + retry) * 1000)
            return self._error(ApiError(-1003, f"Way too many requests; IP(127.0.0.1) banned until {banned_ms}. "
                                               "Please use the websocket for live updates to avoid bans.", 418),
                               {"Retry-After": str(retry)})
        if now < self._limited_until:
            self._strikes += 1
            if self._strikes >= cfg.ban_after:
                self._ban_until = now + cfg.ban_s
                log.warning("rate limit: IP banned for %.0f s (418)", cfg.ban_s)
                return self._rate_limit(weight)
            return self._too_many(math.ceil(self._limited_until - now))
        window = cfg.weight_window_s
        start = math.floor(time.time() / window) * window
        if self._weight[0] != start:
            self._weight = [start, 0]
        self._weight[1] += weight
        if self._weight[1] > cfg.weight_limit:
            self._limited_until = now + (start + window - time.time())
            self._strikes = 0
            log.warning("rate limit: weight %d > %d, answering 429", self._weight[1], cfg.weight_limit)
            return self._too_many(math.ceil(self._limited_until - now))
        return None

    def _too_many(self, retry: int) -> web.Response:
        return self._error(ApiError(-1003, f"Too many requests; current limit of IP(127.0.0.1) is "
                                           f"{self.config.weight_limit} requests per minute. Please use the "
                                           "websocket for live updates to avoid polling the API.", 429),
                           {"Retry-After": str(max(1, retry)), "X-MBX-USED-WEIGHT-1M": str(self._weight[1])})

    def _count_orders(self, account: Account, n: int, headers: dict) -> None:
        cfg = self.config
        now = time.time()
        counts = self._order_counts.setdefault(account.api_key, [0.0, 0, 0.0, 0])
        w10, w60 = 10.0 * cfg.order_window_scale, 60.0 * cfg.order_window_scale
        s10, s60 = math.floor(now / w10) * w10, math.floor(now / w60) * w60
        if counts[0] != s10:
            counts[0:2] = [s10, 0]
        if counts[2] != s60:
            counts[2:4] = [s60, 0]
        counts[1] += n
        counts[3] += n
        headers["X-MBX-ORDER-COUNT-10S"] = str(counts[1])
        headers["X-MBX-ORDER-COUNT-1M"] = str(counts[3])
        if counts[1] > cfg.order_limit_10s:
            raise ApiError(-1015, f"Too many new orders; current limit is {cfg.order_limit_10s} orders per TEN_SECONDS.", 429)
        if counts[3] > cfg.order_limit_1m:
            raise ApiError(-1015, f"Too many new orders; current limit is {cfg.order_limit_1m} orders per MINUTE.", 429)

    async def _rest_faults_before(self, path: str) -> web.Response | None:
        faults = self.faults
        for kind, status in (("rest_418", 418), ("rest_429", 429)):
            p = faults.fire(kind, path=path)
            if p is not None:
                msg = "Way too many requests; IP banned." if status == 418 else "Too many requests."
                return self._error(ApiError(-1003, msg, status), {"Retry-After": str(p["retry_after"])})
        p = faults.fire("rest_error", path=path)
        if p is not None:
            return self._error(ApiError(int(p["code"]), p["msg"] or f"injected error {p['code']}", int(p["status"])))
        p = faults.armed("rest_5xx", path=path)
        if p is not None and p["when"] == "before" and faults.fire("rest_5xx", path=path) is not None:
            return self._error(ApiError(UNKNOWN_STATUS.code, UNKNOWN_STATUS.msg, int(p["status"])))
        p = faults.armed("rest_timeout", path=path)
        if p is not None and p["when"] == "before" and faults.fire("rest_timeout", path=path) is not None:
            await asyncio.sleep(p["seconds"])
            return self._error(UNKNOWN_STATUS)
        return None

    async def _rest_faults_after(self, path: str) -> web.Response | None:
        faults = self.faults
        p = faults.armed("rest_5xx", path=path)
        if p is not None and p["when"] == "after" and faults.fire("rest_5xx", path=path) is not None:
            return self._error(ApiError(UNKNOWN_STATUS.code, UNKNOWN_STATUS.msg, int(p["status"])))
        p = faults.armed("rest_timeout", path=path)
        if p is not None and p["when"] == "after" and faults.fire("rest_timeout", path=path) is not None:
            await asyncio.sleep(p["seconds"])
            return self._error(UNKNOWN_STATUS)
        p = faults.armed("rest_delay", path=path)
        if p is not None:
            jitter = faults.rng.uniform(0, p["jitter_ms"]) if p["jitter_ms"] else 0.0
            await asyncio.sleep((p["ms"] + jitter) / 1000.0)
        return None

    def _auth(self, request: web.Request, body: str, signed: bool) -> Account:
        api_key = request.headers.get("X-MBX-APIKEY")
        if not api_key:
            raise ApiError(-2014, "API-key format invalid.", 401)
        account = self.venue.accounts.get(api_key)
        if account is None:
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if not signed:
            return account
        # Binance signs the query string as sent (percent-encoded), not its decoded form
        query = request.rel_url.raw_query_string
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        signature = params.get("signature")
        if not signature:
            raise ApiError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        if not signing.valid(account.secret, signing.rest_payload(query, body), signature):
            raise ApiError(-1022, "Signature for this request is not valid.")
        self.check_timestamp(params)
        return account

    def check_timestamp(self, params: dict) -> None:
        """`timestamp` within `recvWindow` (≤ max_recv_window) and at most 1 s ahead of the server clock."""
        try:
            ts = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", 5000))
        except (KeyError, ValueError):
            raise ApiError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.") from None
        if recv_window > self.config.max_recv_window or recv_window <= 0:
            raise ApiError(-1131, f"recvWindow must be less than {self.config.max_recv_window}.")
        now = self.now_ms()
        if ts > now + 1000:
            raise ApiError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > recv_window:
            raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")

    async def _dispatch(self, request: web.Request, method: str, path: str, body: str, headers: dict):
        venue = self.venue
        if path == "/fapi/v1/ping":
            return {}
        if path == "/fapi/v1/time":
            return {"serverTime": self.now_ms()}
        if path == "/fapi/v1/exchangeInfo":
            return self._exchange_info()
        if path == "/fapi/v1/depth":
            return self._depth(request.query)
        if path == "/fapi/v1/listenKey":
            return self._listen_key(method, self._auth(request, body, signed=False))
        route = ROUTES.get((method, path))
        if route is not None and route[1] == "none":
            return route[2](self, None, dict(request.query), Call(method, path, headers))
        account = self._auth(request, body, signed=True)
        params = dict(parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        if route is not None:
            return route[2](self, account, params, Call(method, path, headers))
        if path == "/fapi/v1/order":
            if method == "POST":
                self._count_orders(account, 1, headers)
                return venue.place_order(account, params)[1]
            if method == "DELETE":
                return venue.cancel_order(account, params)
            if method == "PUT":
                self._count_orders(account, 1, headers)
                return venue.modify_order(account, params)
            return venue.query_order(account, params)
        if path == "/fapi/v1/batchOrders":
            return self._batch(account, params, headers)
        if path == "/fapi/v1/openOrders":
            symbol = params.get("symbol")
            if symbol:
                venue.market(symbol)
            return [o.rest_body(with_time=True) for o in account.open_orders(symbol.upper() if symbol else None)]
        if path == "/fapi/v1/allOpenOrders":
            return venue.cancel_all(account, params)
        raise ApiError(-5000, f"Path {path}, Method {method} is invalid", 404)

    def _batch(self, account: Account, params: dict, headers: dict) -> list:
        raw = params.get("batchOrders")
        try:
            orders = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            orders = None
        if not isinstance(orders, list) or not orders or not all(isinstance(o, dict) for o in orders):
            raise ApiError(-1102, "Mandatory parameter 'batchOrders' was not sent, was empty/null, or malformed.")
        if len(orders) > 5:
            raise ApiError(-4080, "The number of batch orders exceeds the limit of 5.")
        self._count_orders(account, len(orders), headers)
        out = []
        for o in orders:
            try:
                out.append(self.venue.place_order(account, {k: str(v) for k, v in o.items()})[1])
            except ApiError as err:
                out.append(err.body())
        return out

    def _listen_key(self, method: str, account: Account) -> dict:
        current = self._listen_key_of(account)
        validity = self.config.listen_key_validity_s
        if method == "POST":
            key = current or secrets.token_urlsafe(48)[:64]
            self.listen_keys[key] = (account, asyncio.get_running_loop().time() + validity)
            return {"listenKey": key}
        if method == "PUT":
            if current is None or (self.faults.faults and self.faults.fire("listen_key_keepalive_fail") is not None):
                raise ApiError(-1125, "This listenKey does not exist.")
            self.listen_keys[current] = (account, asyncio.get_running_loop().time() + validity)
            return {"listenKey": current}
        if current is not None:
            self.listen_keys.pop(current)
            for conn in tuple(self.user_conns.get(account.api_key, ())):
                if current in conn.streams:
                    asyncio.get_running_loop().create_task(self._close_soon(conn))
        return {}

    def _exchange_info(self) -> dict:
        symbols = []
        for st in self.streams.values():
            s: SymbolSpec = st.market.spec
            symbols.append({
                "symbol": s.symbol, "pair": s.symbol, "contractType": "PERPETUAL", "status": "TRADING",
                "baseAsset": s.base_asset, "quoteAsset": s.quote_asset, "marginAsset": "USDT",
                "pricePrecision": s.price_decimals, "quantityPrecision": s.qty_decimals,
                "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
                # market-data/rest-api/Exchange-Information; Binance's full lists, although the emulator takes
                # LIMIT/MARKET and GTC/IOC/FOK/GTX only (conditional types -4120, others -1116, GTD -1115)
                "onboardDate": 1569398400000, "deliveryDate": 4133404800000, "settlePlan": 0,
                "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000", "triggerProtect": "0.0500",
                "liquidationFee": "0.012500", "marketTakeBound": "0.05",
                "orderTypes": list(wire.ORDER_TYPES), "timeInForce": list(wire.TIME_IN_FORCE),
                "filters": s.filters(),
            })
        return {"timezone": "UTC", "serverTime": self.now_ms(), "futuresType": "U_MARGINED",
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                     "limit": self.config.weight_limit},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                     "limit": self.config.order_limit_10s},
                    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1,
                     "limit": self.config.order_limit_1m}],
                "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True}], "symbols": symbols}

    def _depth(self, query) -> dict:
        st = self.streams.get(str(query.get("symbol", "")).upper())
        if st is None:
            if not query.get("symbol"):
                raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
            raise ApiError(-1121, "Invalid symbol.")
        limit_text = query.get("limit", "500")
        if limit_text not in ("5", "10", "20", "50", "100", "500", "1000"):
            raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        limit = int(limit_text)
        spec, book = st.market.spec, st.market.book
        last_id = snapshot_id(st.last_u)
        stale = self.faults.fire("stale_snapshot") if self.faults.faults else None
        if stale is not None:
            last_id -= int(stale["lag"])
        now = self.now_ms()
        return {"lastUpdateId": last_id, "E": now, "T": now,
                "bids": [[spec.fmt_price(t), spec.fmt_qty(q)] for t, q in book.levels(BID, limit)],
                "asks": [[spec.fmt_price(t), spec.fmt_qty(q)] for t, q in book.levels(ASK, limit)]}

    async def _admin(self, request: web.Request) -> web.Response:
        """Control plane for tests (state, faults, ledger, accounts); see admin.py for who may use it."""
        path, method = request.path, request.method
        refused = refusal(method, request.headers, self.rest_port, self.config.admin_token)
        if refused is not None:
            log.warning("admin request %s %s refused (%d): %s", method, path, *refused)
            return self._json({"error": refused[1]}, refused[0])
        try:
            if path == "/_emu/state" and method == "GET":
                return self._json(self._state())
            if path == "/_emu/fault" and method == "POST":
                spec = await self._admin_body(request)
                kind = spec.pop("kind")
                self._inject(kind, spec)
                return self._json({"armed": kind})
            if path == "/_emu/fault" and method == "DELETE":
                self._clear_faults(request.query.get("kind"))
                return self._json({})
            if path == "/_emu/faults" and method == "GET":
                return self._json(self.faults.log)
            if path == "/_emu/ledger" and method == "GET":
                key = request.query.get("api_key")
                accounts = [self.venue.accounts[key]] if key else list(self.venue.accounts.values())
                return self._json([dict(e, api_key=a.api_key) for a in accounts for e in a.ledger])
            if path == "/_emu/account" and method == "POST":
                spec = await self._admin_body(request)
                self.venue.add_account(spec["api_key"], spec["secret"], float(spec.get("balance", 10_000.0)),
                                       float(spec.get("maker_fee", self.config.maker_fee)),
                                       float(spec.get("taker_fee", self.config.taker_fee)), spec.get("leverage"))
                return self._json({"api_key": spec["api_key"]})
        except AccountExists as exc:
            return self._json({"error": str(exc)}, 409)
        except (ConfigError, KeyError, ValueError, TypeError) as exc:
            return self._json({"error": str(exc)}, 400)
        return self._json({"error": f"unknown admin endpoint {method} {path}"}, 404)

    @staticmethod
    async def _admin_body(request: web.Request) -> dict:
        try:
            spec = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise ValueError("the body is not valid JSON") from None
        if not isinstance(spec, dict):
            raise ValueError("the body must be a JSON object")
        return spec

    # -- WebSocket ------------------------------------------------------------------------------------------
    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        """`[/public|/market|/private]` + `/ws[/<streams>]` (raw) or `/stream?streams=` (combined); user data by
        listen key in the path, in `?listenKey=` (with an optional `events=` filter) or by SUBSCRIBE."""
        route = request.match_info.get("route")
        combined = request.path.endswith("/stream")
        raw = request.query.get("streams", "") if combined else request.match_info.get("streams", "")
        names = [n for n in raw.split("/") if n]
        names += [k for k in request.query.get("listenKey", "").split("/") if k]
        user_keys = [n for n in names if n in self.listen_keys]
        channel = "user" if user_keys else "market"
        stale_keys = [n for n in names if "@" not in n and n not in self.listen_keys and len(n) >= 32]
        if stale_keys and not user_keys and len(names) == 1:
            # an unknown or expired listen key is refused (Binance closes such connections)
            return web.Response(status=400, text='{"code":-1125,"msg":"This listenKey does not exist."}',
                                content_type="application/json")
        loop = asyncio.get_running_loop()
        if loop.time() < self.refuse_until.get(channel, 0.0) or loop.time() < self.refuse_until.get("all", 0.0):
            return web.Response(status=503, text="connection refused by fault injection")
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 16)
        await ws.prepare(request)
        conn = Conn(ws, channel, combined, self.faults, self.config.ws_queue_limit, route)
        events = request.query.get("events")
        if events:
            conn.user_events = {e for e in events.replace(",", "/").split("/") if e}
        self._ws_all.add(conn)
        self._subscribe(conn, [n for n in names if n not in self.listen_keys])
        for key in user_keys:
            self._attach_user(conn, key)
        writer = loop.create_task(conn.writer())
        lifetime = None
        if self.config.max_connection_s:
            lifetime = loop.call_later(self.config.max_connection_s,
                                       lambda: loop.create_task(ws.close(code=1000, message=b"24h limit")))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    if not conn.half_open:
                        await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    conn.last_pong = loop.time()
                elif msg.type == WSMsgType.TEXT and not conn.half_open:
                    reply = self._ws_command(conn, msg.data)
                    if reply is not None:
                        conn.push(None, orjson.dumps(reply))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            conn.closed = True
            conn.wakeup.set()
            writer.cancel()
            if lifetime:
                lifetime.cancel()
            self.hub.drop(conn)
            self._ws_all.discard(conn)
            for account in conn.accounts.values():
                self.user_conns.get(account.api_key, set()).discard(conn)
            if conn.refuse_s:
                self.refuse_until[conn.channel] = loop.time() + conn.refuse_s
        return ws

    async def _handle_ws_api(self, request: web.Request) -> web.StreamResponse:
        return await ws_api.serve(self, request)

    def _attach_user(self, conn: Conn, key: str) -> None:
        allowed = "private" in ROUTE_ALLOWS[conn.route]
        conn.streams.add(key)
        if not allowed:
            log.warning("listenKey %s... on a /%s connection: Binance sends user data on /private only; nothing "
                        "will arrive", key[:4], conn.route)
            return
        if conn.route is None:
            log.info("listenKey %s... on an unrouted connection: Binance serves user data on /private only "
                     "(the emulator still delivers it here)", key[:4])
        account = self.listen_keys[key][0]
        conn.accounts[key] = account
        if not any("@" in s for s in conn.streams):
            conn.channel = "user"
        self.user_conns.setdefault(account.api_key, set()).add(conn)

    def _subscribe(self, conn: Conn, names: list[str]) -> None:
        """Subscribe, and start accumulating coalesced diff depth at once so the first event misses nothing.
        A stream of another route is accepted but never fed, as Binance does (with a warning here)."""
        allowed = ROUTE_ALLOWS[conn.route]
        routed = []
        for name in names:
            if "@" in name and stream_route(name) not in allowed:
                log.warning("stream %s belongs to /%s; Binance pushes nothing for it on %s", name,
                            stream_route(name), f"/{conn.route}" if conn.route else "an unrouted connection")
                conn.streams.add(normalize_stream(name))
            else:
                routed.append(name)
        names = routed
        self.hub.subscribe(conn, names)
        for name in names:
            symbol, _, rest = name.partition("@")
            st = self.streams.get(symbol.upper())
            if st is None or not (rest == "depth" or rest.startswith("depth@")):
                continue
            interval = DEPTH_INTERVALS.get(rest.partition("@")[2])
            if interval and interval not in st.pending:
                st.pending[interval] = {}
                st.last_flushed.setdefault(interval, st.last_u)

    def _ws_command(self, conn: Conn, text: str) -> dict | None:
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            return {"error": {"code": 3, "msg": "Invalid JSON: malformed request"}, "id": None}
        if not isinstance(req, dict):
            return {"error": {"code": 3, "msg": "Invalid JSON: expected an object"}, "id": None}
        rid = req.get("id")
        if not isinstance(rid, (int, str)) or isinstance(rid, bool):
            return {"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}, "id": rid}
        method, params = req.get("method"), req.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                return {"error": {"code": 2, "msg": "Invalid request: 'params' must be a list of strings"}, "id": rid}
            keys = [p for p in params if p in self.listen_keys]
            streams = [p for p in params if p not in self.listen_keys]
            if method == "SUBSCRIBE":
                self._subscribe(conn, streams)
                for key in keys:
                    self._attach_user(conn, key)
            else:
                self.hub.unsubscribe(conn, streams)
                for key in keys:
                    conn.streams.discard(key)
                    account = conn.accounts.pop(key, None)
                    if account is not None:
                        self.user_conns.get(account.api_key, set()).discard(conn)
            return {"result": None, "id": rid}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(s for s in conn.streams if "@" in s), "id": rid}
        if method == "SET_PROPERTY":
            return {"result": None, "id": rid}
        if method == "GET_PROPERTY":
            return {"result": conn.combined, "id": rid}
        return {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid}

