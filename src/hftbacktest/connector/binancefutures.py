"""The Binance USD-M Futures connector process: exchange streams and REST on one side, bots over IPC on the other."""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import random
import signal
import time
from typing import Any

import aiohttp
import orjson

from ..binance import wire
from ..binance.numbers import format_step
from ..binance.symbols import SymbolSpec
from ..live.ipc import TO_ALL, ConnectorChannel, access
from ..live.ipc import codec
from ..live.ipc.codec import ErrorKind
from ..types import CANCELED, EXPIRED, LIMIT, MARKET, NEW, NONE, REPLACED, UNSUPPORTED
from .config import ConnectorConfig
from .marketdata import DepthGap, StaleSnapshot, SymbolBook, book_ticker_events, trade_event
from .perp import FundingRelay
from .orders import ORDER_TYPE, ORDER_TYPE_NAME, SIDE, SIDE_NAME, STATUS, TIF, TIF_NAME, ManagedOrder, OrderManager
from .rest import AUTH_FAILURE_CODES, BinanceRest, RateLimited, RestReply
from .ws_orders import WsOrderApi

log = logging.getLogger("hftbacktest.connector")


def now_ns() -> int:
    return time.time_ns()


class Backoff:
    """100 ms x 2^n capped, +-20 % jitter, reset after a long healthy period."""

    def __init__(self, cfg: ConnectorConfig):
        self.cfg = cfg
        self.failures = 0
        self.started = time.monotonic()

    def healthy_since(self) -> None:
        self.started = time.monotonic()

    def next_delay(self) -> float:
        if time.monotonic() - self.started > self.cfg.backoff_reset_s:
            self.failures = 0
        delay = min(self.cfg.backoff_initial_s * (2 ** self.failures), self.cfg.backoff_max_s)
        self.failures += 1
        return delay * random.uniform(0.8, 1.2)


class StreamClosed(Exception):
    pass


class BinanceFuturesConnector:
    def __init__(self, name: str, cfg: ConnectorConfig):
        self.name = name
        self.cfg = cfg
        self.rest = BinanceRest(cfg)
        self.rest.on_recovered = self._on_rest_recovered
        self.ws_orders = WsOrderApi(cfg, self.rest) if cfg.order_transport == "ws" else None
        self.orders = OrderManager(cfg.order_prefix)
        self.books: dict[str, SymbolBook] = {}
        self.symbol_info: dict[str, tuple[float, float]] = {}  # symbol -> (tick, lot) asked by bots
        self.exchange_filters: dict[str, tuple[float, float]] = {}
        self.positions: dict[str, tuple[float, int]] = {}
        self.ipc: ConnectorChannel | None = None
        self.stop = asyncio.Event()
        self.exit_code = 0
        self._md_ws: aiohttp.ClientWebSocketResponse | None = None
        self._snapshot_tasks: dict[str, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()
        self._cancelled_at_start: set[str] = set()
        self._user_connected_once = False
        self._hedge_mode = False
        self._last_rate_notice = 0.0
        self._session: aiohttp.ClientSession | None = None
        self._signals = 0
        self.bot_pids: dict[int, int] = {}  # bot id -> process id (from BotHello)
        self.departed: set[int] = set()  # bots that said goodbye
        self.authorised: set[int] = set()  # bots that presented this connector's token
        self.refused: dict[int, int] = {}  # bot id -> requests refused for want of the token
        self._token = ""
        self._adoptions: dict[str, asyncio.Task] = {}  # symbol -> adoption of its exchange orders at first use
        self._reconciler: asyncio.Task | None = None
        self._reconcile_again = False
        self.perp = FundingRelay(self)

    # --- publishing -----------------------------------------------------------------------------
    def send(self, bot_id: int, msg: Any) -> None:
        self.ipc.send(bot_id, codec.encode_event(msg))

    def send_batch(self, bot_id: int, msgs: list) -> None:
        self.send(bot_id, codec.BatchStart())
        for m in msgs:
            self.send(bot_id, m)
        self.send(bot_id, codec.BatchEnd())

    def error(self, kind: ErrorKind, value: Any, code: int = 0, bot_id: int = TO_ALL) -> None:
        self.send(bot_id, codec.Error(kind, value, code))

    def publish_position(self, symbol: str, qty: float, ts: int, as_of: int | None = None) -> None:
        """Publish unless older than what bots have. `as_of`: a REST snapshot asked for at that exchange time (ns);
        it replaces every stream update older than the question, whatever its own update time (an exchange that
        lost its state reports a flat position with update time 0)."""
        cached = self.positions.get(symbol)
        if cached is not None:
            if as_of is None and ts < cached[1]:
                return
            if as_of is not None:
                if cached[1] >= as_of:
                    return  # the stream already told us about a change after the question
                ts = max(ts, cached[1])
        self.positions[symbol] = (qty, ts)
        self.send(TO_ALL, codec.Position(symbol, qty, ts))

    def publish_order(self, rec: ManagedOrder, order=None) -> None:
        self.send(rec.bot_id, codec.OrderUpdate(rec.symbol, order if order is not None else rec.order))

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.critical("connector task failed; exiting", exc_info=task.exception())
            self.exit_code = 1
            self.stop.set()

    # --- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> int:
        self.ipc = ConnectorChannel(self.name)  # first: fails if a connector with this name runs (keep its token)
        token_file, self._token = access.write_token(self.name)
        log.info("bot token written to %s (bots of this user read it there)", token_file)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        self._session = aiohttp.ClientSession()
        await self.rest.start()
        if not await self._reach_exchange():
            self.exit_code = 1
            await self._shutdown()
            return self.exit_code
        await self._load_exchange_info()
        if self.cfg.has_credentials and self.cfg.hedge_mode_check:
            dual = await self._safe_request("GET", "/fapi/v1/positionSide/dual", signed=True)
            if dual is not None and dual.ok and dual.data.get("dualSidePosition"):
                self._hedge_mode = True
                log.error("the account is in hedge mode; positions assume one-way mode")
        self.error(ErrorKind.Custom, "connector started", codec.CUSTOM_CONNECTOR_RESTARTED)
        log.info("connector %r up (%s, %s)", self.name, self.cfg.api_url, self.cfg.stream_url)
        for coro in (self._ipc_loop(), self._heartbeat_loop(), self._market_loop(), self._clock_loop(),
                     self._book_age_loop()):
            self.spawn(coro)
        if self.cfg.mark_price:
            self.spawn(self.perp.run(Backoff(self.cfg)))
        if self.cfg.has_credentials:
            self.spawn(self._user_loop())
            if self.ws_orders is not None:
                self.spawn(self.ws_orders.run(self._session, Backoff(self.cfg)))
        else:
            log.warning("no api_key/secret: market data only, every order will be refused")
        await self.stop.wait()
        await self._shutdown()
        return self.exit_code

    async def _reach_exchange(self) -> bool:
        """A first answer from the exchange's REST API, retried with backoff up to `critical_after` times. A
        connector that cannot reach the exchange at start says so and exits 1 instead of announcing itself; once
        up, it reconnects forever (bots hear CriticalConnectionError after `critical_after` failures)."""
        url = self.cfg.api_url
        backoff = Backoff(self.cfg)
        attempts = self.cfg.critical_after
        for attempt in range(1, attempts + 1):
            try:
                reply = await self.rest.request("GET", "/fapi/v1/time")
            except RateLimited as exc:
                reply = RestReply(429, None, None, str(exc))
            if reply.ok:
                await self.rest.sync_time()
                return True
            if reply.status and reply.status < 500 and reply.status not in (418, 429):
                log.critical("the exchange REST API at %s refused GET /fapi/v1/time (%s): is api_url right? "
                             "exiting", url, reply.msg or reply.status)
                return False
            if self.stop.is_set():
                return False  # interrupted by a signal
            if attempt == attempts:
                break
            delay = backoff.next_delay()
            log.error("cannot reach the exchange at %s (%s); attempt %d of %d, next in %.1f s", url, reply.msg,
                      attempt, attempts, delay)
            try:
                await asyncio.wait_for(self.stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
        log.critical("cannot reach the exchange at %s (%s) after %d attempts; exiting", url, reply.msg, attempt)
        return False

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now")
            raise SystemExit(1)
        log.info("shutting down")
        self.stop.set()

    async def _shutdown(self) -> None:
        if self.cfg.cancel_on_shutdown and self.cfg.has_credentials:
            cancels = [self._safe_request("DELETE", "/fapi/v1/allOpenOrders", {"symbol": s.upper()}, signed=True)
                       for s in self.symbol_info]
            try:
                await asyncio.wait_for(asyncio.gather(*cancels), 5.0)
            except asyncio.TimeoutError:
                log.warning("cancel-all on shutdown did not finish within 5 s")
        if getattr(self, "_listen_key", None):
            await self._safe_request("DELETE", "/fapi/v1/listenKey", api_key=True)
        try:
            self.error(ErrorKind.CriticalConnectionError, "connector shutting down")
        except Exception:
            pass
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.rest.close()
        if self._session is not None:
            await self._session.close()
        self.ipc.close()
        access.remove_token(self.name, self._token)
        if self.refused:
            log.error("refused %d request(s) from %d bot(s) without this connector's token",
                      sum(self.refused.values()), len(self.refused))

    async def _safe_request(self, method: str, path: str, params: dict | None = None, **kw) -> RestReply | None:
        try:
            reply = await self.rest.request(method, path, params, **kw)
        except RateLimited as exc:
            log.warning("%s %s skipped: %s", method, path, exc)
            return None
        self._after_reply(reply)
        return reply

    def _after_reply(self, reply: RestReply) -> None:
        if reply.code in AUTH_FAILURE_CODES or reply.status in (401, 418):
            self.error(ErrorKind.CriticalConnectionError, reply.error_value())
        if self.rest.near_limit() and time.monotonic() - self._last_rate_notice > 60:
            self._last_rate_notice = time.monotonic()
            self.error(ErrorKind.Custom, "rate limit near", codec.CUSTOM_RATE_LIMIT_NEAR)

    async def _load_exchange_info(self) -> None:
        reply = await self._safe_request("GET", "/fapi/v1/exchangeInfo")
        if reply is None or not reply.ok:
            log.warning("exchangeInfo unavailable; tick/lot sizes will not be cross-checked")
            return
        for s in reply.data.get("symbols", []):
            try:
                spec = SymbolSpec.from_exchange_info(s)
            except (KeyError, TypeError, ValueError):
                continue
            self.exchange_filters[spec.symbol.lower()] = (spec.tick_size, spec.lot_size)

    async def _clock_loop(self) -> None:
        while True:
            await asyncio.sleep(600)
            try:
                await self.rest.sync_time()
            except RateLimited:
                pass

    async def _heartbeat_loop(self) -> None:
        while True:
            self.error(ErrorKind.Custom, None, codec.CUSTOM_HEARTBEAT)
            await asyncio.sleep(self.cfg.heartbeat_s)

    # --- bot requests ---------------------------------------------------------------------------
    async def _ipc_loop(self) -> None:
        idle_since = time.monotonic()
        while True:
            got = self.ipc.recv()
            if got is None:
                # Stay responsive right after activity, otherwise yield the CPU to other processes.
                await asyncio.sleep(0 if time.monotonic() - idle_since < 0.01 else 0.0005)
                continue
            idle_since = time.monotonic()
            bot_id, payload = got
            try:
                req = codec.decode_request(payload)
            except Exception as exc:
                log.error("undecodable request from bot %d: %s", bot_id, exc)
                self.error(ErrorKind.Custom, str(exc), codec.CUSTOM_CODEC_MISMATCH, bot_id)
                continue
            if isinstance(req, codec.BotHello):
                self._hello(bot_id, req)
                continue
            if bot_id not in self.authorised:
                self._refuse_unauthorised(bot_id, req)
                continue
            if isinstance(req, codec.RegisterInstrument):
                symbol = req.symbol.lower()
                adoption = self._adoptions.get(symbol)
                if adoption is None and self.cfg.adopt_orders and self.cfg.has_credentials:
                    adoption = self._adoptions[symbol] = self.spawn(self._adopt_open_orders(symbol, req.tick_size))
                if adoption is not None and not adoption.done():
                    self.spawn(self._register_after(adoption, bot_id, req))  # the replay must list adopted orders
                else:
                    self._register(bot_id, req)
            elif isinstance(req, codec.BotGoodbye):
                self.departed.add(bot_id)
                log.info("bot %d left", bot_id)
            elif req.order.req == NEW:
                self.spawn(self._submit(bot_id, req.symbol.lower(), req.order))
            elif req.order.req == CANCELED:
                self.spawn(self._cancel(bot_id, req.symbol.lower(), req.order))
            elif req.order.req == REPLACED:
                self.spawn(self._modify(bot_id, req.symbol.lower(), req.order))
            else:
                log.error("bot %d sent an order request with invalid req=%d; ignored", bot_id, req.order.req)

    def _hello(self, bot_id: int, req: codec.BotHello) -> None:
        if req.token and self._token and hmac.compare_digest(req.token.encode(), self._token.encode()):
            self.authorised.add(bot_id)
            self.bot_pids[bot_id] = req.pid
            self.departed.discard(bot_id)
            return
        self.authorised.discard(bot_id)
        self._refuse_unauthorised(bot_id, req)

    def _refuse_unauthorised(self, bot_id: int, req: Any) -> None:
        """A request from a bot that has not presented this connector's token: never executed; the operator (our
        log) and the bot hear about it. The token itself is never logged."""
        n = self.refused[bot_id] = self.refused.get(bot_id, 0) + 1
        what = "BotHello with a wrong or missing token" if isinstance(req, codec.BotHello) else type(req).__name__
        if n <= 10 or n % 1000 == 0:  # a flood must not flood the log
            pid = f", pid {req.pid}" if isinstance(req, codec.BotHello) else ""
            log.error("refused %s from bot %d%s: it has not presented this connector's token (%d refused so far)",
                      what, bot_id, pid, n)
        if bot_id == TO_ALL:
            return  # a forged header: an answer to id 0 would reach every bot
        if isinstance(req, codec.OrderRequest):
            status = EXPIRED if req.order.req == NEW else req.order.status
            self.send(bot_id, codec.OrderUpdate(req.symbol.lower(), req.order._replace(status=status, req=NONE)))
        self.error(ErrorKind.CriticalConnectionError,
                   f"connector {self.name!r} refused the request: missing or wrong token (the bot reads "
                   f"{access.token_path(self.name)})", bot_id=bot_id)

    def _register(self, bot_id: int, req: codec.RegisterInstrument) -> None:
        symbol = req.symbol.lower()
        if symbol != req.symbol:
            self.error(ErrorKind.Custom, "symbol must be lowercase", codec.CUSTOM_SYMBOL_CASE, bot_id)
        if self._hedge_mode:
            self.error(ErrorKind.Custom, "account is in hedge mode", codec.CUSTOM_HEDGE_MODE, bot_id)
        exch = self.exchange_filters.get(symbol)
        if exch and (abs(exch[0] - req.tick_size) > 1e-12 or abs(exch[1] - req.lot_size) > 1e-12):
            log.warning("%s: bot tick/lot %s/%s differ from the exchange's %s/%s", symbol, req.tick_size,
                        req.lot_size, *exch)
        is_new = symbol not in self.symbol_info
        self.symbol_info.setdefault(symbol, (req.tick_size, req.lot_size))
        # The replay lists the bot's own live orders (a re-registering bot gets its state back) and adopts those a
        # departed bot left open; orders of running bots stay theirs, since their updates are addressed to them.
        msgs: list = []
        for r in self.orders.open_orders(symbol):
            if r.bot_id != bot_id and (r.bot_id == TO_ALL or self.bot_gone(r.bot_id)):
                log.info("bot %d adopts %s order %d (%s) of departed bot %d", bot_id, symbol, r.order.order_id,
                         r.client_id, r.bot_id)
                r.bot_id = bot_id
            if r.bot_id == bot_id:
                # the order's state only: its last fill reached the bot when it happened
                msgs.append(codec.OrderUpdate(symbol, r.order._replace(exec_qty=0.0)))
        if symbol in self.positions:
            qty, ts = self.positions[symbol]
            msgs.append(codec.Position(symbol, qty, ts))
        book = self.books.get(symbol)
        if book is not None:
            msgs += [codec.Feed(symbol, ev) for ev in book.snapshot_events(now_ns())]
        self.send_batch(bot_id, msgs)
        if is_new:
            self.books[symbol] = SymbolBook(symbol)
            self.spawn(self._subscribe([symbol]))
            self.spawn(self.perp.subscribe([symbol]))
            if self.cfg.has_credentials and self._user_connected_once:
                self.spawn(self._prepare_symbol(symbol))
        log.info("bot %d registered %s", bot_id, symbol)

    async def _register_after(self, adoption: asyncio.Task, bot_id: int, req: codec.RegisterInstrument) -> None:
        await asyncio.wait([adoption])
        self._register(bot_id, req)

    async def _adopt_open_orders(self, symbol: str, tick: float) -> None:
        """adopt_orders: take over our prefixed orders open at the exchange that this connector does not know
        (placed before it restarted). They belong to no bot until one registers the symbol."""
        reply = await self._safe_request("GET", "/fapi/v1/openOrders", {"symbol": symbol.upper()}, signed=True)
        if reply is None or not reply.ok:
            log.error("%s: open orders unavailable; exchange orders placed before this start are not adopted", symbol)
            return
        for row in reply.data:
            cid = row["clientOrderId"]
            if cid in self.orders.by_client or not cid.startswith(self.cfg.order_prefix):
                continue
            order_id = self.orders.order_id_of(cid)
            rec = None
            if order_id is not None:
                qty = float(row["origQty"])
                order = codec.WireOrder(
                    qty, qty - float(row["executedQty"]), 0.0, 0, round(float(row["price"]) / tick), tick,
                    int(row.get("updateTime", 0)) * 1_000_000, 0, order_id, False,
                    ORDER_TYPE.get(row.get("type", ""), UNSUPPORTED), NONE, STATUS.get(row["status"], UNSUPPORTED),
                    SIDE.get(row.get("side", ""), 0), TIF.get(row.get("timeInForce", ""), UNSUPPORTED))
                rec = self.orders.adopt(symbol, cid, order, TO_ALL)
            if rec is None:
                log.warning("open order %s cannot be adopted (not ours or its id is taken): cancelling", cid)
                await self._safe_request("DELETE", "/fapi/v1/order",
                                         {"symbol": symbol.upper(), "origClientOrderId": cid}, signed=True)
            else:
                log.info("adopted %s order %d (%s) left open before this start", symbol, order_id, cid)

    def bot_gone(self, bot_id: int) -> bool:
        """The bot said goodbye or its process no longer exists (bots run on this host: shared memory)."""
        if bot_id in self.departed:
            return True
        pid = self.bot_pids.get(bot_id)
        if pid is None:
            return False  # never introduced itself: assume it is running
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # exists, owned by another user
        return False

    def _order_params(self, symbol: str, rec: ManagedOrder) -> dict:
        o = rec.order
        tick, lot = self.symbol_info.get(symbol, (o.tick_size, 0.0))
        params = {
            "symbol": symbol.upper(),
            "side": SIDE_NAME.get(o.side, "BUY"),
            "type": ORDER_TYPE_NAME.get(o.order_type, "LIMIT"),
            "quantity": format_step(o.qty, lot) if lot else repr(o.qty),
            "newClientOrderId": rec.client_id,
        }
        if o.order_type == LIMIT:
            params["price"] = format_step(o.price_tick * o.tick_size, o.tick_size)
            params["timeInForce"] = TIF_NAME.get(o.time_in_force, "GTC")
        return params

    def _refuse(self, bot_id: int, symbol: str, order, value: Any) -> None:
        self._answer_refused(bot_id, symbol, order._replace(status=EXPIRED, req=NONE), value)

    def _answer_refused(self, bot_id: int, symbol: str, order, value: Any) -> None:
        """The OrderError first, then the order update that answers the request: IPC keeps the order, so the error
        handler has heard the refusal by the time the strategy's wait for the answer returns."""
        self.error(ErrorKind.OrderError, value, bot_id=bot_id)
        if order is not None:
            self.send(bot_id, codec.OrderUpdate(symbol, order))

    async def _submit(self, bot_id: int, symbol: str, order) -> None:
        if not self.cfg.has_credentials:
            self._refuse(bot_id, symbol, order, "no credentials")
            return
        if order.order_type not in (LIMIT, MARKET):
            self._refuse(bot_id, symbol, order, {"code": -1116, "msg": "unsupported order type"})
            return
        rec = self.orders.submit(bot_id, symbol, order)
        if rec is None:
            log.error("bot %d: order id %d on %s is still live (duplicated client order id)", bot_id, order.order_id, symbol)
            self._refuse(bot_id, symbol, order, {"code": -4116, "msg": "order id is still live"})
            return
        rec.inflight += 1
        try:
            await self._place(rec, symbol)
        finally:
            rec.inflight -= 1

    async def _place(self, rec: ManagedOrder, symbol: str) -> None:
        try:
            reply = await self._order_request("POST", self._order_params(symbol, rec))
        except RateLimited as exc:
            self._fail(rec, True, {"code": -1003, "msg": str(exc)})
            return
        self._after_reply(reply)
        if reply.ok:
            fwd = self.orders.on_rest_order(rec, reply.data, NEW)
            if fwd is not None:
                self.publish_order(rec, fwd)
        elif reply.code == -4116:  # our retry found the first attempt already placed
            await self._resolve(rec, True, NEW)
        elif reply.unknown:
            log.warning("submit %s: status unknown (%s); querying", rec.client_id, reply.msg)
            await self._resolve(rec, True, NEW)
        else:
            level = logging.INFO if reply.code == -5022 else logging.ERROR
            log.log(level, "submit %s refused: %s %s", rec.client_id, reply.code, reply.msg)
            self._fail(rec, True, reply.error_value())

    def _gone(self, rec: ManagedOrder, value: Any) -> None:
        """A cancel or amend refused because the order was already done (filled or cancelled meanwhile); its real
        state is asked for next. A hook for the journal."""

    def _fail(self, rec: ManagedOrder, is_submit: bool, value: Any) -> None:
        self._answer_refused(rec.bot_id, rec.symbol, self.orders.on_rest_failure(rec, is_submit), value)

    async def _cancel(self, bot_id: int, symbol: str, order) -> None:
        rec = self.orders.find_live(symbol, order.order_id)
        if rec is None:
            self._answer_refused(bot_id, symbol, order._replace(req=NONE), {"code": -2011, "msg": "Unknown order sent."})
            return
        self.orders.mark_request(rec, CANCELED, order.local_timestamp)
        params = {"symbol": symbol.upper(), "origClientOrderId": rec.client_id}
        await self._change_order(rec, "DELETE", params, gone_code=-2011, what="cancel")

    async def _modify(self, bot_id: int, symbol: str, order) -> None:
        """Amend price and quantity (`PUT /fapi/v1/order`). A refusal leaves the order as it was: the bot hears the
        OrderError, then gets the exchange-confirmed price/qty back with `req=NONE`."""
        rec = self.orders.find_live(symbol, order.order_id)
        if rec is None:
            self._answer_refused(bot_id, symbol, order._replace(req=NONE), {"code": -2013, "msg": "Order does not exist."})
            return
        self.orders.mark_request(rec, REPLACED, order.local_timestamp, target=(order.price_tick, order.qty))
        tick, lot = self.symbol_info.get(symbol, (order.tick_size, 0.0))
        params = {
            "symbol": symbol.upper(),
            "origClientOrderId": rec.client_id,
            "side": SIDE_NAME.get(rec.order.side, "BUY"),
            "quantity": format_step(order.qty, lot) if lot else repr(order.qty),
            "price": format_step(order.price_tick * order.tick_size, order.tick_size),
        }
        await self._change_order(rec, "PUT", params, gone_code=-2013, what="modify")

    async def _change_order(self, rec: ManagedOrder, method: str, params: dict, *, gone_code: int, what: str) -> None:
        """Send a cancel (DELETE) or amend (PUT) of a live order and apply the reply."""
        rec.inflight += 1
        try:
            await self._send_change(rec, method, params, gone_code, what)
        finally:
            rec.inflight -= 1

    async def _send_change(self, rec: ManagedOrder, method: str, params: dict, gone_code: int, what: str) -> None:
        try:
            reply = await self._order_request(method, params)
        except RateLimited as exc:
            self._fail(rec, False, {"code": -1003, "msg": str(exc)})
            return
        self._after_reply(reply)
        answers = CANCELED if method == "DELETE" else REPLACED
        if reply.ok:
            fwd = self.orders.on_rest_order(rec, reply.data, answers)
            if fwd is not None:
                self.publish_order(rec, fwd)
        elif reply.code == gone_code or reply.unknown:
            if reply.code == gone_code:
                self._gone(rec, reply.error_value())
            await self._resolve(rec, False, answers)  # gone meanwhile, or outcome unknown: ask for its real state
        else:
            level = logging.INFO if reply.code == -5027 else logging.ERROR  # -5027: amend with nothing to change
            log.log(level, "%s %s refused: %s %s", what, rec.client_id, reply.code, reply.msg)
            self._fail(rec, False, reply.error_value())

    async def _order_request(self, method: str, params: dict) -> RestReply:
        """Place (POST), cancel (DELETE) or amend (PUT) over the configured order transport."""
        if self.ws_orders is not None:
            return await self.ws_orders.send(method, "/fapi/v1/order", params)
        return await self.rest.request(method, "/fapi/v1/order", params, signed=True)

    async def _resolve(self, rec: ManagedOrder, is_submit: bool, answers: int | None = None,
                       reconciling: bool = False) -> None:
        """Find out what happened to an order whose request (`answers`) outcome or state is unknown. An exchange
        that has no such order (-2013: never placed, or lost by an exchange restart) ends it as EXPIRED: it cannot
        fill. `reconciling`: no request of ours is waiting; if one starts meanwhile, its answer decides instead."""
        params = {"symbol": rec.symbol.upper(), "origClientOrderId": rec.client_id}
        delay = 0.2
        for _ in range(5):
            try:
                reply = await self.rest.request("GET", "/fapi/v1/order", params, signed=True)
            except RateLimited:
                reply = None
            if reconciling and rec.inflight:
                return
            if reply is not None and reply.ok:
                fwd = self.orders.on_rest_catch_up(rec, reply.data, answers)
                if fwd is not None:
                    self.publish_order(rec, fwd)
                return
            if reply is not None and reply.code == -2013:
                log.warning("order %s: the exchange does not know it; expired", rec.client_id)
                fwd = self.orders.expire_unknown(rec)
                if is_submit:
                    self._answer_refused(rec.bot_id, rec.symbol, fwd, {"code": -2013, "msg": "Order does not exist."})
                elif fwd is not None:
                    self.publish_order(rec, fwd)
                return
            await asyncio.sleep(delay)
            delay *= 2
        log.error("order %s: state still unknown; the user stream or the next reconciliation will tell", rec.client_id)

    # --- market data ----------------------------------------------------------------------------
    def _streams(self, symbols: list[str]) -> list[str]:
        out = []
        for s in symbols:
            out += [f"{s}@{self.cfg.depth_stream}", f"{s}@trade"]
            if self.cfg.book_ticker:
                out.append(f"{s}@bookTicker")
        return out

    async def _subscribe(self, symbols: list[str]) -> None:
        ws = self._md_ws
        if ws is None or ws.closed or not symbols:
            return  # the market loop subscribes everything on (re)connect
        for i in range(0, len(symbols), 50):
            chunk = self._streams(symbols[i:i + 50])
            await ws.send_str(orjson.dumps({"method": "SUBSCRIBE", "params": chunk, "id": random.getrandbits(31)}).decode())
            await asyncio.sleep(0.1)  # <= 10 control messages per second
        for s in symbols:
            self._start_snapshot(s)

    def _start_snapshot(self, symbol: str) -> None:
        task = self._snapshot_tasks.get(symbol)
        if task is None or task.done():
            self._snapshot_tasks[symbol] = self.spawn(self._snapshot(symbol))

    async def _snapshot(self, symbol: str) -> None:
        delay = 0.2
        for attempt in range(8):
            reply = await self._safe_request(
                "GET", "/fapi/v1/depth", {"symbol": symbol.upper(), "limit": self.cfg.depth_snapshot_limit})
            book = self.books[symbol]
            if reply is not None and reply.ok:
                try:
                    events = book.on_snapshot(reply.data, now_ns())
                except StaleSnapshot as exc:
                    log.info("%s; refetching", exc)
                except DepthGap as exc:
                    log.warning("%s", exc)
                    book.resync()
                else:
                    self.send_batch(TO_ALL, [codec.Feed(symbol, ev) for ev in events])
                    log.info("%s book synced at update id %s", symbol, book.last_u)
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        self.error(ErrorKind.ConnectionInterrupted, f"could not sync the {symbol} book")
        raise StreamClosed(f"{symbol}: no usable depth snapshot after 8 attempts")

    async def _book_age_loop(self) -> None:
        max_age = self.cfg.max_book_age_s
        while True:
            await asyncio.sleep(min(1.0, max_age / 4))
            self.check_book_ages(now_ns())

    def check_book_ages(self, now: int) -> list[str]:
        """Resync books that did not change for `max_book_age_s` while the market stream is up (a stalled
        subscription does not always close the connection). Returns the symbols being resynced."""
        if self._md_ws is None or self._md_ws.closed:
            return []  # the market loop rebuilds every book when it reconnects
        stale = [symbol for symbol, book in self.books.items() if book.is_stale(now, self.cfg.max_book_age_s)]
        for symbol in stale:
            msg = f"{symbol} book unchanged for {self.cfg.max_book_age_s:g} s; resyncing"
            log.warning("%s", msg)
            self.error(ErrorKind.ConnectionInterrupted, msg)
            self.books[symbol].resync()
            self._start_snapshot(symbol)
        return stale

    async def _market_loop(self) -> None:
        backoff = Backoff(self.cfg)
        while True:
            reason = "closed"
            try:
                async with self._session.ws_connect(self.cfg.stream_url, autoping=True, max_msg_size=0) as ws:
                    self._md_ws = ws
                    backoff.healthy_since()
                    for book in self.books.values():
                        book.resync()
                    await self._subscribe(list(self.books))
                    reason = await self._read_market(ws)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, StreamClosed) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._md_ws = None
            for task in self._snapshot_tasks.values():
                task.cancel()
            self.error(ErrorKind.ConnectionInterrupted, f"market stream: {reason}")
            self._stream_failing(backoff, "market", self.cfg.stream_url, reason)
            delay = backoff.next_delay()
            log.warning("market stream dropped (%s); reconnecting in %.2f s", reason, delay)
            await asyncio.sleep(delay)

    def _stream_failing(self, backoff: Backoff, which: str, url: str, reason: str) -> None:
        if backoff.failures >= self.cfg.critical_after:
            msg = (f"cannot reach the exchange's {which} stream at {url} ({reason}); {backoff.failures} failures "
                   "in a row, still retrying")
            log.error("%s", msg)
            self.error(ErrorKind.CriticalConnectionError, msg)

    async def _read_market(self, ws) -> str:
        idle = self.cfg.stream_idle_timeout_s
        while True:
            try:
                msg = await ws.receive(timeout=idle if self.books else None)
            except asyncio.TimeoutError:
                return f"no data for {idle:.0f} s"
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                self._on_market(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return f"closed by server ({ws.close_code})"
            elif msg.type == aiohttp.WSMsgType.ERROR:
                return f"error {ws.exception()}"

    def _on_market(self, raw) -> None:
        local_ts = now_ns()
        try:
            msg = orjson.loads(raw)
            if "stream" in msg and "data" in msg:
                msg = msg["data"]
            kind = msg.get("e")
        except (orjson.JSONDecodeError, AttributeError):
            log.warning("unparseable market frame dropped: %.120r", raw)
            return
        try:
            if kind == wire.DEPTH_UPDATE:
                symbol = msg["s"].lower()
                book = self.books.get(symbol)
                if book is None:
                    return
                try:
                    events = book.on_depth(msg, local_ts)
                except DepthGap as exc:
                    log.warning("%s", exc)
                    self.error(ErrorKind.ConnectionInterrupted, str(exc))
                    book.resync()
                    book.buffer.append(msg)
                    self._start_snapshot(symbol)
                    return
                if events:
                    self.send_batch(TO_ALL, [codec.Feed(symbol, ev) for ev in events])
                elif book.state != "LIVE":
                    self._start_snapshot(symbol)
            elif kind == wire.TRADE:
                ev = trade_event(msg, local_ts)
                if ev is not None:
                    self.send(TO_ALL, codec.Feed(msg["s"].lower(), ev))
            elif kind == "bookTicker":
                symbol = msg["s"].lower()
                self.send_batch(TO_ALL, [codec.Feed(symbol, ev) for ev in book_ticker_events(msg, local_ts)])
            elif "result" in msg and "id" in msg:
                pass  # subscription ack
            elif kind is not None:
                log.debug("market event %s ignored", kind)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("malformed %s frame dropped (%s): %.120r", kind, exc, raw)

    # --- user data ------------------------------------------------------------------------------
    async def _user_loop(self) -> None:
        backoff = Backoff(self.cfg)
        self._listen_key = None
        while True:
            reason = "closed"
            try:
                reply = await self._safe_request("POST", "/fapi/v1/listenKey", api_key=True)
                if reply is None or not reply.ok:
                    raise StreamClosed(f"listenKey: {reply.error_value() if reply else 'rate limited'}")
                self._listen_key = reply.data["listenKey"]
                log.info("listen key %s... obtained", self._listen_key[:4])
                url = f"{self.cfg.user_stream_base}/{self._listen_key}"
                async with self._session.ws_connect(url, autoping=True) as ws:
                    backoff.healthy_since()
                    first = not self._user_connected_once
                    self._user_connected_once = True
                    sync = self.spawn(self._after_user_connect(first))
                    keepalive = self.spawn(self._keepalive(ws))
                    try:
                        reason = await self._read_user(ws)
                    finally:
                        keepalive.cancel()
                        sync.cancel()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, StreamClosed) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self.error(ErrorKind.ConnectionInterrupted, f"user stream: {reason}")
            self._stream_failing(backoff, "user", self.cfg.user_stream_base, reason)
            delay = backoff.next_delay()
            log.warning("user stream dropped (%s); reconnecting in %.2f s", reason, delay)
            await asyncio.sleep(delay)

    async def _keepalive(self, ws) -> None:
        while True:
            await asyncio.sleep(self.cfg.listen_key_keepalive_s)
            dropped = self.orders.gc()
            if dropped:
                log.info("forgot %d terminal orders one channel never confirmed", dropped)
            reply = await self._safe_request("PUT", "/fapi/v1/listenKey", api_key=True)
            if reply is None or not reply.ok:
                log.warning("listen key keepalive failed (%s); recreating the user stream",
                            reply.error_value() if reply else "rate limited")
                await ws.close()
                return

    async def _read_user(self, ws) -> str:
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                if self._on_user(msg.data):
                    return "listen key expired"
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return f"closed by server ({ws.close_code})"
            elif msg.type == aiohttp.WSMsgType.ERROR:
                return f"error {ws.exception()}"

    def _on_user(self, raw) -> bool:
        """Handle one user-stream frame; True when the listen key expired."""
        try:
            msg = orjson.loads(raw)
            kind = msg.get("e")
        except (orjson.JSONDecodeError, AttributeError):
            log.warning("unparseable user frame dropped: %.80r", raw)
            return False
        try:
            if kind in (wire.ORDER_TRADE_UPDATE, wire.TRADE_LITE):
                lite = kind == wire.TRADE_LITE
                ev, ts_ms = (msg if lite else msg["o"]), int(msg.get("T") or msg.get("E") or 0)
                rec = self.orders.on_trade_lite(ev) if lite else self.orders.on_ws_update(ev, ts_ms)
                if rec is not None:
                    self.publish_order(rec)
                elif self._is_stray(ev.get("c", ""), ev.get("X", "")):
                    # ours by its prefix, live, and unknown here (e.g. a submit given up as never placed that
                    # landed after all): reconciliation cancels or adopts it, so no order lives unmanaged
                    log.warning("live order %s is unknown to this connector", ev.get("c"))
                    self.request_reconcile("an unknown order of ours is live")
                else:
                    self._exchange_fill(ev, ts_ms)
            elif kind == "ACCOUNT_UPDATE":
                ts = int(msg.get("T") or msg.get("E") or 0) * 1_000_000
                self.perp.on_account_update(msg, now_ns())
                for p in msg.get("a", {}).get("P", []):
                    if p.get("ps", "BOTH") == "BOTH":
                        self.publish_position(p["s"].lower(), float(p["pa"]), ts)
            elif kind == "listenKeyExpired":
                return True
            else:
                log.info("user event %s ignored", kind)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("malformed %s user frame dropped (%s)", kind, exc)
        return False

    def _is_stray(self, client_id: str, status: str) -> bool:
        prefix = self.cfg.order_prefix
        return (bool(prefix) and client_id.startswith(prefix) and client_id not in self.orders.by_client
                and status in ("NEW", "PARTIALLY_FILLED"))

    def _exchange_fill(self, ev: dict, ts_ms: int) -> None:
        """Liquidation/ADL/settlement/delivery fills go to every bot (like the position they move)."""
        symbol = str(ev.get("s", "")).lower()
        tick = self.symbol_info.get(symbol, (0.0, 0.0))[0]
        fill = self.orders.on_exchange_fill(ev, tick, ts_ms)
        if fill is not None:
            log.warning("%s: exchange-placed fill %s %s %s at %s (order id %d for the bots)", symbol, ev.get("c"),
                        ev.get("S"), ev.get("l"), ev.get("L"), fill.order_id)
            self.send(TO_ALL, codec.OrderUpdate(symbol, fill))

    async def _prepare_symbol(self, symbol: str) -> None:
        """First use of a symbol with credentials: optional cancel-all, then its position."""
        if self.cfg.cancel_on_start and not self.cfg.adopt_orders and symbol not in self._cancelled_at_start:
            self._cancelled_at_start.add(symbol)
            await self._safe_request("DELETE", "/fapi/v1/allOpenOrders", {"symbol": symbol.upper()}, signed=True)
            for rec in self.orders.open_orders(symbol):
                self.publish_order(rec, self.orders.cancelled_by_rest(rec))
        await self._refresh_positions()

    async def _after_user_connect(self, first: bool) -> None:
        if first:
            for symbol in list(self.symbol_info):
                await self._prepare_symbol(symbol)
            await self._refresh_positions()
        else:
            self.request_reconcile("user stream reconnected")

    def _on_rest_recovered(self) -> None:
        if self.cfg.has_credentials and self._user_connected_once:  # before that there is nothing to reconcile
            self.request_reconcile("REST answers again")

    def request_reconcile(self, why: str) -> None:
        """Reconcile every symbol's orders and the positions with REST, once more if asked again meanwhile (the
        answer must postdate the event that asked)."""
        self._reconcile_again = True
        if self._reconciler is None or self._reconciler.done():
            self._reconciler = self.spawn(self._reconcile_all(why))

    async def _reconcile_all(self, why: str) -> None:
        while self._reconcile_again:
            self._reconcile_again = False
            log.info("reconciling orders and positions with the exchange (%s)", why)
            for symbol in list(self.symbol_info):
                await self._reconcile(symbol)
            await self._refresh_positions()

    async def _refresh_positions(self) -> None:
        asked = self.rest.now_ms() * 1_000_000
        reply = await self._safe_request("GET", "/fapi/v2/positionRisk", signed=True)
        if reply is None or not reply.ok:
            return
        seen = set()
        for row in reply.data:
            if row.get("positionSide", "BOTH") != "BOTH":
                continue
            symbol = row["symbol"].lower()
            seen.add(symbol)
            self.publish_position(symbol, float(row["positionAmt"]), int(row.get("updateTime", 0)) * 1_000_000, asked)
        for symbol in self.symbol_info:
            if symbol not in seen:
                self.publish_position(symbol, 0.0, 0, asked)

    async def _reconcile(self, symbol: str) -> None:
        """After a user-stream gap or a REST outage: make our view of open orders match the exchange's. Orders it
        no longer lists are asked for one by one (filled, cancelled, or unknown to an exchange that lost its
        state: expired), and so are dead ones with executions the stream has not delivered. Orders with a request
        in flight are left to that request's answer."""
        reply = await self._safe_request("GET", "/fapi/v1/openOrders", {"symbol": symbol.upper()}, signed=True)
        if reply is None or not reply.ok:
            log.warning("%s: open orders unavailable (%s); not reconciled", symbol,
                        reply.error_value() if reply else "rate limited")
            return
        listed = {row["clientOrderId"]: row for row in reply.data}
        unknown_ours = False
        for cid, row in listed.items():
            rec = self.orders.by_client.get(cid)
            if rec is not None:
                if rec.inflight or rec.reported_terminal:
                    continue  # a request's answer decides; or it ended after this listing was made
                before = (rec.order.status, rec.order.leaves_qty)
                fwd = self.orders.on_rest_catch_up(rec, row)
                if fwd is not None and ((fwd.status, fwd.leaves_qty) != before or fwd.exec_qty > 0):
                    self.publish_order(rec, fwd)
            elif cid.startswith(self.cfg.order_prefix) and self.cfg.order_prefix:
                if self.cfg.adopt_orders:
                    unknown_ours = True
                    continue
                log.warning("open order %s unknown to this connector: cancelling", cid)
                await self._safe_request("DELETE", "/fapi/v1/order",
                                         {"symbol": symbol.upper(), "origClientOrderId": cid}, signed=True)
        if unknown_ours:
            await self._adopt_open_orders(symbol, self.symbol_info[symbol][0])
        for rec in self.orders.open_orders(symbol) + self.orders.unforwarded(symbol):
            if rec.client_id not in listed and not rec.inflight:
                await self._resolve(rec, False, reconciling=True)
