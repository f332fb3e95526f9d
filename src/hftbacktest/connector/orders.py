"""Connector-side order state: client ids, REST replies and user-stream updates merged without loss or duplicates.

Binance reports an order's fate on two channels (REST reply and ORDER_TRADE_UPDATE) in no fixed order.
Each record keeps which channel already reported it terminal, so bots get exactly one terminal update,
late fills are still forwarded, and the bot's order id is free for reuse as soon as the order is dead.
"""
from __future__ import annotations

import logging
import secrets
import string
import time
from dataclasses import dataclass, field

from ..binance import wire
from ..binance.wire import EXCHANGE_ORDER_PREFIXES
from ..live.ipc.codec import WireOrder
from ..types import (
    BUY, CANCELED, EXPIRED, FILLED, FOK, GTC, GTX, IOC, LIMIT, MARKET, NEW, NONE, PARTIALLY_FILLED, REJECTED,
    REPLACED, SELL, UNSUPPORTED,
)

log = logging.getLogger(__name__)

# Binance's names (binance.wire) -> the bot's enums; names missing here map to UNSUPPORTED.
STATUS = dict(zip(wire.ORDER_STATUSES, (NEW, PARTIALLY_FILLED, FILLED, CANCELED, REJECTED, EXPIRED, EXPIRED)))
SIDE = dict(zip(wire.SIDES, (BUY, SELL)))
TIF = dict(zip(wire.TIME_IN_FORCE[:4], (GTC, IOC, FOK, GTX)))
ORDER_TYPE = dict(zip(wire.ORDER_TYPES[:2], (LIMIT, MARKET)))
SIDE_NAME, TIF_NAME, ORDER_TYPE_NAME = ({v: k for k, v in m.items()} for m in (SIDE, TIF, ORDER_TYPE))
ALIVE = (NEW, PARTIALLY_FILLED)


def _tolerance(qty: float) -> float:
    return 1e-9 * max(qty, 1.0)


UNCHANGED = ("unchanged",)  # modify_target of an amendment asking for the price and qty the order already has


def _same_state(order: WireOrder, target: tuple) -> bool:
    price_tick, qty = target
    return order.price_tick == price_tick and abs(order.qty - qty) <= _tolerance(qty)


def is_terminal(status: int) -> bool:
    return status not in ALIVE and status != UNSUPPORTED  # an unknown status is not proof of death


EXCHANGE_FILL_ID = 1 << 63  # bot order id of such a fill: this + Binance's order id (above any id bots use)
_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ID_DIGITS = 11  # 62**11 > 2**64
GC_AGE_S = 300.0


@dataclass
class ManagedOrder:
    client_id: str
    symbol: str
    bot_id: int
    order: WireOrder
    removed_by_ws: bool = False
    removed_by_rest: bool = False
    cum_qty: float = 0.0  # sum of the forwarded fills
    cum_value: float = 0.0  # sum of price x qty of the forwarded fills
    dead_since: float = 0.0
    inflight: int = 0  # REST requests for this order not yet answered (reconciliation leaves such orders alone)
    trade_ids: set = field(default_factory=set)  # fills already forwarded (TRADE_LITE and ORDER_TRADE_UPDATE)
    # REST answers can be ahead of the user stream; the stream's reports of the fills they covered come later
    rest_cum: float = 0.0  # cumulative fill up to which a REST answer forwarded fills the stream had not
    # (price tick, qty) the pending modify asks for: only the user stream's AMENDMENT showing them answers it (an
    # earlier amendment's event can arrive after that amendment's own reply, while the next modify is pending)
    modify_target: tuple | None = None

    @property
    def reported_terminal(self) -> bool:
        return self.removed_by_ws or self.removed_by_rest


class OrderManager:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.by_client: dict[str, ManagedOrder] = {}
        self.live: dict[tuple[str, int], str] = {}  # (symbol, bot order id) -> client id
        self._exchange_fills: dict[tuple[str, object], None] = {}  # (client id, trade id) seen, oldest first

    def new_client_id(self, order_id: int) -> str:
        """prefix + the bot's order id (11 base-62 digits, so a restarted connector can adopt the order) + 5 random
        characters (a reused order id still gets a new client id)."""
        digits = []
        for _ in range(_ID_DIGITS):
            order_id, d = divmod(order_id, 62)
            digits.append(_ALPHABET[d])
        return self.prefix + "".join(reversed(digits)) + "".join(secrets.choice(_ALPHABET) for _ in range(5))

    def order_id_of(self, client_id: str) -> int | None:
        """The bot order id inside one of our client ids, or None if it is not one."""
        body = client_id[len(self.prefix):]
        if not client_id.startswith(self.prefix) or len(body) != _ID_DIGITS + 5:
            return None
        value = 0
        for ch in body[:_ID_DIGITS]:
            d = _ALPHABET.find(ch)
            if d < 0:
                return None
            value = value * 62 + d
        return value if value < 1 << 64 else None

    def adopt(self, symbol: str, client_id: str, order: WireOrder, bot_id: int) -> ManagedOrder | None:
        """Take over an open order found at the exchange (placed before a restart); None if its id is taken."""
        key = (symbol, order.order_id)
        if key in self.live or client_id in self.by_client:
            return None
        rec = ManagedOrder(client_id, symbol, bot_id, order, cum_qty=order.qty - order.leaves_qty)
        self.by_client[client_id] = rec
        self.live[key] = client_id
        return rec

    def owns(self, client_id: str) -> bool:
        return client_id.startswith(self.prefix) and client_id in self.by_client

    # --- requests from bots --------------------------------------------------------------------
    def submit(self, bot_id: int, symbol: str, order: WireOrder) -> ManagedOrder | None:
        """Register a new order; None if the bot's id is still live here (the caller refuses it)."""
        key = (symbol, order.order_id)
        if key in self.live:
            return None
        rec = ManagedOrder(self.new_client_id(order.order_id), symbol, bot_id, order._replace(status=NEW, req=NEW))
        self.by_client[rec.client_id] = rec
        self.live[key] = rec.client_id
        return rec

    def find_live(self, symbol: str, order_id: int) -> ManagedOrder | None:
        cid = self.live.get((symbol, order_id))
        return self.by_client.get(cid) if cid else None

    def mark_request(self, rec: ManagedOrder, req: int, local_ts: int, target: tuple | None = None) -> None:
        """A request of the bot is pending; `target`: the (price tick, qty) a modify asks for."""
        if req == REPLACED and target is not None and _same_state(rec.order, target):
            # Binance refuses an amendment that changes nothing (-5027) and no AMENDMENT event follows; a late
            # event of the previous amendment shows these very values and must not answer this one
            target = UNCHANGED
        rec.order = rec.order._replace(req=req, local_timestamp=local_ts)
        rec.modify_target = target if req == REPLACED else None

    # --- replies --------------------------------------------------------------------------------
    def _terminal(self, rec: ManagedOrder, channel: str) -> None:
        setattr(rec, channel, True)
        self.live.pop((rec.symbol, rec.order.order_id), None)
        if not rec.dead_since:
            rec.dead_since = time.monotonic()
        self._forget_if_done(rec)

    def _forget_if_done(self, rec: ManagedOrder) -> None:
        """Drop the record once both channels reported it dead and every execution they reported was forwarded:
        a fill's own reports can still be on their way when a later fill's ORDER_TRADE_UPDATE ended the order."""
        executed = rec.order.qty - rec.order.leaves_qty
        if rec.removed_by_ws and rec.removed_by_rest and rec.cum_qty >= executed - _tolerance(rec.order.qty):
            self.by_client.pop(rec.client_id, None)

    def on_rest_order(self, rec: ManagedOrder, body: dict, answers: int | None = None) -> WireOrder | None:
        """A successful REST or WS API reply (new/cancel/amend/query). Returns the order to forward, or None if
        already final. `answers`: the request (NEW/CANCELED/REPLACED) it replies to; when the user stream already
        answered that request and the bot may have sent the next one, the reply must not end that one."""
        already_final = rec.reported_terminal
        before = rec.order
        exch_ts = int(body.get("updateTime") or 0) * 1_000_000
        status = STATUS.get(body.get("status", ""), UNSUPPORTED)
        o = rec.order
        if exch_ts >= o.exch_timestamp:
            qty = float(body.get("origQty") or o.qty)
            price = float(body.get("price") or 0.0)
            o = o._replace(
                qty=qty,
                leaves_qty=qty - float(body.get("executedQty") or 0.0),
                status=status,
                exch_timestamp=exch_ts,
                # a modify reply carries the amended price (MARKET orders show "0": keep ours)
                price_tick=round(price / o.tick_size) if price > 0 and o.tick_size else o.price_tick,
            )
        # A reply ends the pending request it answers, even when its state is older. Fills reach bots only from the
        # user stream (`executedQty` is cumulative), so a REST-derived update carries no execution.
        superseded = answers is not None and before.req != answers
        rec.order = o._replace(req=before.req if superseded else NONE, exec_qty=0.0)
        if is_terminal(status):
            self._terminal(rec, "removed_by_rest")
        if superseded and rec.order._replace(exec_qty=before.exec_qty) == before:
            return None  # nothing new, and a bot waiting on its next request must not take this for the answer
        return None if already_final else rec.order

    def on_rest_catch_up(self, rec: ManagedOrder, body: dict, answers: int | None = None) -> WireOrder | None:
        """The REST view of an order (after a user-stream gap, a refused cancel, an unknown outcome): its state,
        plus the fills the stream has not reported as one execution at their average price (so the bot's balance
        and trade count stay right)."""
        cum = float(body.get("executedQty") or 0.0)
        missed = cum - rec.cum_qty
        fwd = self.on_rest_order(rec, body, answers)
        tick = rec.order.tick_size
        if missed <= 1e-12 or not tick:
            return fwd
        total = float(body.get("avgPrice") or 0.0) * cum
        price = (total - rec.cum_value) / missed
        rec.cum_qty, rec.cum_value = cum, total
        rec.rest_cum = max(rec.rest_cum, cum)  # the stream's own reports of these fills must not count them again
        log.info("%s %s: %s filled before the user stream reported it", rec.symbol, rec.client_id, missed)
        return rec.order._replace(exec_qty=missed, exec_price_tick=round(price / tick))

    def on_rest_failure(self, rec: ManagedOrder, is_submit: bool, exch_ts: int = 0) -> WireOrder | None:
        """A definite rejection. A refused submit kills the order; a refused cancel leaves it as it was."""
        already_final = rec.reported_terminal
        if is_submit:
            rec.order = rec.order._replace(status=EXPIRED, req=NONE, exec_qty=0.0,
                                          exch_timestamp=max(exch_ts, rec.order.exch_timestamp))
            self._terminal(rec, "removed_by_rest")
            rec.removed_by_ws = True  # no user-stream event follows a synchronous rejection
            self.by_client.pop(rec.client_id, None)
        else:
            rec.order = rec.order._replace(req=NONE, exec_qty=0.0)
        return None if already_final else rec.order

    def expire_unknown(self, rec: ManagedOrder) -> WireOrder | None:
        """The exchange has no such order (query -2013): it never existed or is long gone."""
        already_final = rec.reported_terminal
        rec.order = rec.order._replace(status=EXPIRED, req=NONE, exec_qty=0.0)
        rec.removed_by_ws = True
        self._terminal(rec, "removed_by_rest")
        return None if already_final else rec.order

    def cancelled_by_rest(self, rec: ManagedOrder) -> WireOrder:
        """A cancel-all covered this order."""
        rec.order = rec.order._replace(status=CANCELED, req=NONE, exec_qty=0.0)
        self._terminal(rec, "removed_by_rest")
        return rec.order

    def on_ws_update(self, o: dict, event_ts_ms: int) -> ManagedOrder | None:
        """An ORDER_TRADE_UPDATE's `o` object. Returns the record whose order must be forwarded, or None."""
        rec = self.by_client.get(o.get("c", ""))
        if rec is None:
            return None
        exch_ts = int(o.get("T") or event_ts_ms) * 1_000_000
        status = STATUS.get(o.get("X", ""), UNSUPPORTED)
        cum = float(o.get("z") or 0.0)
        is_new_fill = False
        if o.get("x") == "TRADE":
            is_new_fill = self._first_sight(rec, o["t"]) if o.get("t") is not None else cum > rec.cum_qty
            if cum <= rec.rest_cum + _tolerance(rec.order.qty):
                is_new_fill = False  # a REST answer already forwarded this fill (its trade id is now seen)
        cur = rec.order
        if exch_ts < cur.exch_timestamp and not is_new_fill:
            return None
        qty = float(o.get("q") or cur.qty)
        tick = cur.tick_size
        upd = cur._replace(
            qty=qty,
            leaves_qty=max(qty - cum, 0.0),
            side=SIDE.get(o.get("S", ""), cur.side),
            time_in_force=TIF.get(o.get("f", ""), UNSUPPORTED),
            order_type=ORDER_TYPE.get(o.get("o", ""), UNSUPPORTED),
            status=status,
            exch_timestamp=max(exch_ts, cur.exch_timestamp),
            # a fill already forwarded from its TRADE_LITE carries no execution the second time
            exec_qty=float(o.get("l") or 0.0) if is_new_fill else 0.0,
            exec_price_tick=round(float(o.get("L") or 0.0) / tick) if tick and is_new_fill else 0,
            maker=bool(o.get("m", False)) if is_new_fill else cur.maker,
        )
        answers_modify = o.get("x") == "AMENDMENT" and cur.req == REPLACED and self._shows_target(rec, o, tick)
        if (o.get("x") == "NEW" and cur.req == NEW) or answers_modify:
            # The exchange accepted the order (or the amendment): the request is answered, though its reply may
            # still be on its way (the user stream often wins over the WS API or REST reply).
            upd = upd._replace(req=NONE)
        if o.get("x") == "AMENDMENT" and tick:
            upd = upd._replace(price_tick=round(float(o.get("p") or 0.0) / tick))
        if rec.reported_terminal and not is_new_fill:
            if is_terminal(status):
                self._terminal(rec, "removed_by_ws")
            return None
        if not is_new_fill and upd._replace(exec_qty=cur.exec_qty, exec_price_tick=cur.exec_price_tick) == cur:
            # The REST reply already told the bot exactly this. Forwarding it again could end a request the bot
            # sent meanwhile (e.g. a modify) with the old state, before its real answer arrives.
            return None
        if is_new_fill:
            rec.cum_qty += upd.exec_qty
            rec.cum_value += upd.exec_qty * float(o.get("L") or 0.0)
            log.debug("fill %s %s l=%s L=%s n=%s %s rp=%s", rec.symbol, rec.client_id, o.get("l"), o.get("L"),
                      o.get("n"), o.get("N"), o.get("rp"))
        if rec.reported_terminal:
            upd = upd._replace(status=rec.order.status)  # late fill of an order already reported dead
        elif is_terminal(status):
            # A dead order has no pending request; its request's own reply may come later (then it is not
            # forwarded: the order is already final), and the bot must not wait for it.
            upd = upd._replace(req=NONE)
        rec.order = upd
        if is_terminal(status):
            self._terminal(rec, "removed_by_ws")
        else:
            self._forget_if_done(rec)
        return rec

    @staticmethod
    def _shows_target(rec: ManagedOrder, o: dict, tick: float) -> bool:
        """Whether an AMENDMENT event shows the price and qty the pending modify asked for."""
        if rec.modify_target is UNCHANGED:
            return False
        if rec.modify_target is None or not tick:
            return True
        price_tick, qty = rec.modify_target
        return (round(float(o.get("p") or 0.0) / tick) == price_tick
                and abs(float(o.get("q") or 0.0) - qty) <= _tolerance(qty))

    @staticmethod
    def _first_sight(rec: ManagedOrder, trade_id) -> bool:
        """True the first time a trade id of this order is seen (on TRADE_LITE or ORDER_TRADE_UPDATE)."""
        if trade_id in rec.trade_ids:
            return False
        rec.trade_ids.add(trade_id)
        return True

    def on_trade_lite(self, m: dict) -> ManagedOrder | None:
        """A TRADE_LITE event: Binance sends it before the fill's ORDER_TRADE_UPDATE, so the fill reaches the bot
        earlier; the update that follows has the same trade id `t` and is not counted again (nor is a TRADE_LITE
        arriving after its update). Returns the record to forward, or None."""
        rec = self.by_client.get(m.get("c", ""))
        last = float(m.get("l") or 0.0)
        if rec is None or last <= 0.0 or m.get("t") is None:
            return None
        if rec.rest_cum > 0.0:
            # A REST answer forwarded fills the stream had not reported. A TRADE_LITE has no cumulative quantity
            # to tell whether it is one of them (nor is the stream's order of the two events fixed): from then on
            # this order's ORDER_TRADE_UPDATEs (`z`) decide.
            return None
        if not self._first_sight(rec, m["t"]):
            return None
        cur = rec.order
        qty = float(m.get("q") or cur.qty)
        cum = rec.cum_qty + last
        status = FILLED if cum >= qty - _tolerance(qty) else PARTIALLY_FILLED
        tick = cur.tick_size
        rec.cum_qty = cum
        rec.cum_value += last * float(m.get("L") or 0.0)
        rec.order = cur._replace(
            qty=qty,
            leaves_qty=max(qty - cum, 0.0),
            status=cur.status if rec.reported_terminal else status,  # a late fill of an order already dead
            req=NONE if status == FILLED else cur.req,
            exch_timestamp=max(int(m.get("T") or m.get("E") or 0) * 1_000_000, cur.exch_timestamp),
            exec_qty=last,
            exec_price_tick=round(float(m.get("L") or 0.0) / tick) if tick else 0,
            maker=bool(m.get("m", False)),
        )
        if status == FILLED:
            self._terminal(rec, "removed_by_ws")
        else:
            self._forget_if_done(rec)
        return rec

    def on_exchange_fill(self, ev: dict, tick: float, event_ts_ms: int) -> WireOrder | None:
        """A fill of an order the exchange placed on the account (liquidation, ADL, settlement, delivery), from its
        TRADE_LITE or ORDER_TRADE_UPDATE `o`, once per trade id: the bots' balance, fee and trade counts must see it,
        not only their position. Returned as a FILLED order (so no bot holds it live), else None."""
        cid = str(ev.get("c", ""))
        last = float(ev.get("l") or 0.0)
        if not cid.startswith(EXCHANGE_ORDER_PREFIXES) or ev.get("x", "TRADE") != "TRADE" or last <= 0.0 or not tick:
            return None
        key = (cid, ev.get("t"))
        if key in self._exchange_fills:
            return None
        self._exchange_fills[key] = None
        if len(self._exchange_fills) > 10_000:
            del self._exchange_fills[next(iter(self._exchange_fills))]
        price_tick = round(float(ev.get("L") or 0.0) / tick)
        return WireOrder(
            float(ev.get("q") or last), 0.0, last, price_tick, price_tick, tick,
            int(ev.get("T") or event_ts_ms) * 1_000_000, 0, EXCHANGE_FILL_ID + int(ev.get("i") or 0),
            bool(ev.get("m", False)), MARKET, NONE, FILLED, SIDE.get(ev.get("S", ""), 0), UNSUPPORTED)

    def open_orders(self, symbol: str) -> list[ManagedOrder]:
        return [self.by_client[c] for (s, _), c in self.live.items() if s == symbol and c in self.by_client]

    def unforwarded(self, symbol: str) -> list[ManagedOrder]:
        """Dead orders with executions a reply reported that have not reached the bot (their user-stream reports
        are still on the way, or were lost with the stream)."""
        return [r for r in self.by_client.values() if r.symbol == symbol and r.reported_terminal
                and r.cum_qty < r.order.qty - r.order.leaves_qty - _tolerance(r.order.qty)]

    def gc(self) -> int:
        """Drop terminal records one channel never confirmed after GC_AGE_S."""
        now = time.monotonic()
        stale = [c for c, r in self.by_client.items() if r.dead_since and now - r.dead_since > GC_AGE_S]
        for c in stale:
            del self.by_client[c]
        return len(stale)
