"""The bot object users' `@njit` strategies receive, and its plain-Python twin.

`Backtest` is a numba StructRef proxy over `kernels.state.EngineType`. Inside `@njit` code, its methods are
`@overload_method`s whose bodies are one call into a cached kernel (`kernels.loop` etc.), so compiling a user
strategy stays fast and the heavy loop always comes from numba's on-disk cache. From plain Python the same
methods call the same kernels (handy for debugging).

Views handed out (all live, none allocated per call):
* `hbt.depth(a)` -> the asset's local `Depth` StructRef (best_bid, best_ask, *_tick, *_qty, tick_size, ...);
* `hbt.orders(a)` -> the asset's local `OrderTable` StructRef (get, values, `in`, len);
* `hbt.state_values(a)` -> a record view of `state_values_dtype`;
* orders are record views of `order_dtype` with extra properties price, exec_price, cancellable.
"""
from __future__ import annotations

import itertools
import operator
import weakref

import numpy as np
from numba import njit, types
from numba.core.extending import overload, overload_attribute, overload_method
from numba.core.imputils import lower_getattr
from numba.core.typing.templates import AttributeTemplate, infer_getattr
from numba.np.arrayobj import record_getattr
from numba.experimental import structref

from ..errors import ConfigError, DataError
from ..kernels import depth as dp
from ..kernels import loop
from ..kernels import orders as ob
from ..kernels.depth import DepthType
from ..kernels.orders import OrderTableType, table_type
from ..kernels.structbase import CompactStructRef
from ..kernels.abi import (
    FN_CANCEL,
    FN_CLEAR_INACTIVE,
    FN_ELAPSE,
    FN_GOTO_END,
    FN_MODIFY,
    FN_SUBMIT,
    FN_WAIT_NEXT_FEED,
    FN_WAIT_ORDER_RESPONSE,
    FN_TABLE_FIND,
    call_entry,
    struct_from_ptr,
    struct_ptr,
)
from ..kernels.state import (
    EngineType, asset_state_type, engine_type, new_asset_list, new_asset_state, new_engine,
)
from ..types import BUY, NEW, PARTIALLY_FILLED, SELL, order_dtype
from .asset import AssetConfig, BacktestAsset
from .reader import AssetFeed, Source, as_kernel_array, check_source

# --- kernels the overloads and the Python proxies share ---------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _check_asset(e, asset):
    if asset < 0 or asset >= e.num_assets:
        raise IndexError("asset number out of range")


@njit(cache=True, error_model="numpy")
def _depth(e, asset):
    _check_asset(e, asset)
    return e.assets[asset].depth_l


@njit(cache=True, error_model="numpy")
def _orders(e, asset):
    _check_asset(e, asset)
    return e.assets[asset].ord_l


@njit(cache=True, error_model="numpy")
def _state(e, asset):
    _check_asset(e, asset)
    return e.assets[asset].sv_l


@njit(cache=True, error_model="numpy")
def _last_trades(e, asset):
    _check_asset(e, asset)
    s = e.assets[asset]
    return s.trades[: s.ntrades]


@njit(cache=True, error_model="numpy")
def _feed_latency(e, asset):
    _check_asset(e, asset)
    s = e.assets[asset]
    return s.has_feed_lat, s.feed_lat[0], s.feed_lat[1]


@njit(cache=True, error_model="numpy")
def _order_latency(e, asset):
    _check_asset(e, asset)
    s = e.assets[asset]
    return s.has_ord_lat, s.ord_lat[0], s.ord_lat[1], s.ord_lat[2]


@njit(cache=True, error_model="numpy")
def _clear_last_trades(e, asset):
    if asset >= 0:
        _check_asset(e, asset)
    loop.clear_last_trades(e, asset)


@njit(cache=True, error_model="numpy")
def _address(obj):
    return struct_ptr(obj)


@njit(cache=True, error_model="numpy")
def _engine_scalars(e):
    return e.cur_ts, e.num_assets


@njit(cache=True, error_model="numpy")
def _append_asset(lst, s):
    lst.append(s)


@njit(cache=True, error_model="numpy")
def _table_arrays(t):
    return t.rec, t.used, t.top, t.n


@njit(cache=True, error_model="numpy")
def _depth_scalars(d):
    return d.bb, d.ba, d.tick, d.lot, d.mode, d.lb, d.ub


@njit(cache=True, error_model="numpy")
def _depth_arrays(d):
    return d.bid, d.ask, d.base


@njit(cache=True, error_model="numpy")
def _apply_snapshot(d, data):
    dp.apply_snapshot(d, data)


# --- numba-side API ---------------------------------------------------------------------------------------------------
# Overload bodies are compiled into every user strategy: they only read engine fields or call a cached entry point
# through its address (kernels/abi.py), never a jitted kernel directly.

_I64_MIN = -9223372036854775808
_I64_MAX = 9223372036854775807


@njit(inline="always")
def _oid(order_id):
    return np.int64(np.uint64(order_id))


@njit(inline="always")
def _asset(e, asset_no):
    if asset_no < 0 or asset_no >= e.num_assets:
        raise IndexError("asset number out of range")
    return struct_from_ptr(e.aptr[asset_no], asset_state_type)


@overload_attribute(EngineType, "current_timestamp", inline="always")
def _ov_current_timestamp(e):
    return lambda e: e.cur_ts


@overload_method(EngineType, "depth", inline="always")
def _ov_depth(e, asset_no):
    return lambda e, asset_no: _asset(e, asset_no).depth_l


@overload_method(EngineType, "orders", inline="always")
def _ov_orders(e, asset_no):
    return lambda e, asset_no: _asset(e, asset_no).ord_l


@overload_method(EngineType, "state_values", inline="always")
def _ov_state_values(e, asset_no):
    return lambda e, asset_no: _asset(e, asset_no).sv_l[0]


@overload_method(EngineType, "position", inline="always")
def _ov_position(e, asset_no):
    return lambda e, asset_no: _asset(e, asset_no).sv_l[0].position


@overload_method(EngineType, "last_trades", inline="always")
def _ov_last_trades(e, asset_no):
    def impl(e, asset_no):
        s = _asset(e, asset_no)
        return s.trades[: s.ntrades]

    return impl


@overload_method(EngineType, "clear_last_trades", inline="always")
def _ov_clear_last_trades(e, asset_no):
    def impl(e, asset_no):
        if asset_no < 0:
            for a in range(e.num_assets):
                _asset(e, a).ntrades = 0
        else:
            _asset(e, asset_no).ntrades = 0

    return impl


@overload_method(EngineType, "clear_inactive_orders", inline="always")
def _ov_clear_inactive_orders(e, asset_no):
    def impl(e, asset_no):
        if asset_no >= 0:
            _asset(e, asset_no)
        call_entry(e.entry, FN_CLEAR_INACTIVE, struct_ptr(e), asset_no, 0, 0, 0, 0, 0.0, 0.0)

    return impl


@overload_method(EngineType, "submit_buy_order", inline="always")
def _ov_submit_buy(e, asset_no, order_id, price, qty, time_in_force, order_type, wait):
    def impl(e, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        _asset(e, asset_no)
        return call_entry(e.entry, FN_SUBMIT, struct_ptr(e), asset_no, _oid(order_id), 1,
                          time_in_force | (order_type << 8), 1 if wait else 0, price, qty)

    return impl


@overload_method(EngineType, "submit_sell_order", inline="always")
def _ov_submit_sell(e, asset_no, order_id, price, qty, time_in_force, order_type, wait):
    def impl(e, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        _asset(e, asset_no)
        return call_entry(e.entry, FN_SUBMIT, struct_ptr(e), asset_no, _oid(order_id), -1,
                          time_in_force | (order_type << 8), 1 if wait else 0, price, qty)

    return impl


@overload_method(EngineType, "modify", inline="always")
def _ov_modify(e, asset_no, order_id, price, qty, wait):
    def impl(e, asset_no, order_id, price, qty, wait):
        _asset(e, asset_no)
        return call_entry(e.entry, FN_MODIFY, struct_ptr(e), asset_no, _oid(order_id), 1 if wait else 0, 0, 0, price, qty)

    return impl


@overload_method(EngineType, "cancel", inline="always")
def _ov_cancel(e, asset_no, order_id, wait):
    def impl(e, asset_no, order_id, wait):
        _asset(e, asset_no)
        return call_entry(e.entry, FN_CANCEL, struct_ptr(e), asset_no, _oid(order_id), 1 if wait else 0, 0, 0, 0.0, 0.0)

    return impl


@overload_method(EngineType, "elapse", inline="always")
def _ov_elapse(e, duration):
    return lambda e, duration: call_entry(e.entry, FN_ELAPSE, struct_ptr(e), duration, 0, 0, 0, 0, 0.0, 0.0)


@overload_method(EngineType, "elapse_bt", inline="always")
def _ov_elapse_bt(e, duration):
    return lambda e, duration: call_entry(e.entry, FN_ELAPSE, struct_ptr(e), duration, 0, 0, 0, 0, 0.0, 0.0)


@overload_method(EngineType, "wait_next_feed", inline="always")
def _ov_wait_next_feed(e, include_order_resp, timeout):
    def impl(e, include_order_resp, timeout):
        return call_entry(e.entry, FN_WAIT_NEXT_FEED, struct_ptr(e), 1 if include_order_resp else 0, timeout, 0, 0, 0,
                          0.0, 0.0)

    return impl


@overload_method(EngineType, "wait_order_response", inline="always")
def _ov_wait_order_response(e, asset_no, order_id, timeout):
    def impl(e, asset_no, order_id, timeout):
        _asset(e, asset_no)
        return call_entry(e.entry, FN_WAIT_ORDER_RESPONSE, struct_ptr(e), asset_no, _oid(order_id), timeout, 0, 0,
                          0.0, 0.0)

    return impl


@overload_method(EngineType, "feed_latency", inline="always")
def _ov_feed_latency(e, asset_no):
    def impl(e, asset_no):
        s = _asset(e, asset_no)
        if s.has_feed_lat:
            return (s.feed_lat[0], s.feed_lat[1])
        return None

    return impl


@overload_method(EngineType, "order_latency", inline="always")
def _ov_order_latency(e, asset_no):
    def impl(e, asset_no):
        s = _asset(e, asset_no)
        if s.has_ord_lat:
            return (s.ord_lat[0], s.ord_lat[1], s.ord_lat[2])
        return None

    return impl


@overload_method(EngineType, "close", inline="always")
def _ov_close(e):
    return lambda e: 0


@overload_method(EngineType, "_goto_end", inline="always")
def _ov_goto_end(e):
    return lambda e: call_entry(e.entry, FN_GOTO_END, struct_ptr(e), 0, 0, 0, 0, 0, 0.0, 0.0)


# depth view
@overload_attribute(DepthType, "best_bid_tick", inline="always")
def _ov_bbt(d):
    return lambda d: d.bb


@overload_attribute(DepthType, "best_ask_tick", inline="always")
def _ov_bat(d):
    return lambda d: d.ba


@overload_attribute(DepthType, "best_bid", inline="always")
def _ov_bb(d):
    return lambda d: np.nan if d.bb == _I64_MIN else d.bb * d.tick


@overload_attribute(DepthType, "best_ask", inline="always")
def _ov_ba(d):
    return lambda d: np.nan if d.ba == _I64_MAX else d.ba * d.tick


@overload_attribute(DepthType, "best_bid_qty", inline="always")
def _ov_bbq(d):
    return lambda d: dp.best_bid_qty(d)


@overload_attribute(DepthType, "best_ask_qty", inline="always")
def _ov_baq(d):
    return lambda d: dp.best_ask_qty(d)


@overload_attribute(DepthType, "tick_size", inline="always")
def _ov_tick_size(d):
    return lambda d: d.tick


@overload_attribute(DepthType, "lot_size", inline="always")
def _ov_lot_size(d):
    return lambda d: d.lot


@overload_attribute(DepthType, "roi_lb_tick", inline="always")
def _ov_roi_lb_tick(d):
    return lambda d: d.lb


@overload_attribute(DepthType, "roi_ub_tick", inline="always")
def _ov_roi_ub_tick(d):
    return lambda d: d.ub


@overload_attribute(DepthType, "bid_depth", inline="always")
def _ov_bid_depth(d):
    return lambda d: d.bid


@overload_attribute(DepthType, "ask_depth", inline="always")
def _ov_ask_depth(d):
    return lambda d: d.ask


@overload_method(DepthType, "bid_qty_at_tick", inline="always")
def _ov_bid_qty_at_tick(d, price_tick):
    return lambda d, price_tick: dp.level(d, True, np.int64(price_tick))


@overload_method(DepthType, "ask_qty_at_tick", inline="always")
def _ov_ask_qty_at_tick(d, price_tick):
    return lambda d, price_tick: dp.level(d, False, np.int64(price_tick))


@overload_method(DepthType, "snapshot")
def _ov_snapshot(d):
    return lambda d: dp.snapshot(d)  # rare call: linking the snapshot kernel is cheap


@overload_method(DepthType, "snapshot_free", inline="always")
def _ov_snapshot_free(d, arr):
    return lambda d, arr: None


# order dict view: `values()` resets the table's own cursor and returns the table, which also serves as the iterator
@njit
def _advance(t):
    i = t.cursor + 1
    while i < t.top:
        if t.used[i] == 1:
            t.cursor = i
            return True
        i += 1
    t.cursor = t.top
    return False


@overload_method(OrderTableType, "values", inline="always")
def _ov_values(t):
    def impl(t):
        t.cursor = -1
        return t

    return impl


@overload_method(OrderTableType, "has_next", inline="always")
def _ov_has_next(t):
    return lambda t: _advance(t)


@overload_method(OrderTableType, "next", inline="always")
def _ov_next(t):
    def impl(t):
        if _advance(t):
            return t.rec[t.cursor]
        return None

    return impl


@overload_method(OrderTableType, "get", inline="always")
def _ov_get(t, order_id=None):
    if order_id is None or isinstance(order_id, (types.NoneType, types.Omitted)):
        return lambda t, order_id=None: t.rec[t.cursor]  # iterator form: current order

    def impl(t, order_id=None):
        slot = call_entry(t.entry, FN_TABLE_FIND, struct_ptr(t), _oid(order_id), 0, 0, 0, 0, 0.0, 0.0)
        if slot < 0:
            return None
        return t.rec[slot]

    return impl


@overload(operator.contains, inline="always")
def _ov_contains(t, order_id):
    if isinstance(t, OrderTableType):
        return lambda t, order_id: call_entry(t.entry, FN_TABLE_FIND, struct_ptr(t), _oid(order_id), 0, 0, 0, 0, 0.0, 0.0) >= 0
    return None


@overload(len, inline="always")
def _ov_len(t):
    if isinstance(t, OrderTableType):
        return lambda t: t.n
    return None


# order record view: extra read-only properties of the reference's Order
_ORDER_DTYPE = np.dtype(order_dtype)


_ORDER_PROPERTIES = {  # name -> (numba type, implementation over the order record)
    "price": (types.float64, lambda r: r.price_tick * r.tick_size),
    "exec_price": (types.float64, lambda r: r.exec_price_tick * r.tick_size),
    "cancellable": (types.boolean, lambda r: (r.status == NEW or r.status == PARTIALLY_FILLED) and r.req == 0),
    "active": (types.boolean, lambda r: r.status == NEW or r.status == PARTIALLY_FILLED),
}


@infer_getattr
class _OrderRecordAttributes(AttributeTemplate):
    """Typing of the properties; declines (None) for every other record so their own fields keep working."""

    key = types.Record

    def generic_resolve(self, typ, attr):
        if attr in _ORDER_PROPERTIES and typ.dtype == _ORDER_DTYPE:
            return _ORDER_PROPERTIES[attr][0]
        return None


def _lower_order_property(name):
    restype, fn = _ORDER_PROPERTIES[name]

    @lower_getattr(types.Record, name)
    def _lower(context, builder, typ, value):
        if typ.dtype != _ORDER_DTYPE:  # a user record with a real field of that name (e.g. record_dtype.price)
            return record_getattr(context, builder, typ, value, name)
        return context.compile_internal(builder, fn, restype(typ), [value])


for _name in _ORDER_PROPERTIES:
    _lower_order_property(_name)


# --- Python-side objects --------------------------------------------------------------------------------------------


class Depth(structref.StructRefProxy):
    """Live view of an asset's local market depth (plain-Python twin of the numba view)."""

    def _s(self):
        return _depth_scalars(self)

    @property
    def best_bid_tick(self):
        return int(self._s()[0])

    @property
    def best_ask_tick(self):
        return int(self._s()[1])

    @property
    def best_bid(self):
        return float(dp.best_bid(self))

    @property
    def best_ask(self):
        return float(dp.best_ask(self))

    @property
    def best_bid_qty(self):
        return float(dp.best_bid_qty(self))

    @property
    def best_ask_qty(self):
        return float(dp.best_ask_qty(self))

    @property
    def tick_size(self):
        return float(self._s()[2])

    @property
    def lot_size(self):
        return float(self._s()[3])

    @property
    def roi_lb_tick(self):
        return int(self._s()[5])

    @property
    def roi_ub_tick(self):
        return int(self._s()[6])

    @property
    def bid_depth(self):
        return _depth_arrays(self)[0]

    @property
    def ask_depth(self):
        return _depth_arrays(self)[1]

    def bid_qty_at_tick(self, price_tick):
        return float(dp.bid_qty_at(self, int(price_tick)))

    def ask_qty_at_tick(self, price_tick):
        return float(dp.ask_qty_at(self, int(price_tick)))

    def snapshot(self):
        return dp.snapshot(self)

    def snapshot_free(self, arr):
        return None


structref.define_boxing(DepthType, Depth)


class Order:
    """Plain-Python live view of one order slot (same read-only properties as the reference's Order)."""

    __slots__ = ("_rec",)

    def __init__(self, rec):
        self._rec = rec

    def __getattr__(self, name):
        if name in _ORDER_DTYPE.names:
            value = self._rec[name]
            return value.item() if hasattr(value, "item") else value
        raise AttributeError(name)

    @property
    def price(self):
        return self.price_tick * self.tick_size

    @property
    def exec_price(self):
        return self.exec_price_tick * self.tick_size

    @property
    def cancellable(self):
        return self.status in (NEW, PARTIALLY_FILLED) and self.req == 0

    def __repr__(self):
        return (
            f"Order(id={self.order_id}, side={self.side}, price_tick={self.price_tick}, qty={self.qty}, "
            f"leaves_qty={self.leaves_qty}, status={self.status}, req={self.req})"
        )


class OrderDict(structref.StructRefProxy):
    """Plain-Python view of an asset's local orders: get(id), values(), `in`, len."""

    def _orders(self):
        rec, used, top, n = _table_arrays(self)
        return [Order(rec[i]) for i in range(top) if used[i]]

    def get(self, order_id):
        slot = self._find(order_id)
        return None if slot < 0 else Order(_table_arrays(self)[0][slot])

    def values(self):
        return _PyOrderIter(self._orders())

    def _find(self, order_id):
        return int(c_entry.ctypes(FN_TABLE_FIND, int(_address(self)), _py_oid(order_id), 0, 0, 0, 0, 0.0, 0.0))

    def __contains__(self, order_id):
        return self._find(order_id) >= 0

    def __len__(self):
        return int(_table_arrays(self)[3])

    def __iter__(self):
        return iter(o.order_id for o in self._orders())


structref.define_boxing(OrderTableType, OrderDict)


class _PyOrderIter:
    def __init__(self, items):
        self._items = items
        self._i = -1

    def has_next(self):
        self._i += 1
        return self._i < len(self._items)

    def get(self):
        return self._items[self._i]

    def next(self):
        return self.get() if self.has_next() else None

    def __iter__(self):
        return iter(self._items)


_KEYS = itertools.count(1)


def _py_oid(order_id):
    """Order ids are u64; the kernels carry their bit pattern as i64."""
    return int(np.uint64(order_id).astype(np.int64))


class Backtest(structref.StructRefProxy):
    """The backtester handed to strategies. Build it with HashMapMarketDepthBacktest / ROIVectorMarketDepthBacktest."""

    @property
    def current_timestamp(self):
        return int(_engine_scalars(self)[0])

    @property
    def num_assets(self):
        return int(_engine_scalars(self)[1])

    def depth(self, asset_no):
        return _depth(self, asset_no)

    def orders(self, asset_no):
        return _orders(self, asset_no)

    def state_values(self, asset_no):
        # np.record: attribute access (`.position`) like the reference, still a live view of the engine state
        return _state(self, asset_no).view(np.recarray)[0]

    def position(self, asset_no):
        return float(_state(self, asset_no)[0]["position"])

    def last_trades(self, asset_no):
        return _last_trades(self, asset_no)

    def clear_last_trades(self, asset_no):
        _clear_last_trades(self, asset_no)

    def _call(self, op, i1=0, i2=0, i3=0, i4=0, i5=0, f1=0.0, f2=0.0):
        addr = self.__dict__.get("_addr")
        if addr is None:
            addr = self.__dict__["_addr"] = int(_address(self))
        return int(c_entry.ctypes(op, addr, i1, i2, i3, i4, i5, f1, f2))

    def _checked(self, asset_no):
        if not 0 <= asset_no < self.num_assets:
            raise IndexError(f"asset number {asset_no} out of range (0..{self.num_assets - 1})")
        return asset_no

    def clear_inactive_orders(self, asset_no):
        if asset_no >= 0:
            self._checked(asset_no)
        self._call(FN_CLEAR_INACTIVE, asset_no)

    def submit_buy_order(self, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        return self._call(FN_SUBMIT, self._checked(asset_no), _py_oid(order_id), BUY,
                          int(time_in_force) | (int(order_type) << 8), int(bool(wait)), float(price), float(qty))

    def submit_sell_order(self, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        return self._call(FN_SUBMIT, self._checked(asset_no), _py_oid(order_id), SELL,
                          int(time_in_force) | (int(order_type) << 8), int(bool(wait)), float(price), float(qty))

    def modify(self, asset_no, order_id, price, qty, wait):
        return self._call(FN_MODIFY, self._checked(asset_no), _py_oid(order_id), int(bool(wait)), 0, 0,
                          float(price), float(qty))

    def cancel(self, asset_no, order_id, wait):
        return self._call(FN_CANCEL, self._checked(asset_no), _py_oid(order_id), int(bool(wait)))

    def elapse(self, duration):
        return self._call(FN_ELAPSE, int(duration))

    def elapse_bt(self, duration):
        return self._call(FN_ELAPSE, int(duration))

    def wait_next_feed(self, include_order_resp, timeout):
        return self._call(FN_WAIT_NEXT_FEED, int(bool(include_order_resp)), int(timeout))

    def wait_order_response(self, asset_no, order_id, timeout):
        return self._call(FN_WAIT_ORDER_RESPONSE, self._checked(asset_no), _py_oid(order_id), int(timeout))

    def feed_latency(self, asset_no):
        ok, a, b = _feed_latency(self, asset_no)
        return (int(a), int(b)) if ok else None

    def order_latency(self, asset_no):
        ok, a, b, c = _order_latency(self, asset_no)
        return (int(a), int(b), int(c)) if ok else None

    def close(self):
        return 0

    def _goto_end(self):
        return self._call(FN_GOTO_END)


structref.define_boxing(EngineType, Backtest)

# Imported only now: compiling (or loading) the entry point compiles kernels whose Python wrappers must already
# know how to box/unbox every proxy type registered above.
from ..kernels.entry import address, c_entry  # noqa: E402


def _load_array(src: Source) -> np.ndarray:
    check_source(src)
    if src.array is not None:
        return as_kernel_array(src.array)
    if src.path.endswith(".npy"):
        return as_kernel_array(np.load(src.path))
    with np.load(src.path) as npz:
        return as_kernel_array(npz["data"])


def _build(assets: list[BacktestAsset], roi: bool, cls):
    if isinstance(assets, BacktestAsset):
        assets = [assets]
    if not assets:
        raise ConfigError("at least one BacktestAsset is required")
    key = next(_KEYS)
    feeds = []
    states = new_asset_list()
    mode = dp.MODE_ROI if roi else dp.MODE_HASHMAP
    for no, asset in enumerate(assets):
        if not isinstance(asset, BacktestAsset):
            raise ConfigError(f"asset {no}: expected a BacktestAsset, got {type(asset).__name__}")
        cfg: AssetConfig = asset.build(no, roi)
        feed = AssetFeed(list(cfg.sources), cfg.latency_offset)
        try:
            first = feed.chunk(0, 0) if len(feed) else loop._EMPTY
            if len(feed):
                feed.chunk(1, 0)
        except DataError as exc:
            raise DataError(f"asset {no}: {exc}") from None
        depths = [dp.new_depth(mode, cfg.tick_size, cfg.lot_size, cfg.roi_lb, cfg.roi_ub, cfg.reference_compatible)
                  for _ in range(2)]
        if cfg.snapshot is not None:
            snap = _load_array(cfg.snapshot)
            for d in depths:
                _apply_snapshot(d, snap)
        cfg_f = np.array([cfg.tick_size, cfg.lot_size, cfg.contract_size, cfg.maker_fee, cfg.taker_fee, cfg.queue_n])
        cfg_i = np.array([cfg.asset_type, cfg.fee_model, cfg.queue_model, cfg.exchange_model, cfg.latency_model,
                          cfg.entry_latency, cfg.response_latency, int(cfg.reference_compatible),
                          int(cfg.last_trades_capacity > 0)], np.int64)
        state = new_asset_state(cfg_f, cfg_i, cfg.latency_table, depths[0], depths[1], first, len(feed))
        _append_asset(states, state)
        feeds.append(feed)
    from .reader import Feed

    loop.FEEDS[key] = Feed(feeds)
    engine = new_engine(states, key, address())
    # Boxed as this process's `engine_type`, whose name carries the cache salt (see _cache_salt): `new_engine`'s
    # cached return type is whatever type was current when it was cached.
    obj = cls._numba_box_(engine_type, engine._meminfo)
    weakref.finalize(obj, loop.FEEDS.pop, key, None)
    return obj


class HashMapMarketDepthBacktest(Backtest):
    """Backtester whose books follow the reference's HashMapMarketDepth semantics (unbounded price range)."""

    def __new__(cls, assets):
        return _build(assets, False, cls)


class ROIVectorMarketDepthBacktest(Backtest):
    """Backtester whose books follow ROIVectorMarketDepth semantics (only [roi_lb, roi_ub] is tracked)."""

    def __new__(cls, assets):
        return _build(assets, True, cls)
