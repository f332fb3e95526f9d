"""The order journal: one JSON line per order event of a connector session, live or paper (docs/live.md).

`journal = "orders.jsonl"` in the connector's TOML turns it on. Lines are appended and written unbuffered (a
crash loses no line; a restarted connector appends to the same file). Every line has `event`, `local_ts` (ns,
this machine's clock), `symbol`, `order_id` (the bot's) and, once known, `client_id`; exchange events add
`exch_ts` (ns, the exchange's clock):

* `request`: the bot asked for `action` submit / cancel / modify (`side`, `type`, `tif`, `price`, `qty`).
* `ack` (the exchange accepted the order), `fill`, `cancel`, `expiry`, `amend`, `rejection`: from the
  exchange's order updates, with `status`, `side`, `price`, `qty`, `filled` (cumulative); a `fill` adds `fill_price`,
  `fill_qty`, `maker`, `fee` (negative: a rebate), `fee_asset`, `trade_id`, `realized_pnl`.
* `rejection` with `action`, `code` and `msg`: a request the exchange (or the connector) refused.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from ..binance import wire
from ..types import BUY, CANCELED, REPLACED
from .binancefutures import BinanceFuturesConnector, now_ns
from .orders import ORDER_TYPE_NAME, TIF_NAME

EXECUTION_EVENTS = {"NEW": "ack", "TRADE": "fill", "CANCELED": "cancel", "EXPIRED": "expiry",
                    "EXPIRED_IN_MATCH": "expiry", "AMENDMENT": "amend", "REJECTED": "rejection"}


class OrderJournal:
    """Append-only JSONL writer of journal lines."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab", buffering=0)
        self.count = 0

    def write(self, event: str, **fields: Any) -> None:
        line = {"event": event, "local_ts": now_ns(), **fields}
        self._fh.write(orjson.dumps(line) + b"\n")
        self.count += 1

    def close(self) -> None:
        self._fh.close()


def _float(text) -> float:
    return float(text) if text not in (None, "") else 0.0


class JournalingConnector(BinanceFuturesConnector):
    """The Binance USD-M connector writing the order journal: requests as the bot sends them, the exchange's
    order updates (user stream) with fees and maker flags, refusals with their codes."""

    def __init__(self, name: str, cfg, journal: OrderJournal | None = None):
        super().__init__(name, cfg)
        self.journal = journal or (OrderJournal(cfg.journal) if cfg.journal else None)

    def _journal_request(self, action: str, symbol: str, order) -> None:
        if self.journal is not None:
            self.journal.write("request", action=action, symbol=symbol, order_id=int(order.order_id),
                               side="BUY" if order.side == BUY else "SELL",
                               type=ORDER_TYPE_NAME.get(order.order_type, str(order.order_type)),
                               tif=TIF_NAME.get(order.time_in_force, str(order.time_in_force)),
                               price=order.price_tick * order.tick_size, qty=float(order.qty))

    async def _submit(self, bot_id: int, symbol: str, order) -> None:
        self._journal_request("submit", symbol, order)
        await super()._submit(bot_id, symbol, order)

    async def _cancel(self, bot_id: int, symbol: str, order) -> None:
        self._journal_request("cancel", symbol, order)
        await super()._cancel(bot_id, symbol, order)

    async def _modify(self, bot_id: int, symbol: str, order) -> None:
        self._journal_request("modify", symbol, order)
        await super()._modify(bot_id, symbol, order)

    def _refuse(self, bot_id: int, symbol: str, order, value: Any) -> None:
        if self.journal is not None:
            self._journal_refusal("submit", symbol, int(order.order_id), None, value)
        super()._refuse(bot_id, symbol, order, value)

    def _fail(self, rec, is_submit: bool, value: Any) -> None:
        if self.journal is not None:
            action = "submit" if is_submit else self._change_action(rec)
            self._journal_refusal(action, rec.symbol, int(rec.order.order_id), rec.client_id, value)
        super()._fail(rec, is_submit, value)

    def _gone(self, rec, value: Any) -> None:
        # when the refusal arrived tells when the request reached the exchange: after the order was done
        if self.journal is not None:
            self._journal_refusal(self._change_action(rec), rec.symbol, int(rec.order.order_id), rec.client_id, value)
        super()._gone(rec, value)

    @staticmethod
    def _change_action(rec) -> str:
        return {CANCELED: "cancel", REPLACED: "modify"}.get(int(rec.order.req), "change")

    def _journal_refusal(self, action: str, symbol: str, order_id: int, client_id, value: Any) -> None:
        code = value.get("code") if isinstance(value, dict) else None
        msg = value.get("msg") if isinstance(value, dict) else str(value)
        self.journal.write("rejection", action=action, symbol=symbol, order_id=order_id, client_id=client_id,
                           code=code, msg=msg)

    def _on_user(self, raw) -> bool:
        if self.journal is not None:
            try:
                msg = orjson.loads(raw)
                if msg.get("e") == wire.ORDER_TRADE_UPDATE:
                    self._journal_update(msg["o"], msg.get("T") or msg.get("E") or 0)
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
                pass  # the connector itself reports malformed frames
        return super()._on_user(raw)

    def _journal_update(self, o: dict, event_ms) -> None:
        cid = o.get("c", "")
        order_id = self.orders.order_id_of(cid)
        if order_id is None:
            return  # not one of this connector's orders
        event = EXECUTION_EVENTS.get(o.get("x"), str(o.get("x")).lower())
        line = dict(symbol=str(o.get("s", "")).lower(), order_id=order_id, client_id=cid,
                    exch_ts=int(o.get("T") or event_ms) * 1_000_000, status=o.get("X"), side=o.get("S"),
                    price=_float(o.get("p")), qty=_float(o.get("q")), filled=_float(o.get("z")))
        if event == "fill":
            line.update(fill_price=_float(o.get("L")), fill_qty=_float(o.get("l")), maker=bool(o.get("m")),
                        fee=_float(o.get("n")), fee_asset=o.get("N"), trade_id=o.get("t"),
                        realized_pnl=_float(o.get("rp")))
        self.journal.write(event, **line)

    async def _shutdown(self) -> None:
        await super()._shutdown()
        if self.journal is not None:
            self.journal.close()
