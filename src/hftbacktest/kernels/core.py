"""The backtest's exchange driven step by step: one market event or one order request at a time.

`ExchangeCore` owns one asset's exchange side (an `AssetState` of which only the exchange half is used: depth
`depth_x`, resting orders `ord_x`, state values `sv_x`, replies `to_local`) and calls the same kernels the event
loop calls (`exchange.process_data`, `ack_new`, `ack_cancel`, `ack_modify`): fill rules, queue models, exchange
models and fees exist once, in kernels/exchange.py and kernels/models.py. It has no clock: the driver hands it
each input with the exchange time it happens and gets back every reply the exchange produced, in order. An
optional constant entry latency holds a request back until the driver's inputs pass its arrival time (ties: a
market event at the arrival time goes first, as in the backtest loop); the response latency only stamps
`Reply.local_ts`.

Nothing is compiled at import; the first core built in a process compiles (or loads from the numba cache) the
kernels below, and `ExchangeCore.warm()` does that ahead of a latency-sensitive start.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from ..errors import ConfigError
from ..types import (
    BUY,
    BUY_EVENT,
    CANCELED,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    EXPIRED,
    FILLED,
    GTC,
    GTX,
    FOK,
    IOC,
    LIMIT,
    MARKET,
    REJECTED,
    SELL,
    SELL_EVENT,
    TRADE_EVENT,
    ReturnCode,
    event_dtype,
    order_dtype,
    state_values_dtype,
)
from . import depth as dp
from . import exchange as xp
from . import models as m
from . import orders as ob
from .state import asset_config, new_asset_state

# --- kernels (plain njit: called from Python, which owns every argument) ---------------------------------------------


@njit(cache=True, error_model="numpy")
def _new_core(tick, lot, cfg):
    depth = dp.new_depth(dp.MODE_HASHMAP, tick, lot, 0.0, 0.0, False)
    no_data = np.zeros(0, event_dtype)
    return new_asset_state(cfg, np.zeros((0, 4), np.int64), depth, depth, no_data, np.int64(0))


@njit(cache=True, error_model="numpy")
def _drain(s, out):
    """Move the replies waiting on the bus into `out` (up to its length); returns how many."""
    b = s.to_local
    n = 0
    while n < out.shape[0] and b.head != b.tail:
        i = ob.bus_pop(b)
        out[n] = b.rec[i]
        n += 1
    return n


@njit(cache=True, error_model="numpy")
def _event(s, ev, ts, px, qty, out):
    """One market row (depth / trade / clear) at exchange time ts; returns -rc on error, else replies drained."""
    rc = xp.process_data(s, ev, ts, px, qty)
    if rc != 0:
        return -rc
    return _drain(s, out)


@njit(cache=True, error_model="numpy")
def _depths(s, rows, unit, ts, start, out, res):
    """Depth rows (flat (side, price tick, qty / unit) triples) from row `start` on, at exchange time ts, until
    one produces replies: res = (next row, -rc or replies drained). Batching keeps a busy book's per-change
    cost to the kernel's own work."""
    n = rows.shape[0] // 3
    i = start
    while i < n:
        ev = DEPTH_EVENT | (BUY_EVENT if rows[3 * i] == BUY else SELL_EVENT)
        rc = xp.process_data(s, ev, ts, rows[3 * i + 1] * s.tick, rows[3 * i + 2] * unit)
        i += 1
        if rc != 0:
            res[0] = i
            res[1] = -rc
            return
        if s.to_local.head != s.to_local.tail:
            break
    res[0] = i
    res[1] = _drain(s, out)


@njit(cache=True, error_model="numpy")
def _request_row(s, order_id):
    r = s.scratch
    r[0] = r[1]  # row 1 stays zero: a clean request row without allocating
    r[0].order_id = order_id
    return r


@njit(cache=True, error_model="numpy")
def _submit(s, ts, order_id, side, price_tick, qty, tif, otype, out):
    r = _request_row(s, order_id)
    o = r[0]
    o.side = side
    o.price_tick = price_tick
    o.tick_size = s.tick
    o.qty = qty
    o.leaves_qty = qty
    o.time_in_force = tif
    o.order_type = otype
    o.local_timestamp = ts
    o.exch_timestamp = ts
    rc = xp.ack_new(s, r, 0, ts)
    if rc != 0:
        return -rc
    return _drain(s, out)


@njit(cache=True, error_model="numpy")
def _cancel(s, ts, order_id, out):
    r = _request_row(s, order_id)
    rc = xp.ack_cancel(s, r, 0, ts)
    if rc != 0:
        return -rc
    return _drain(s, out)


@njit(cache=True, error_model="numpy")
def _modify(s, ts, order_id, price_tick, qty, out):
    """Amend a resting order to (price_tick, qty = its new open quantity): same price and a smaller qty keeps
    the queue position, anything else re-enters the book (kernels' ack_modify)."""
    r = _request_row(s, order_id)
    slot = ob.find(s.ord_x, order_id)
    if slot >= 0:
        r[0] = s.ord_x.rec[slot]
    r[0].price_tick = price_tick
    r[0].qty = qty
    rc = xp.ack_modify(s, r, 0, ts)
    if rc != 0:
        return -rc
    return _drain(s, out)


@njit(cache=True, error_model="numpy")
def _queue_ahead(s, order_id):
    """Queue quantity ahead of a resting order (the queue model's front estimate), or -1 if it is not resting."""
    slot = ob.find(s.ord_x, order_id)
    if slot < 0:
        return -1.0
    return s.ord_x.qf[slot]


@njit(cache=True, error_model="numpy")
def _resting(s):
    return s.ord_x.n


# --- configuration ------------------------------------------------------------------------------------------------

QUEUE_MODELS = {  # CLI / config name -> (code, takes a parameter n)
    "risk_averse": (m.QUEUE_RISK_ADVERSE, False),
    "power_prob": (m.QUEUE_POWER, True),
    "power_prob2": (m.QUEUE_POWER2, True),
    "power_prob3": (m.QUEUE_POWER3, True),
    "log_prob": (m.QUEUE_LOG, False),
    "log_prob2": (m.QUEUE_LOG2, False),
}
EXCHANGE_MODELS = {"no_partial_fill": m.EXCH_NO_PARTIAL_FILL, "partial_fill": m.EXCH_PARTIAL_FILL}
FEE_MODELS = {"trading_value": m.FEE_TRADING_VALUE, "trading_qty": m.FEE_TRADING_QTY,
              "flat_per_trade": m.FEE_FLAT_PER_TRADE}


def parse_queue(spec: str) -> tuple[int, float]:
    """'risk_averse', 'log_prob', 'power_prob:2', ... -> (queue model code, n). ConfigError names the problem."""
    name, _, arg = str(spec).strip().partition(":")
    if name not in QUEUE_MODELS:
        raise ConfigError(f"queue model {name!r}: expected one of {', '.join(QUEUE_MODELS)}")
    code, takes_n = QUEUE_MODELS[name]
    if not takes_n:
        if arg:
            raise ConfigError(f"queue model {name!r} takes no parameter, got {arg!r}")
        return code, 0.0
    try:
        n = float(arg)
    except ValueError:
        raise ConfigError(f"queue model {name!r} needs a number n > 0 ('{name}:2'), got {arg!r}") from None
    if not np.isfinite(n) or n <= 0.0:
        raise ConfigError(f"queue model {name!r}: n must be a finite number > 0, got {arg!r}")
    return code, n


@dataclass(frozen=True)
class CoreConfig:
    """One asset's exchange: instrument, queue / exchange / fee models (codes of kernels/models.py) and a
    constant order latency in ns (0: a request reaches the exchange at the time it is handed in)."""

    tick_size: float
    lot_size: float
    queue_model: int = m.QUEUE_RISK_ADVERSE
    queue_n: float = 0.0
    exchange_model: int = m.EXCH_NO_PARTIAL_FILL
    fee_model: int = m.FEE_TRADING_VALUE
    maker_fee: float = 0.0
    taker_fee: float = 0.0
    asset_type: int = m.ASSET_LINEAR
    contract_size: float = 1.0
    entry_latency: int = 0
    response_latency: int = 0

    def __post_init__(self):
        for name in ("tick_size", "lot_size", "contract_size"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
        for name in ("entry_latency", "response_latency"):
            v = getattr(self, name)
            if not (isinstance(v, (int, np.integer)) and v >= 0):
                raise ConfigError(f"{name} must be an integer number of ns >= 0, got {v!r}")
        codes = {c for c, _ in QUEUE_MODELS.values()}
        if self.queue_model not in codes:
            raise ConfigError(f"queue_model code {self.queue_model!r} is not supported by the exchange core "
                              f"(supported: {sorted(codes)})")
        if self.exchange_model not in EXCHANGE_MODELS.values():
            raise ConfigError(f"exchange_model code {self.exchange_model!r} is unknown")
        if self.fee_model not in FEE_MODELS.values():
            raise ConfigError(f"fee_model code {self.fee_model!r} is unknown")

    @classmethod
    def from_names(cls, tick_size: float, lot_size: float, queue: str = "risk_averse",
                   exchange: str = "partial_fill", **kw) -> "CoreConfig":
        """Models by name: `queue` as `parse_queue` takes it, `exchange` a key of EXCHANGE_MODELS; `kw` the
        remaining fields (fee_model given by name as `fee`)."""
        code, n = parse_queue(queue)
        if exchange not in EXCHANGE_MODELS:
            raise ConfigError(f"exchange model {exchange!r}: expected one of {', '.join(EXCHANGE_MODELS)}")
        fee = kw.pop("fee", None)
        if fee is not None:
            if fee not in FEE_MODELS:
                raise ConfigError(f"fee model {fee!r}: expected one of {', '.join(FEE_MODELS)}")
            kw["fee_model"] = FEE_MODELS[fee]
        return cls(tick_size, lot_size, code, n, EXCHANGE_MODELS[exchange], **kw)


class Reply(NamedTuple):
    """One reply of the exchange. `fill_qty > 0` marks an execution of that quantity at `exec_price_tick`;
    `local_ts` is when the driver's side would see it (exch_ts + response latency)."""

    order_id: int
    status: int  # types.Status
    leaves_qty: float
    fill_qty: float
    exec_price_tick: int
    maker: bool
    exch_ts: int
    local_ts: int
    rejected: bool  # a cancel/modify for an order that is not resting


class CoreError(Exception):
    """A kernel refused an input; `.code` is the types.ReturnCode."""

    def __init__(self, code: int, what: str):
        self.code = ReturnCode(code)
        super().__init__(f"exchange core: {what} failed with {self.code.name} ({int(code)})")


_TIFS = {"GTC": GTC, "GTX": GTX, "IOC": IOC, "FOK": FOK}
_TYPES = {"LIMIT": LIMIT, "MARKET": MARKET}
_BUF = 256


class ExchangeCore:
    """One asset's exchange, stepped by its driver. Quantities are in the asset's units (like the backtest),
    prices in ticks, times in ns; order ids are the driver's (unique while the order lives). Every operation
    returns the replies produced so far, in order (with an entry latency, a request's replies come with the
    first input at or after its arrival)."""

    def __init__(self, config: CoreConfig):
        self.config = c = config
        cfg = asset_config(tick_size=c.tick_size, lot_size=c.lot_size, contract_size=c.contract_size,
                           maker_fee=c.maker_fee, taker_fee=c.taker_fee, queue_n=c.queue_n, asset_type=c.asset_type,
                           fee_model=c.fee_model, queue_model=c.queue_model, exchange_model=c.exchange_model,
                           latency_model=m.LATENCY_CONSTANT, response_latency=c.response_latency)
        self._s = _new_core(float(c.tick_size), float(c.lot_size), cfg)
        self._out = np.zeros(_BUF, order_dtype)
        self._res = np.zeros(2, np.int64)
        self._leaves: dict[int, float] = {}  # open qty per live order: a reply's fill is the decrease
        self._half_lot = c.lot_size / 2
        self._tick = float(c.tick_size)
        self._rlat = c.response_latency
        self._direct = c.entry_latency == 0  # requests reach the kernels when handed in (no queue)
        self._pending: deque = deque()  # (arrival ts, kernel, args, what) while an entry latency delays requests

    @classmethod
    def warm(cls) -> None:
        """Compile or load every kernel now (a throwaway core walks each operation once)."""
        core = cls(CoreConfig(0.1, 0.001, exchange_model=m.EXCH_PARTIAL_FILL))
        core.depth(BUY, 1000, 1.0, 0)
        core.depth(SELL, 1001, 1.0, 0)
        core.depths(np.array([BUY, 1000, 2], np.int64), 0)
        core.submit(1, BUY, 999, 0.001, "GTC", "LIMIT", 0)
        core.modify(1, 998, 0.001, 0)
        core.trade(SELL, 998, 1.0, 0)
        core.cancel(1, 0)
        core.clear(0)
        core.queue_ahead(1)
        core.state_values()

    # -- market events -----------------------------------------------------------------------------------------
    def depth(self, side: int, price_tick: int, qty: float, ts: int) -> list[Reply]:
        """The displayed quantity at a price level became `qty` (0 removes it)."""
        ev = DEPTH_EVENT | (BUY_EVENT if side == BUY else SELL_EVENT)
        return self._market(ev, ts, price_tick, float(qty), "depth")

    def depths(self, rows: np.ndarray, ts: int, unit: float = 1.0) -> list[Reply]:
        """Several displayed levels changed, in this order: `rows` is a flat int64 array of (side, price tick,
        quantity in `unit`s) triples (an integer book's lots with unit = lot size)."""
        out = self._due(ts, False, []) if self._pending else []
        res = self._res
        i, n = 0, rows.shape[0] // 3
        while i < n:
            _depths(self._s, rows, float(unit), ts, i, self._out, res)
            i = int(res[0])
            self._collect(int(res[1]), "depth", out)
        return out

    def trade(self, aggressor: int, price_tick: int, qty: float, ts: int) -> list[Reply]:
        """A market trade; `aggressor` BUY means a buyer took the asks (it can fill resting sells)."""
        ev = TRADE_EVENT | (BUY_EVENT if aggressor == BUY else SELL_EVENT)
        return self._market(ev, ts, price_tick, float(qty), "trade")

    def clear(self, ts: int, side: int = 0, upto_tick: int = 0) -> list[Reply]:
        """Clear the book (both sides, or one side up to a price), as before a snapshot."""
        ev = DEPTH_CLEAR_EVENT | (BUY_EVENT if side == BUY else SELL_EVENT if side == SELL else 0)
        return self._market(ev, ts, upto_tick, 0.0, "clear")

    def advance(self, ts: int) -> list[Reply]:
        """The driver's clock reached `ts`: requests arriving at or before it are handled now."""
        return self._due(ts, True, [])

    # -- order requests ----------------------------------------------------------------------------------------
    def submit(self, order_id: int, side: int, price_tick: int, qty: float, tif: str = "GTC",
               order_type: str = "LIMIT", ts: int = 0) -> list[Reply]:
        """A new order (LIMIT or MARKET; GTC, GTX, IOC or FOK) sent at `ts`; `qty` > 0."""
        tif_code, type_code = _TIFS.get(tif), _TYPES.get(order_type)
        if (side != BUY and side != SELL) or tif_code is None or type_code is None:
            raise ConfigError(f"exchange core: side {side!r}, time in force {tif!r}, order type {order_type!r}: "
                              f"expected BUY/SELL, one of {'/'.join(_TIFS)}, one of {'/'.join(_TYPES)}")
        qty = float(qty)
        if not (qty > 0 and math.isfinite(qty)):
            raise ConfigError(f"exchange core: order quantity must be finite and > 0, got {qty!r}")
        args = (order_id, int(side), int(price_tick), qty, tif_code, type_code)
        if self._direct:  # the common case without an entry latency: straight to the kernel
            return self._do_submit(ts, args, [])
        return self._request(ts, self._do_submit, args)

    def cancel(self, order_id: int, ts: int = 0) -> list[Reply]:
        if self._direct:
            return self._collect(_cancel(self._s, ts, order_id, self._out), "cancel", [])
        return self._request(ts, self._do_cancel, (order_id,))

    def modify(self, order_id: int, price_tick: int, qty: float, ts: int = 0) -> list[Reply]:
        """Amend a resting order: `qty` is its new open quantity. Same price and no more quantity keeps the
        queue position; anything else re-enters the book (and may cross)."""
        qty = float(qty)
        if not (qty > 0 and math.isfinite(qty)):
            raise ConfigError(f"exchange core: order quantity must be finite and > 0, got {qty!r}")
        return self._request(ts, self._do_modify, (order_id, int(price_tick), qty))

    # -- views -------------------------------------------------------------------------------------------------
    def queue_ahead(self, order_id: int) -> float | None:
        """The queue model's estimate of the quantity ahead of a resting order (None if it is not resting)."""
        q = _queue_ahead(self._s, order_id)
        return None if q < 0 else float(q)

    def resting(self) -> int:
        return int(_resting(self._s))

    def state_values(self) -> np.void:
        """The exchange's own account of this asset (position, balance, fee, num_trades, ...): state_values_dtype."""
        return _sv_copy(self._s)[0]

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _market(self, ev: int, ts: int, price_tick: int, qty: float, what: str) -> list[Reply]:
        out = self._due(ts, False, []) if self._pending else []
        n = _event(self._s, ev, ts, price_tick * self._tick, qty, self._out)
        return self._collect(n, what, out)

    def _request(self, ts: int, fn, args) -> list[Reply]:
        if self._direct:
            return fn(ts, args, [])
        self._pending.append((ts + self.config.entry_latency, fn, args))
        return self._due(ts, True, [])

    def _due(self, ts: int, inclusive: bool, out: list) -> list[Reply]:
        p = self._pending
        while p and (p[0][0] < ts or (inclusive and p[0][0] == ts)):
            at, fn, args = p.popleft()
            fn(at, args, out)
        return out

    def _do_submit(self, ts, args, out):
        oid, side, tick, qty, tif, otype = args
        self._leaves[oid] = qty
        return self._collect(_submit(self._s, ts, oid, side, tick, qty, tif, otype, self._out), "submit", out)

    def _do_cancel(self, ts, args, out):
        return self._collect(_cancel(self._s, ts, args[0], self._out), "cancel", out)

    def _do_modify(self, ts, args, out):
        oid, tick, qty = args
        if oid in self._leaves:
            self._leaves[oid] = qty
        return self._collect(_modify(self._s, ts, oid, tick, qty, self._out), "modify", out)

    def _collect(self, n: int, what: str, out: list) -> list[Reply]:
        """The `n` replies drained into the buffer (and any left on the bus) as Reply tuples, appended to `out`.
        A fill is the decrease of the order's open quantity since its previous reply."""
        if n < 0:
            raise CoreError(-n, what)
        leaves_of, half_lot, rlat = self._leaves, self._half_lot, self._rlat
        while n:
            # order_dtype field order: qty, leaves_qty, exec_qty, exec_price_tick, price_tick, tick_size,
            # exch_timestamp, local_timestamp, order_id, _q1, _q2, maker, order_type, req, status, side, time_in_force
            for _, leaves, _, price, _, _, ts, _, oid, _, _, maker, _, req, status, _, _ in self._out[:n].tolist():
                if req == REJECTED:
                    out.append(Reply(oid, status, leaves, 0.0, 0, False, ts, ts + rlat, True))
                    continue
                prev = leaves_of.get(oid, leaves)
                fill = prev - leaves if prev - leaves > half_lot else 0.0
                if status == FILLED or status == CANCELED or status == EXPIRED:
                    leaves_of.pop(oid, None)
                else:
                    leaves_of[oid] = leaves
                if fill:
                    out.append(Reply(oid, status, leaves, fill, price, bool(maker), ts, ts + rlat, False))
                else:
                    out.append(Reply(oid, status, leaves, 0.0, 0, False, ts, ts + rlat, False))
            if n < _BUF:
                break
            n = _drain(self._s, self._out)
        return out


@njit(cache=True, error_model="numpy")
def _sv_copy(s):
    out = np.zeros(1, state_values_dtype)
    out[0] = s.sv_x[0]
    return out
