"""Accounts, orders and fills of the emulator (one-way mode, USDT-margined linear contracts).

Matching, queue position and fills are the backtest's: each symbol's `Market` drives a `kernels.core.ExchangeCore`
(the backtest exchange kernels, stepped by every book change, trade and order request) configured with the venue's
queue and exchange models (`CoreConfig.from_names`; see docs/emulator.md). This module keeps what is Binance's:
request validation and error codes, order and account bookkeeping (balances, positions, margin, fees as Binance
reports them) and the user-stream payloads. Own orders never change the replayed book.
"""
from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..binance import wire
from ..binance.numbers import decimals_in, money, on_step
from ..errors import ConfigError
from ..kernels.core import CoreConfig, ExchangeCore
from ..types import BUY, EXPIRED, SELL
from ..binance.symbols import SymbolSpec
from .market import ASK, BID, Book

CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
SIDES = dict(zip(wire.SIDES, (BID, ASK)))
SIDE_NAMES = {v: k for k, v in SIDES.items()}
TIFS = wire.TIME_IN_FORCE[:4]  # GTD is refused (-1115)
ACTIVE = wire.OPEN_STATUSES
MAX_AMENDMENTS = 10_000  # per order (Binance)
UNKNOWN_ORDER = (-2011, "Unknown order sent.")  # (code, msg) of find_order's refusals
NO_SUCH_ORDER = (-2013, "Order does not exist.")
SYNC_BACKLOG = 4096  # book changes held back from an idle core before it is rebuilt from the book instead


class ApiError(Exception):
    """A Binance-style error reply `{"code": code, "msg": msg}` with its HTTP status."""

    def __init__(self, code: int, msg: str, http: int = 400):
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.http = code, msg, http

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


class AccountExists(ConfigError):
    """`add_account` with an API key that already has an account (accounts are never replaced)."""


@dataclass(eq=False)
class Order:
    order_id: int
    client_id: str
    account: "Account"
    spec: SymbolSpec
    side: int
    type: str
    tif: str
    price_tick: int
    qty: int  # lots
    reduce_only: bool
    time: int
    update_time: int
    executed: int = 0
    cum_quote: float = 0.0
    status: str = "NEW"
    amendments: int = 0

    @property
    def leaves(self) -> int:
        return self.qty - self.executed

    def avg_price(self) -> float:
        return self.cum_quote / (self.executed * self.spec.lot_size) if self.executed else 0.0

    def rest_body(self, with_time: bool = False) -> dict:
        spec = self.spec
        body = {
            "orderId": self.order_id, "symbol": spec.symbol, "status": self.status, "clientOrderId": self.client_id,
            "price": spec.fmt_price(self.price_tick) if self.type == "LIMIT" else "0",
            "avgPrice": f"{self.avg_price():.{spec.price_decimals + 3}f}",
            "origQty": spec.fmt_qty(self.qty), "executedQty": spec.fmt_qty(self.executed),
            "cumQty": spec.fmt_qty(self.executed), "cumQuote": money(self.cum_quote),
            "timeInForce": self.tif, "type": self.type, "reduceOnly": self.reduce_only, "closePosition": False,
            "side": SIDE_NAMES[self.side], "positionSide": "BOTH", "stopPrice": "0",
            "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": self.type, "priceMatch": "NONE",
            "selfTradePreventionMode": "NONE", "goodTillDate": 0, "updateTime": self.update_time,
        }
        if with_time:
            body["time"] = self.time
        return body


@dataclass
class Position:
    lots: int = 0
    entry: float = 0.0
    update_time: int = 0


@dataclass(eq=False)
class Account:
    api_key: str
    secret: str = field(repr=False)
    balance: float
    maker_fee: float
    taker_fee: float
    leverage: dict[str, int] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)  # every order ever accepted
    live: dict[int, Order] = field(default_factory=dict)  # NEW / PARTIALLY_FILLED only
    by_client_id: dict[tuple[str, str], Order] = field(default_factory=dict)  # latest order per (symbol, id)
    realized_pnl: float = 0.0
    fees: float = 0.0
    ledger: list[dict] = field(default_factory=list)
    update_time: int = 0

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position()
        return pos

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.live.values() if symbol is None or o.spec.symbol == symbol]


class Market:
    """One symbol: its book, the exchange core matching every account's orders against it, the orders resting
    there, id counters."""

    def __init__(self, spec: SymbolSpec, models: tuple[str, str] = ("risk_averse", "partial_fill")):
        self.spec = spec
        self.book = Book()
        self.core = ExchangeCore(CoreConfig.from_names(spec.tick_size, spec.lot_size, *models))
        self.resting: dict[int, Order] = {}  # orders the core holds (NEW / PARTIALLY_FILLED)
        self.own_trade_ids = itertools.count(1)
        # Book changes not yet handed to the core: while nothing rests they cannot fill anything, so they go in
        # one batch before the next order; past SYNC_BACKLOG the core is rebuilt from the book instead.
        self.unsynced: list[tuple[int, int, int]] | None = []

    def queue_ahead(self, order: Order) -> float | None:
        """The queue model's estimate of the lots ahead of a resting order (None if it does not rest)."""
        q = self.core.queue_ahead(order.order_id)
        return None if q is None else q / self.spec.lot_size

    def mark_price(self) -> float:
        mid = self.book.mid_tick()
        return mid * self.spec.tick_size if mid is not None else 0.0


def _param(params: dict, name: str, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        return None
    return value


def _to_steps(text: str, step: float, name: str, error: tuple[int, str], precision: int) -> int:
    """A price/quantity parameter in steps; `error` (code, msg) when it is off the step (raised only then: this
    runs twice per order)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    if decimals_in(text) > precision:
        raise ApiError(-1111, "Precision is over the maximum defined for this asset.")
    if not on_step(value, step):
        raise ApiError(*error)
    return int(round(value / step))


class Venue:
    """All markets and accounts. `notify(account, payload)` pushes user-stream events; `now_ms()` is server time."""

    def __init__(self, specs: list[SymbolSpec], now_ms: Callable[[], int] | None = None,
                 notify: Callable[[Account, dict], None] | None = None, default_leverage: int = 20,
                 queue: str = "risk_averse", exchange: str = "partial_fill"):
        """`queue` / `exchange`: the matching models by name (`kernels.core.parse_queue`, EXCHANGE_MODELS)."""
        self._models = (queue, exchange)
        self.markets = {s.symbol: Market(s, self._models) for s in specs}
        self.accounts: dict[str, Account] = {}
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.notify = notify or (lambda account, payload: None)
        self.default_leverage = default_leverage
        self._order_ids = itertools.count(4_000_000_001)
        self._ledger_seq = itertools.count(1)
        self._auto_client_ids = itertools.count(1)
        # fault injection: returns the parameters of `kind` when that fault fires now (order_reject, unknown_enum)
        self.fault_hook: Callable[[str], dict | None] = lambda kind: None
        self.counters = {"orders": 0, "fills": 0, "rejections": 0, "cancels": 0, "amendments": 0}

    # -- accounts -------------------------------------------------------------------------------------------
    def add_account(self, api_key: str, secret: str, balance: float = 10_000.0, maker_fee: float = 0.0002,
                    taker_fee: float = 0.0005, leverage: int | None = None) -> Account:
        """A new account; an existing API key is refused (its owner keeps its orders and balance)."""
        if api_key in self.accounts:
            raise AccountExists(f"an account with API key {api_key[:4]}... exists; accounts are never replaced")
        account = Account(api_key, secret, float(balance), maker_fee, taker_fee)
        account.update_time = self.now_ms()  # Binance never reports 0 for a live account (ccxt hides such balances)
        for symbol in self.markets:
            account.leverage[symbol] = leverage or self.default_leverage
        self.accounts[api_key] = account
        return account

    def add_market(self, spec: SymbolSpec) -> Market:
        """A symbol listed after the start (paper trading learns them as bots register); accounts get the
        default leverage there."""
        market = self.markets.get(spec.symbol)
        if market is None:
            market = self.markets[spec.symbol] = Market(spec, self._models)
            for account in self.accounts.values():
                account.leverage.setdefault(spec.symbol, self.default_leverage)
        return market

    def market(self, symbol: str | None) -> Market:
        if not symbol:
            raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        m = self.markets.get(symbol.upper())
        if m is None:
            raise ApiError(-1121, "Invalid symbol.")
        return m

    def _record(self, account: Account, order: Order, event: str, **extra) -> None:
        entry = {"seq": next(self._ledger_seq), "time": order.update_time, "event": event,
                 "symbol": order.spec.symbol, "orderId": order.order_id, "clientOrderId": order.client_id,
                 "side": SIDE_NAMES[order.side], "type": order.type, "timeInForce": order.tif,
                 "price": round(order.price_tick * order.spec.tick_size, order.spec.price_decimals),
                 "qty": round(order.qty * order.spec.lot_size, order.spec.qty_decimals),
                 "executedQty": round(order.executed * order.spec.lot_size, order.spec.qty_decimals),
                 "status": order.status}
        entry.update(extra)
        account.ledger.append(entry)

    def record_rejection(self, account: Account, params: dict, error: ApiError) -> None:
        self.counters["rejections"] += 1
        account.ledger.append({"seq": next(self._ledger_seq), "time": self.now_ms(), "event": "REJECTED",
                               "symbol": params.get("symbol"), "orderId": None,
                               "clientOrderId": params.get("newClientOrderId"), "side": params.get("side"),
                               "code": error.code, "msg": error.msg})

    # -- user stream payloads -------------------------------------------------------------------------------
    def _order_update(self, order: Order, x: str, last_lots: int = 0, last_tick: int = 0, fee: float = 0.0,
                      maker: bool = False, trade_id: int = 0, rp: float = 0.0) -> None:
        spec, account = order.spec, order.account
        now = order.update_time
        bids = asks = 0  # the account's open buy / sell notional on this symbol, in tick-lots
        for o in account.live.values():
            if o.spec is spec:
                if o.side == BID:
                    bids += o.leaves * o.price_tick
                else:
                    asks += o.leaves * o.price_tick
        unit = spec.tick_size * spec.lot_size
        o = {
            "s": spec.symbol, "c": order.client_id, "S": SIDE_NAMES[order.side], "o": order.type, "f": order.tif,
            "q": spec.fmt_qty(order.qty), "p": spec.fmt_price(order.price_tick) if order.type == "LIMIT" else "0",
            "ap": f"{order.avg_price():.{spec.price_decimals + 3}f}", "sp": "0", "x": x, "X": order.status,
            "i": order.order_id, "l": spec.fmt_qty(last_lots),
            "z": spec.fmt_qty(order.executed), "L": spec.fmt_price(last_tick) if last_lots else "0",
            "N": "USDT", "n": money(fee), "T": now, "t": trade_id, "b": money(bids * unit), "a": money(asks * unit),
            "m": maker, "R": order.reduce_only, "wt": "CONTRACT_PRICE", "ot": order.type, "ps": "BOTH", "cp": False,
            "rp": money(rp), "pP": False, "si": 0, "ss": 0, "V": "NONE", "pm": "NONE", "gtd": 0,
        }
        # (AP and cr exist only on TRAILING_STOP_MARKET orders, which the emulator does not take)
        event_ms = self.now_ms()
        if x == "TRADE":
            # https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/Event-Trade-Lite
            self.notify(account, {"e": wire.TRADE_LITE, "E": event_ms, "T": now, "s": spec.symbol, "q": o["q"],
                                  "p": o["p"], "m": maker, "c": order.client_id, "S": o["S"], "L": o["L"],
                                  "l": o["l"], "t": trade_id, "i": order.order_id})
        # https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/Event-Order-Update
        self.notify(account, {"e": wire.ORDER_TRADE_UPDATE, "E": event_ms, "T": now, "o": o})

    def _account_update(self, account: Account, symbol: str) -> None:
        market = self.markets[symbol]
        pos = account.position(symbol)
        spec = market.spec
        upnl = self._upnl(account, symbol)
        now = self.now_ms()
        self.notify(account, {"e": wire.ACCOUNT_UPDATE, "E": now, "T": pos.update_time or now, "a": {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": money(account.balance), "cw": money(account.balance), "bc": "0"}],
            "P": [{"s": symbol, "pa": spec.fmt_qty(pos.lots), "ep": money(pos.entry), "bep": money(pos.entry),
                   "cr": money(account.realized_pnl), "up": money(upnl), "mt": "cross", "iw": "0", "ps": "BOTH"}],
        }})

    # -- risk -----------------------------------------------------------------------------------------------
    def _upnl(self, account: Account, symbol: str) -> float:
        pos = account.positions.get(symbol)
        if not pos or not pos.lots:
            return 0.0
        mark = self.markets[symbol].mark_price() or pos.entry
        return (mark - pos.entry) * pos.lots * self.markets[symbol].spec.lot_size

    def available_balance(self, account: Account) -> float:
        used = 0.0
        upnl = 0.0
        for symbol, market in self.markets.items():
            lev = account.leverage.get(symbol, self.default_leverage)
            pos = account.positions.get(symbol)
            mark = market.mark_price()
            if pos and pos.lots:
                used += abs(pos.lots) * market.spec.lot_size * (mark or pos.entry) / lev
                upnl += self._upnl(account, symbol)
            for o in account.open_orders(symbol):
                used += o.leaves * market.spec.lot_size * o.price_tick * market.spec.tick_size / lev
        return account.balance + upnl - used

    # -- order entry ----------------------------------------------------------------------------------------
    def place_order(self, account: Account, params: dict) -> tuple[Order, dict]:
        """Validate, create and match a new order; returns the order and its REST reply body."""
        try:
            reject = self.fault_hook("order_reject")
            if reject is not None:
                raise ApiError(int(reject["code"]), reject["msg"], int(reject["status"]))
            order = self._new_order(account, params)
        except ApiError as err:
            self.record_rejection(account, params, err)
            raise
        resp_type = params.get("newOrderRespType", "ACK")
        ack = order.rest_body()
        self._execute_new(order)
        return order, (order.rest_body() if resp_type == "RESULT" else ack)

    def _new_order(self, account: Account, params: dict) -> Order:
        market = self.market(_param(params, "symbol"))
        spec, book = market.spec, market.book
        side_name = _param(params, "side")
        if side_name not in SIDES:
            raise ApiError(-1117, "Invalid side.")
        side = SIDES[side_name]
        otype = _param(params, "type")
        if otype in wire.CONDITIONAL_TYPES:
            # derivatives change-log 2025-11-06: conditional orders moved to the Algo Order API (/fapi/v1/algoOrder,
            # not served here); the order endpoints refuse them since 2025-12-09
            raise ApiError(-4120, "Order type not supported for this endpoint. Please use the Algo Order API "
                                  "endpoints instead.")
        if otype not in ("LIMIT", "MARKET"):
            raise ApiError(-1116, "Invalid orderType.")
        if params.get("priceMatch", "NONE") != "NONE":  # it would set the price: refused rather than ignored
            raise ApiError(-1000, "The emulator does not support priceMatch (send a price).")
        if params.get("positionSide", "BOTH") != "BOTH":
            raise ApiError(-4061, "Order's position side does not match user's setting.")
        qty = _to_steps(_param(params, "quantity"), spec.lot_size, "quantity",
                        (-4023, "Quantity not increased by step size."), spec.qty_decimals)
        if qty <= 0:
            raise ApiError(-4003, "Quantity less than or equal to zero.")
        max_qty = spec.market_max_qty if otype == "MARKET" else spec.max_qty
        if qty * spec.lot_size < spec.min_qty - 1e-12 or qty * spec.lot_size > max_qty + 1e-12:
            raise ApiError(-1013, f"Invalid quantity: must be between {spec.min_qty} and {max_qty}.")
        if otype == "LIMIT":
            tif = _param(params, "timeInForce")
            if tif not in TIFS:
                raise ApiError(-1115, "Invalid timeInForce.")
            price_tick = _to_steps(_param(params, "price"), spec.tick_size, "price",
                                   (-4014, "Price not increased by tick size."), spec.price_decimals)
            if price_tick <= 0:
                raise ApiError(-4013, "Price less than min price.")
            mark = market.mark_price()
            price = price_tick * spec.tick_size
            if mark and side == BID and price > mark * spec.percent_up:
                raise ApiError(-4016, f"Limit price can't be higher than {spec.fmt_price(int(mark * spec.percent_up / spec.tick_size))}.")
            if mark and side == ASK and price < mark * spec.percent_down:
                raise ApiError(-4024, f"Limit price can't be lower than {spec.fmt_price(int(mark * spec.percent_down / spec.tick_size) + 1)}.")
        else:
            for extra in ("price", "timeInForce"):
                if params.get(extra) not in (None, ""):
                    raise ApiError(-1106, f"Parameter '{extra}' sent when not required.")
            tif = "GTC"
            price_tick = 0
        reduce_only = str(params.get("reduceOnly", "false")).lower() == "true"
        cid = params.get("newClientOrderId") or f"emu-{next(self._auto_client_ids)}"
        if not CLIENT_ID_RE.match(cid):
            raise ApiError(-4015, "Client order id is not valid.")
        previous = account.by_client_id.get((spec.symbol, cid))
        if previous is not None and previous.status in ACTIVE:
            raise ApiError(-4116, "ClientOrderId is duplicated.")
        if len(account.open_orders(spec.symbol)) >= spec.max_num_orders:
            raise ApiError(-4025, "Exceeded the maximum allowable number of open orders.")
        ref_tick = price_tick if otype == "LIMIT" else (book.best_ask if side == BID else book.best_bid) or 0
        notional = qty * spec.lot_size * ref_tick * spec.tick_size
        pos = account.position(spec.symbol)
        if reduce_only:
            if pos.lots == 0 or (pos.lots > 0) == (side == BID) or qty > abs(pos.lots):
                raise ApiError(-2022, "ReduceOnly Order is rejected.")
        elif notional < spec.min_notional - 1e-9 and otype == "LIMIT":
            raise ApiError(-4164, f"Order's notional must be no smaller than {spec.min_notional:g} (unless you choose reduce only).")
        if otype == "LIMIT" and tif == "GTX":
            crosses = (book.best_ask is not None and price_tick >= book.best_ask) if side == BID else \
                      (book.best_bid is not None and price_tick <= book.best_bid)
            if crosses:
                raise ApiError(-5022, "Due to the order could not be executed as maker, the Post Only order will be rejected. The order will not be recorded in the order history")
        increases = not reduce_only and (pos.lots == 0 or (pos.lots > 0) == (side == BID) or qty > abs(pos.lots))
        if increases:
            lev = account.leverage.get(spec.symbol, self.default_leverage)
            if notional / lev > self.available_balance(account) + 1e-9:
                raise ApiError(-2019, "Margin is insufficient.")
        now = self.now_ms()
        order = Order(next(self._order_ids), cid, account, spec, side, otype, tif, price_tick, qty, reduce_only,
                      now, now)
        account.orders[order.order_id] = order
        account.live[order.order_id] = order
        account.by_client_id[(spec.symbol, cid)] = order
        self.counters["orders"] += 1
        return order

    def _execute_new(self, order: Order) -> None:
        account, market = order.account, self.markets[order.spec.symbol]
        self._record(account, order, "NEW")
        self._order_update(order, "NEW")
        best = market.book.best_ask if order.side == BID else market.book.best_bid
        if order.type == "MARKET" and best is None:
            return self._finish(order, "EXPIRED")  # nothing to take
        ts = order.time * 1_000_000  # the order's server time (ms), as the core's exchange time
        self._sync(market, ts)
        market.resting[order.order_id] = order
        replies = market.core.submit(order.order_id, order.side, order.price_tick or best,
                                     order.qty * order.spec.lot_size, order.tif, order.type, ts)
        if replies:
            self._apply(market, replies)
        if order.status in ACTIVE and self.fault_hook("unknown_enum") is not None:
            # self-trade prevention outcome; older clients lack it
            market.core.cancel(order.order_id, self._ns())
            self._finish(order, "EXPIRED_IN_MATCH", "EXPIRED")

    def _ns(self) -> int:
        return self.now_ms() * 1_000_000

    def _apply(self, market: Market, replies) -> None:
        """Book the core's replies: fills into orders and accounts, expiries (IOC / FOK / MARKET remainders)."""
        lot = market.spec.lot_size
        for r in replies:
            order = market.resting.get(r.order_id)
            if order is None or r.rejected:
                continue
            if r.fill_qty:
                self._fill(order, round(r.fill_qty / lot), r.exec_price_tick, r.maker)
            if r.status == EXPIRED and order.status in ACTIVE:
                self._finish(order, "EXPIRED")

    def _finish(self, order: Order, status: str, execution: str | None = None, now: int | None = None) -> None:
        order.status = status
        order.update_time = self.now_ms() if now is None else now
        self.markets[order.spec.symbol].resting.pop(order.order_id, None)
        order.account.live.pop(order.order_id, None)
        self._record(order.account, order, status)
        self._order_update(order, execution or status)

    def _fill(self, order: Order, lots: int, tick: int, maker: bool) -> None:
        account, spec = order.account, order.spec
        price = round(tick * spec.tick_size, spec.price_decimals)
        qty = round(lots * spec.lot_size, spec.qty_decimals)
        notional = price * qty
        fee = round(notional * (account.maker_fee if maker else account.taker_fee), 12)
        pos = account.position(spec.symbol)
        signed = lots * order.side
        rp = 0.0
        if pos.lots == 0 or (pos.lots > 0) == (signed > 0):
            total = abs(pos.lots) + lots
            pos.entry = (pos.entry * abs(pos.lots) + price * lots) / total
        else:
            closing = min(lots, abs(pos.lots))
            rp = round((price - pos.entry) * closing * spec.lot_size * (1 if pos.lots > 0 else -1), 10)
            if lots > abs(pos.lots):
                pos.entry = price
            elif lots == abs(pos.lots):
                pos.entry = 0.0
        pos.lots += signed
        now = self.now_ms()
        pos.update_time = now
        account.realized_pnl += rp
        account.fees += fee
        account.balance += rp - fee
        account.update_time = now
        order.executed += lots
        order.cum_quote += notional
        order.status = "FILLED" if order.leaves <= 0 else "PARTIALLY_FILLED"
        order.update_time = now
        if order.status == "FILLED":
            self.markets[spec.symbol].resting.pop(order.order_id, None)
            account.live.pop(order.order_id, None)
        trade_id = next(self.markets[spec.symbol].own_trade_ids)
        self.counters["fills"] += 1
        self._record(account, order, "TRADE", lastQty=qty, lastPrice=price, maker=maker, fee=fee, realizedPnl=rp,
                     tradeId=trade_id)
        self._order_update(order, "TRADE", lots, tick, fee, maker, trade_id, rp)
        self._account_update(account, spec.symbol)

    # -- order management -----------------------------------------------------------------------------------
    def find_order(self, account: Account, params: dict, unknown: tuple[int, str]) -> Order:
        """The account's order named by orderId or origClientOrderId; ApiError(*unknown) when there is none."""
        market = self.market(_param(params, "symbol"))
        oid, cid = params.get("orderId"), params.get("origClientOrderId")
        if not oid and not cid:
            raise ApiError(-1102, "Either orderId or origClientOrderId must be sent.")
        if oid:
            try:
                order = account.orders.get(int(oid))
            except ValueError:
                raise ApiError(-1102, "Mandatory parameter 'orderId' was not sent, was empty/null, or malformed.") from None
        else:
            order = account.by_client_id.get((market.spec.symbol, cid))
        if order is None or order.spec is not market.spec:
            raise ApiError(*unknown)
        return order

    def cancel_order(self, account: Account, params: dict) -> dict:
        order = self.find_order(account, params, UNKNOWN_ORDER)
        if order.status not in ACTIVE:
            raise ApiError(*UNKNOWN_ORDER)
        self.counters["cancels"] += 1
        self._cancel(order)
        return order.rest_body()

    def _cancel(self, order: Order) -> None:
        market = self.markets[order.spec.symbol]
        now = self.now_ms()
        if order.order_id in market.resting:
            market.core.cancel(order.order_id, now * 1_000_000)
        self._finish(order, "CANCELED", now=now)

    def cancel_all(self, account: Account, params: dict) -> dict:
        market = self.market(_param(params, "symbol"))
        for order in account.open_orders(market.spec.symbol):
            self.counters["cancels"] += 1
            self._cancel(order)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def query_order(self, account: Account, params: dict) -> dict:
        return self.find_order(account, params, NO_SUCH_ORDER).rest_body(with_time=True)

    def modify_order(self, account: Account, params: dict) -> dict:
        """Binance USD-M amend: LIMIT only, both price and quantity required. A filter violation rejects the
        amendment and leaves the order as it was; an amendment that would make a GTX order take liquidity, or
        that lowers a partially filled order's quantity to its executed quantity or below, cancels the order.
        An amended order re-enters the matching core as a new order: the back of the queue at its (new) price,
        taking liquidity if it crosses."""
        order = self.find_order(account, params, NO_SUCH_ORDER)
        spec = order.spec
        if order.status not in ACTIVE:
            raise ApiError(*NO_SUCH_ORDER)
        if order.type != "LIMIT":
            raise ApiError(-4052, "Only limit order is supported.")
        if _param(params, "side") != SIDE_NAMES[order.side]:
            raise ApiError(-1117, "Invalid side.")
        qty = _to_steps(_param(params, "quantity"), spec.lot_size, "quantity",
                        (-4023, "Quantity not increased by step size."), spec.qty_decimals)
        price_tick = _to_steps(_param(params, "price"), spec.tick_size, "price",
                               (-4014, "Price not increased by tick size."), spec.price_decimals)
        if qty <= 0:
            raise ApiError(-4003, "Quantity less than or equal to zero.")
        if price_tick == order.price_tick and qty == order.qty:
            raise ApiError(-5027, "No need to modify the order.")
        if order.amendments >= MAX_AMENDMENTS:
            raise ApiError(-5026, "Exceed maximum modify order limit.")
        book = self.markets[spec.symbol].book
        crosses = (book.best_ask is not None and price_tick >= book.best_ask) if order.side == BID else \
                  (book.best_bid is not None and price_tick <= book.best_bid)
        order.amendments += 1
        self.counters["amendments"] += 1
        if qty <= order.executed or (crosses and order.tif == "GTX"):
            self.counters["cancels"] += 1
            self._cancel(order)
            return order.rest_body()
        before = (order.price_tick, order.qty)
        order.price_tick, order.qty = price_tick, qty
        order.update_time = self.now_ms()
        self._record(account, order, "AMENDMENT", priceBefore=spec.fmt_price(before[0]),
                     qtyBefore=spec.fmt_qty(before[1]), amendmentCount=order.amendments)
        self._order_update(order, "AMENDMENT")
        market, ts = self.markets[spec.symbol], self._ns()
        self._sync(market)
        market.core.cancel(order.order_id, ts)  # (the core's own modify keeps the queue on a smaller qty)
        self._apply(market, market.core.submit(order.order_id, order.side, price_tick, order.leaves * spec.lot_size,
                                               order.tif, "LIMIT", ts))
        return order.rest_body()

    # -- market events --------------------------------------------------------------------------------------
    def on_depth(self, market: Market, changes) -> None:
        """Displayed levels changed, in this order: [(side, tick, lots)] (the book already shows them)."""
        pending = market.unsynced
        if pending is None:
            return
        pending += changes
        if market.resting:
            self._sync(market)
        elif len(pending) > SYNC_BACKLOG:
            market.unsynced = None

    def _sync(self, market: Market, ts: int | None = None) -> None:
        """Hand the book changes the core has not seen to it (before any order reaches it), at exchange time
        `ts` (default: now)."""
        pending = market.unsynced
        if pending is not None and not pending:
            return
        if ts is None:
            ts = self._ns()
        if pending is None:  # (nothing rests: a clear cannot touch any order)
            market.core.clear(ts)
            book = market.book
            pending = [(BID, t, q) for t, q in book.bids.items()] + [(ASK, t, q) for t, q in book.asks.items()]
        market.unsynced = []
        rows = np.fromiter(itertools.chain.from_iterable(pending), np.int64, 3 * len(pending))
        replies = market.core.depths(rows, ts, market.spec.lot_size)
        if replies:
            self._apply(market, replies)

    def on_trade(self, market: Market, tick: int, lots: int, buyer_is_maker: bool) -> None:
        """A market trade; a seller aggressor (`buyer_is_maker`) can fill resting bids. With nothing resting the
        core has nothing to fill and the book changes stay pending."""
        if not market.resting:
            return
        ts = self._ns()
        self._sync(market, ts)
        replies = market.core.trade(SELL if buyer_is_maker else BUY, tick, lots * market.spec.lot_size, ts)
        if replies:
            self._apply(market, replies)

    # -- views ----------------------------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a test wants to assert on: per account orders, positions, balances; counters."""
        out = {"counters": dict(self.counters), "accounts": {}}
        for key, account in self.accounts.items():
            out["accounts"][key] = {
                "balance": account.balance, "realized_pnl": account.realized_pnl, "fees": account.fees,
                "positions": {s: {"qty": p.lots * self.markets[s].spec.lot_size, "entry": p.entry}
                              for s, p in account.positions.items()},
                "open_orders": [o.rest_body(with_time=True) for o in account.open_orders()],
            }
        return out
