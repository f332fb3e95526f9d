"""Paper trading: the binancefutures connector on the live market, with orders filled on this machine.

A `[paper]` table in the connector's TOML turns it on. Market data comes from `stream_url` / `api_url` exactly
as in live mode (mainnet, testnet or the emulator); every signed request (orders, positions, account) is
answered by an in-process Binance venue, the emulator's `Venue`: Binance's filters and error codes (-5022 for a
crossing GTX, -2019 insufficient margin, ...), its order and account bookkeeping, and its matching, which is
the backtest's exchange core (`kernels.core.ExchangeCore`) fed with the connector's own book and trades. The
venue's user-stream events go through the connector's ordinary user-stream code, so the bot gets the same
order updates, positions and error kinds as live. No API key is needed and none is ever sent.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any

import aiohttp
import orjson

from .._toml import read_toml
from ..binance.symbols import SymbolSpec
from ..emulator.market import spec_for
from ..emulator.matching import ApiError, Venue
from ..errors import ConfigError
from ..kernels.core import CoreConfig
from ..live.ipc import TO_ALL
from ..live.ipc import codec
from ..types import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, SELL_EVENT, TRADE_EVENT
from .config import ConnectorConfig
from .journal import JournalingConnector
from .rest import BinanceRest, RestReply

log = logging.getLogger("hftbacktest.connector")

PAPER_KEY = "paper-account"  # the venue's one account (never an exchange key)
ORDER_PATHS = ("/fapi/v1/order",)
KEEP_ORDERS = 10_000


@dataclass(frozen=True)
class PaperConfig:
    """The `[paper]` table: matching models (as a backtest's), fees, latency and the starting account."""

    queue: str = "risk_averse"  # kernels.core.parse_queue: risk_averse, power_prob:N, log_prob, ...
    exchange: str = "partial_fill"  # or no_partial_fill
    maker_fee: float = 0.0002  # rates; negative: a rebate
    taker_fee: float = 0.0005
    entry_latency_ms: float = 0.0  # before an order request reaches the matching
    response_latency_ms: float = 0.0  # before its reply and the order updates reach the connector
    balance: float = 10_000.0  # USDT
    leverage: int = 20

    @classmethod
    def from_mapping(cls, raw: Any, source: str = "<config>") -> "PaperConfig":
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: 'paper' must be a table ([paper]), got {raw!r}")
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            f = known.get(key)
            if f is None:
                raise ConfigError(f"{source}: [paper] key {key!r} is unknown (known: {', '.join(known)})")
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            ok = {"str": isinstance(value, str),
                  "int": isinstance(value, int) and not isinstance(value, bool),
                  "float": isinstance(value, (int, float)) and not isinstance(value, bool)}[kind]
            if not ok:
                raise ConfigError(f"{source}: [paper] key {key!r} must be a {kind}, got {value!r}")
            values[key] = float(value) if kind == "float" else value
        cfg = cls(**values)
        try:
            CoreConfig.from_names(0.1, 0.001, cfg.queue, cfg.exchange)  # the models exist, their parameters fit
        except ConfigError as exc:
            key = "exchange" if "exchange model" in str(exc) else "queue"
            raise ConfigError(f"{source}: [paper] key {key!r}: {exc}") from None
        for key in ("entry_latency_ms", "response_latency_ms"):
            if not 0.0 <= getattr(cfg, key) <= 60_000.0:
                raise ConfigError(f"{source}: [paper] key {key!r} must be in 0..60000 ms")
        if not cfg.balance > 0:
            raise ConfigError(f"{source}: [paper] key 'balance' must be > 0")
        if not 1 <= cfg.leverage <= 125:
            raise ConfigError(f"{source}: [paper] key 'leverage' must be in 1..125")
        for key in ("maker_fee", "taker_fee"):
            if not -0.01 <= getattr(cfg, key) <= 0.01:
                raise ConfigError(f"{source}: [paper] key {key!r} is a rate (0.0002 = 2 bp), got {getattr(cfg, key)}")
        return cfg


def load_paper(path) -> PaperConfig | None:
    """The `[paper]` table of a connector TOML file, or None when the file has none (live mode)."""
    raw = read_toml(path)
    return PaperConfig.from_mapping(raw["paper"], str(path)) if "paper" in raw else None


class PaperRest(BinanceRest):
    """Public requests go to `api_url`; signed ones never leave the process (the paper venue answers them)."""

    def __init__(self, cfg: ConnectorConfig, connector: "PaperConnector"):
        super().__init__(cfg)
        self.connector = connector

    async def request(self, method: str, path: str, params: dict | None = None, *, signed: bool = False,
                      api_key: bool = False, retry_timestamp: bool = True) -> RestReply:
        if signed or api_key:
            return await self.connector.paper_request(method, path, dict(params or {}))
        reply = await super().request(method, path, params, retry_timestamp=retry_timestamp)
        if path == "/fapi/v1/exchangeInfo" and reply.ok:
            self.connector.exchange_info = {row["symbol"].lower(): row for row in reply.data.get("symbols", [])}
        return reply


class PaperConnector(JournalingConnector):
    """The connector with a paper venue in place of the exchange's order and account endpoints."""

    def __init__(self, name: str, cfg: ConnectorConfig, paper: PaperConfig):
        # The venue needs no credentials; placeholders keep the connector's order paths on (none is sent).
        cfg = replace(cfg, api_key="paper", secret="paper", adopt_orders=False)
        super().__init__(name, cfg)
        self.paper = paper
        self.rest = PaperRest(cfg, self)
        self.exchange_info: dict[str, dict] = {}
        self.venue = Venue([], now_ms=self.rest.now_ms, notify=self._venue_event, default_leverage=paper.leverage,
                           queue=paper.queue, exchange=paper.exchange)
        self.account = self.venue.add_account(PAPER_KEY, "-", balance=paper.balance, maker_fee=paper.maker_fee,
                                              taker_fee=paper.taker_fee)
        self._frames: deque = deque()  # (due monotonic, user-stream frame) in the order the venue produced them
        self._frame_ready = asyncio.Event()
        self._snapshots: dict[str, dict] = {}  # symbol -> levels of a book resync being received
        self._changes: dict[str, list] = {}  # symbol -> book changes of the batch being received

    # --- start ------------------------------------------------------------------------------------
    async def run(self) -> int:
        await self._check_market_reachable()
        return await super().run()

    async def _check_market_reachable(self) -> None:
        """Paper mode is useless without the market: fail at start, naming the URL, rather than mid-session."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for key, url in (("api_url", self.cfg.api_url + "/fapi/v1/time"), ("stream_url", self.cfg.stream_url)):
                try:
                    if key == "api_url":
                        async with session.get(url) as resp:
                            if resp.status != 200:
                                raise ConfigError(f"paper mode: {key} {url} answered HTTP {resp.status}")
                    else:
                        async with session.ws_connect(url):
                            pass
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    raise ConfigError(f"paper mode: {key} {url} is not reachable ({type(exc).__name__}: {exc})") \
                        from None

    # --- the venue's side of the user stream --------------------------------------------------------
    def _venue_event(self, account, payload: dict) -> None:
        due = time.monotonic() + self.paper.response_latency_ms / 1000.0
        self._frames.append((due, orjson.dumps(payload)))
        self._frame_ready.set()

    async def _user_loop(self) -> None:
        """The user stream of the paper venue: its events in order, each after the response latency."""
        first = not self._user_connected_once
        self._user_connected_once = True
        self.spawn(self._after_user_connect(first))
        while True:
            if not self._frames:
                self._frame_ready.clear()
                await self._frame_ready.wait()
            due, raw = self._frames[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._frames.popleft()
            self._on_user(raw)

    async def paper_request(self, method: str, path: str, params: dict) -> RestReply:
        order_entry = path in ORDER_PATHS and method != "GET"
        if order_entry and self.paper.entry_latency_ms:
            await asyncio.sleep(self.paper.entry_latency_ms / 1000.0)
        params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
        try:
            reply = RestReply(200, self._answer(method, path, params))
        except ApiError as err:
            reply = RestReply(err.http, err.body(), err.code, err.msg)
        if len(self.account.orders) > 2 * KEEP_ORDERS:
            self._forget_old_orders()
        if order_entry and self.paper.response_latency_ms:
            await asyncio.sleep(self.paper.response_latency_ms / 1000.0)
        return reply

    def _forget_old_orders(self) -> None:
        """A long session must not grow without bound: keep the newest KEEP_ORDERS finished orders (queries for
        the fate of a recent request still work) and the newest ledger entries."""
        account = self.account
        done = [oid for oid, o in account.orders.items() if oid not in account.live]
        for oid in done[:len(done) - KEEP_ORDERS]:
            o = account.orders.pop(oid)
            if account.by_client_id.get((o.spec.symbol, o.client_id)) is o:
                del account.by_client_id[(o.spec.symbol, o.client_id)]
        del account.ledger[:-KEEP_ORDERS]

    def _answer(self, method: str, path: str, params: dict):
        venue, account = self.venue, self.account
        if path == "/fapi/v1/order":
            if method == "POST":
                return venue.place_order(account, params)[1]
            if method == "DELETE":
                return venue.cancel_order(account, params)
            if method == "PUT":
                return venue.modify_order(account, params)
            return venue.query_order(account, params)
        if path == "/fapi/v1/openOrders":
            symbol = params.get("symbol")
            return [o.rest_body(with_time=True) for o in account.open_orders(symbol.upper() if symbol else None)]
        if path == "/fapi/v1/allOpenOrders" and method == "DELETE":
            return venue.cancel_all(account, params)
        if path in ("/fapi/v2/positionRisk", "/fapi/v3/positionRisk"):
            return [{"symbol": s, "positionAmt": venue.markets[s].spec.fmt_qty(p.lots), "positionSide": "BOTH",
                     "entryPrice": str(p.entry), "updateTime": p.update_time}
                    for s, p in account.positions.items()]
        if path == "/fapi/v1/positionSide/dual":
            return {"dualSidePosition": False}
        if path == "/fapi/v1/listenKey":
            return {"listenKey": "paper"}
        raise ApiError(-5000, f"Path {path}, Method {method} is not offered in paper mode", 404)

    # --- the market, as the bots see it, drives the venue ---------------------------------------------
    def _register(self, bot_id: int, req: codec.RegisterInstrument) -> None:
        symbol = req.symbol.lower()
        if symbol.upper() not in self.venue.markets:
            row = self.exchange_info.get(symbol)
            spec = SymbolSpec.from_exchange_info(row) if row else spec_for(symbol, req.tick_size, req.lot_size)
            self.venue.add_market(spec)
            log.info("paper venue lists %s (tick %g, lot %g, %s, %s)", spec.symbol, spec.tick_size, spec.lot_size,
                     self.paper.queue, self.paper.exchange)
        super()._register(bot_id, req)

    def send(self, bot_id: int, msg: Any) -> None:
        super().send(bot_id, msg)
        if bot_id != TO_ALL:
            return  # a replay of the book for one bot: nothing new happened
        if isinstance(msg, codec.Feed):
            self._on_feed(msg.symbol, msg.event)
        elif isinstance(msg, codec.BatchEnd):  # one depth update (or resync) is complete
            for symbol in list(self._snapshots):
                self._install_snapshot(symbol, self._snapshots.pop(symbol))
            self._flush()

    def _flush(self, symbol: str | None = None) -> None:
        """Hand the book changes received so far to the venue's matching (all symbols, or one)."""
        for sym in ([symbol] if symbol else list(self._changes)):
            changes = self._changes.pop(sym, None)
            if changes:
                self.venue.on_depth(self.venue.markets[sym.upper()], changes)

    def _on_feed(self, symbol: str, ev: tuple) -> None:
        market = self.venue.markets.get(symbol.upper())
        if market is None:
            return
        kind, px, qty = ev[0], ev[3], ev[4]
        spec = market.spec
        side = 1 if kind & BUY_EVENT else -1 if kind & SELL_EVENT else 0
        if kind & 0xFF == DEPTH_CLEAR_EVENT:
            self._snapshots[symbol] = {}  # a resync: the levels that follow in this batch are the whole book
            return
        tick, lots = round(px / spec.tick_size), round(qty / spec.lot_size)
        if kind & 0xFF == DEPTH_EVENT and side:
            levels = self._snapshots.get(symbol)
            if levels is not None:
                if lots > 0:
                    levels[(side, tick)] = lots
                else:
                    levels.pop((side, tick), None)
            elif market.book.set(side, tick, lots) != lots:
                self._changes.setdefault(symbol, []).append((side, tick, lots))
        elif kind & 0xFF == TRADE_EVENT and side:
            self._flush(symbol)
            self.venue.on_trade(market, tick, lots, buyer_is_maker=side == -1)

    def _install_snapshot(self, symbol: str, levels: dict) -> None:
        """A resynced book replaces the old one as one difference (resting orders keep their queue places)."""
        market = self.venue.markets[symbol.upper()]
        book = market.book
        changes = [(side, t, 0) for side in (1, -1) for t in book.side(side) if (side, t) not in levels]
        changes += [(side, t, q) for (side, t), q in levels.items() if book.qty(side, t) != q]
        for side, t, q in changes:
            book.set(side, t, q)
        if changes:
            self.venue.on_depth(market, changes)

    def paper_summary(self) -> dict:
        """The paper account: positions (per symbol), balance, fees, realised PnL, order and fill counts."""
        acct = self.venue.state()["accounts"][PAPER_KEY]
        return {"positions": {s.lower(): p["qty"] for s, p in acct["positions"].items()},
                "balance": acct["balance"], "fees": acct["fees"], "realized_pnl": acct["realized_pnl"],
                "orders": self.venue.counters["orders"], "fills": self.venue.counters["fills"]}

    async def _shutdown(self) -> None:
        log.info("paper account at shutdown: %s", orjson.dumps(self.paper_summary()).decode())
        await super()._shutdown()
