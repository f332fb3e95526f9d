"""The bot object users' `@njit` strategies receive, and its plain-Python twin.

`Backtest` is a numba StructRef proxy over the engine (`kernels.state.engine_type`), typed as `BotType`, a view of
it whose name carries the cache salt (see views.py). Inside `@njit` code, its methods are
overloads whose bodies read engine fields or make one call through the cached engine entry point, so compiling a
user strategy stays fast and the heavy loop always comes from numba's on-disk cache. From plain Python the same
methods call the same kernels (handy for debugging).

Views handed out (all live, none allocated per call):
* `hbt.depth(a)` -> the asset's local depth (`DepthViewType`; best_bid, best_ask, *_tick, *_qty, tick_size, ...);
* `hbt.orders(a)` -> the asset's local order table (`OrdersViewType`; get, values, `in`, len);
* `hbt.state_values(a)` -> a record view of `state_values_dtype`;
* orders are record views of `order_dtype` with extra properties price, exec_price, cancellable.
"""
from __future__ import annotations

import functools
import itertools
import operator
import warnings
import weakref

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.core.extending import (
    intrinsic, make_attribute_wrapper, models, overload, overload_attribute, overload_method, register_model,
)
from numba.core.imputils import impl_ret_borrowed, lower_getattr
from numba.core.typing.templates import AttributeTemplate, infer_getattr
from numba.np.arrayobj import record_getattr
from numba.experimental import structref

from ..errors import ConfigError, DataError, HftBacktestError
from ..kernels import depth as dp
from ..kernels import loop
from ..kernels.depth import DepthType, depth_type
from ..kernels.orders import OrderTableType, order_record_type
from .._numba_tricks.elapse import quiet_elapse
from ..kernels.entry import address, entry_point
from ..kernels.abi import (
    FN_CANCEL,
    FN_CLEAR_INACTIVE,
    FN_CLOSE,
    FN_ELAPSE,
    FN_GOTO_END,
    FN_MODIFY,
    FN_SUBMIT_BUY,
    FN_SUBMIT_SELL,
    FN_WAIT_NEXT_FEED,
    FN_WAIT_ORDER_RESPONSE,
    FN_TABLE_FIND,
    call_entry,
    order_kind,
    struct_from_ptr,
    struct_ptr,
)
from ..kernels import perp
from ..kernels.state import (
    asset_config, asset_state_type, engine_type, new_asset_list, new_asset_state, new_engine,
)
from ..types import EXCH_EVENT, FUNDING_RATE_EVENT, NEW, PARTIALLY_FILLED, order_dtype
from .asset import AssetConfig, BacktestAsset
from .views import BotType, DepthViewType, OrdersViewType, bot_type, depth_view_type, orders_view_type, recast
from .reader import AssetFeed, Source, as_kernel_array, check_source


class AssetNumberError(HftBacktestError, IndexError):
    """An asset number outside 0 .. num_assets - 1 was passed to the bot (also an IndexError, as before)."""


# --- kernels the overloads and the Python proxies share ---------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _check_asset(e, asset):
    if asset < 0 or asset >= e.num_assets:
        raise AssetNumberError("asset number out of range: valid numbers are 0 .. hbt.num_assets - 1")


@njit(cache=True, error_model="numpy")
def _depth(e, asset):
    _check_asset(e, asset)
    return recast(e.assets[asset].depth_l, depth_view_type)


@njit(cache=True, error_model="numpy")
def _orders(e, asset):
    _check_asset(e, asset)
    return recast(e.assets[asset].ord_l, orders_view_type)


@njit(cache=True, error_model="numpy")
def _state(e, asset):
    _check_asset(e, asset)
    return e.assets[asset].sv_l


@njit(cache=True, error_model="numpy")
def _perp(e, asset):
    _check_asset(e, asset)
    return e.assets[asset].perp_f[0], e.assets[asset].perp_f[3]


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
    loop.clear_last_trades(recast(e, engine_type), asset)


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
def _depth_best(d):
    k = recast(d, depth_type)
    return dp.best_bid(k), dp.best_ask(k), dp.best_bid_qty(k), dp.best_ask_qty(k)


@njit(cache=True, error_model="numpy")
def _depth_qty_at(d, bid_side, tick):
    k = recast(d, depth_type)
    return dp.bid_qty_at(k, tick) if bid_side else dp.ask_qty_at(k, tick)


@njit(cache=True, error_model="numpy")
def _depth_snapshot(d):
    return dp.snapshot(recast(d, depth_type))


@njit(cache=True, error_model="numpy")
def _apply_snapshot(d, data):
    dp.apply_snapshot(d, data)


# --- numba-side API ---------------------------------------------------------------------------------------------------
# Overload bodies are compiled into every user strategy: they only read engine fields or call a cached entry point
# through its address (kernels/abi.py), never the engine's kernels directly. Inlined bodies (inline="always") are
# straight-line code: numba's inliner gives a value merged from two branches (`a if c else b`, a loop variable) a
# name that its SSA check then reports as NumbaIRAssumptionWarning "variable ... not in scope", so whatever
# branches lives in a small plain @njit helper below.

_I64_MIN = -9223372036854775808
_I64_MAX = 9223372036854775807


@njit(inline="always")
def _oid(order_id):
    return np.int64(np.uint64(order_id))


@njit(inline="always")
def _asset(e, asset_no):
    if asset_no < 0 or asset_no >= e.num_assets:
        raise AssetNumberError("asset number out of range: valid numbers are 0 .. hbt.num_assets - 1")
    return struct_from_ptr(e.aptr[asset_no], asset_state_type)


@njit(inline="always")
def _call(e, op, asset_no=0, order_id=0, ns=0, kind=0, flag=0, price=0.0, qty=0.0):
    """Operation `op` of the engine's entry point, its arguments by slot name (kernels/abi.py)."""
    return call_entry(e.entry, op, struct_ptr(e), np.int64(asset_no), np.int64(order_id), np.int64(ns),
                      np.int64(kind), np.int64(flag), np.float64(price), np.float64(qty))


@njit(inline="always")
def _table_find(t, order_id):
    return call_entry(t.entry, FN_TABLE_FIND, struct_ptr(t), 0, _oid(order_id), 0, 0, 0, 0.0, 0.0)


@njit(inline="always")
def _entry_elapse(e, duration):
    return _call(e, FN_ELAPSE, ns=duration)


# no engine call while nothing is due (_numba_tricks/elapse.py); the plain call on a numba that trick is not tested on
_elapse = quiet_elapse(FN_ELAPSE) or _entry_elapse


@intrinsic
def _select(typingctx, cond, if_true, if_false):
    """`if_true if cond else if_false` for floats as straight-line code (an LLVM select), so it can be inlined."""

    def codegen(context, builder, sig, args):
        return builder.select(args[0], args[1], args[2])

    return types.float64(types.boolean, types.float64, types.float64), codegen


@njit(cache=True)
def _clear_trades(e, asset_no):
    if asset_no < 0:
        for a in range(e.num_assets):
            _asset(e, a).ntrades = 0
    else:
        _asset(e, asset_no).ntrades = 0


@njit(cache=True)
def _feed_latency_of(s):
    return (s.feed_lat[0], s.feed_lat[1]) if s.has_feed_lat else None


@njit(cache=True)
def _order_latency_of(s):
    return (s.ord_lat[0], s.ord_lat[1], s.ord_lat[2]) if s.has_ord_lat else None


@njit(inline="always")
def _trades(s):
    return s.trades[: s.ntrades]


@njit(cache=True)
def _find(t, order_id):
    slot = _table_find(t, order_id)
    return None if slot < 0 else t.rec[slot]


def _register(kind, typs, impls, inline="never"):
    """Registers each `name: implementation` of `impls` as an attribute or method of each type of `typs`.

    Compiled as small functions by default (LLVM inlines them; numba compiles each once per process): numba's own
    IR inlining re-runs its front end at every call site and made a strategy with ~170 API calls take 12 s to
    compile. `inline="always"` is kept where the result is a reference-counted object (a view, an array: returned
    from a call its reference count costs two atomic operations per use) or must live in the caller's frame."""
    for typ in typs:
        for name, impl in impls.items():
            # numba checks that the typing function's parameters match the implementation's: give it impl's
            typer = functools.wraps(impl)(lambda *args, _impl=impl: _impl)
            kind(typ, name, inline=inline)(typer)


def _submitter(op):
    def submit(e, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        _asset(e, asset_no)
        return _call(e, op, asset_no=asset_no, order_id=_oid(order_id), kind=order_kind(time_in_force, order_type),
                     flag=wait != 0, price=price, qty=qty)

    return submit


def _modify(e, asset_no, order_id, price, qty, wait):
    _asset(e, asset_no)
    return _call(e, FN_MODIFY, asset_no=asset_no, order_id=_oid(order_id), flag=wait != 0, price=price, qty=qty)


def _cancel(e, asset_no, order_id, wait):
    _asset(e, asset_no)
    return _call(e, FN_CANCEL, asset_no=asset_no, order_id=_oid(order_id), flag=wait != 0)


def _wait_order_response(e, asset_no, order_id, timeout):
    _asset(e, asset_no)
    return _call(e, FN_WAIT_ORDER_RESPONSE, asset_no=asset_no, order_id=_oid(order_id), ns=timeout)


def _clear_inactive_orders(e, asset_no):
    if asset_no >= 0:
        _asset(e, asset_no)  # range check
    _call(e, FN_CLEAR_INACTIVE, asset_no=asset_no)


_register(overload_attribute, [BotType], {
    "current_timestamp": lambda e: e.cur_ts,
}, inline="always")
_register(overload_method, [BotType], {
    "depth": lambda e, asset_no: recast(_asset(e, asset_no).depth_l, depth_view_type),
    "orders": lambda e, asset_no: recast(_asset(e, asset_no).ord_l, orders_view_type),
    "state_values": lambda e, asset_no: _asset(e, asset_no).sv_l[0],
    "last_trades": lambda e, asset_no: _trades(_asset(e, asset_no)),
}, inline="always")
_register(overload_method, [BotType], {
    "position": lambda e, asset_no: _asset(e, asset_no).sv_l[0].position,
    "mark_price": lambda e, asset_no: _asset(e, asset_no).perp_f[0],
    "funding": lambda e, asset_no: _asset(e, asset_no).perp_f[3],
    "clear_last_trades": lambda e, asset_no: _clear_trades(e, asset_no),
    "clear_inactive_orders": _clear_inactive_orders,
    "submit_buy_order": _submitter(FN_SUBMIT_BUY),
    "submit_sell_order": _submitter(FN_SUBMIT_SELL),
    "modify": _modify,
    "cancel": _cancel,
    "elapse": lambda e, duration: _elapse(e, duration),
    "elapse_bt": lambda e, duration: _elapse(e, duration),
    "wait_next_feed": lambda e, include_order_resp, timeout: _call(
        e, FN_WAIT_NEXT_FEED, ns=timeout, flag=include_order_resp != 0),
    "wait_order_response": _wait_order_response,
    "feed_latency": lambda e, asset_no: _feed_latency_of(_asset(e, asset_no)),
    "order_latency": lambda e, asset_no: _order_latency_of(_asset(e, asset_no)),
    "close": lambda e: _call(e, FN_CLOSE),
    "_goto_end": lambda e: _call(e, FN_GOTO_END),
})

# depth view (also over the engine's type: the live bot hands out the engine's depth)
_register(overload_attribute, [DepthType, DepthViewType], {
    "best_bid_tick": lambda d: d.bb,
    "best_ask_tick": lambda d: d.ba,
    "best_bid": lambda d: _select(d.bb == _I64_MIN, np.nan, d.bb * d.tick),
    "best_ask": lambda d: _select(d.ba == _I64_MAX, np.nan, d.ba * d.tick),
    "best_bid_qty": lambda d: dp.best_bid_qty(recast(d, depth_type)),
    "best_ask_qty": lambda d: dp.best_ask_qty(recast(d, depth_type)),
    "tick_size": lambda d: d.tick,
    "lot_size": lambda d: d.lot,
    "roi_lb_tick": lambda d: d.lb,
    "roi_ub_tick": lambda d: d.ub,
})
_register(overload_attribute, [DepthType, DepthViewType], {
    "bid_depth": lambda d: d.bid,
    "ask_depth": lambda d: d.ask,
}, inline="always")
_register(overload_method, [DepthType, DepthViewType], {
    "bid_qty_at_tick": lambda d, price_tick: dp.level(recast(d, depth_type), True, np.int64(price_tick)),
    "ask_qty_at_tick": lambda d, price_tick: dp.level(recast(d, depth_type), False, np.int64(price_tick)),
    "snapshot": lambda d: dp.snapshot(recast(d, depth_type)),  # rare call: linking the snapshot kernel is cheap
    "snapshot_free": lambda d, arr: None,
})


# order dict view: `values()` returns an iterator value holding the table and a pointer to its own cursor, an int64
# on the stack of the function that called `values()` (numba's own list/range iterators work the same way): nested
# or interleaved iterations are independent and no call allocates. Like numba's iterators, one must not be returned
# from the function that created it.
class OrderIterType(types.Type):
    def __init__(self, table):
        self.table = table
        super().__init__(name=f"OrderValues[{table.name}]")


@register_model(OrderIterType)
class _OrderIterModel(models.StructModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, [("table", fe_type.table), ("cursor", types.CPointer(types.int64))])


make_attribute_wrapper(OrderIterType, "table", "table")


@intrinsic
def _new_order_iter(typingctx, table):
    def codegen(context, builder, sig, args):
        it = cgutils.create_struct_proxy(sig.return_type)(context, builder)
        it.table = args[0]
        it.cursor = cgutils.alloca_once_value(builder, context.get_constant(types.int64, -1))
        return impl_ret_borrowed(context, builder, sig.return_type, it._getvalue())

    return OrderIterType(table)(table), codegen


@intrinsic
def _cursor(typingctx, it):
    def codegen(context, builder, sig, args):
        return builder.load(cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0]).cursor)

    return types.int64(it), codegen


@intrinsic
def _set_cursor(typingctx, it, i):
    def codegen(context, builder, sig, args):
        builder.store(args[1], cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0]).cursor)
        return context.get_dummy_value()

    return types.void(it, types.int64), codegen


_DONE = -2  # cursor of an exhausted iterator: stays exhausted, like the reference's


@njit(cache=True)
def _advance(it):
    t = it.table
    i = _cursor(it)
    if i == _DONE:
        return False
    i += 1
    while i < t.top and t.used[i] != 1:
        i += 1
    _set_cursor(it, i if i < t.top else _DONE)
    return i < t.top


@njit(cache=True)
def _current(it):
    i = _cursor(it)
    if i < 0:
        raise RuntimeError("values().get(): no current order (has_next() was not called or returned False)")
    return it.table.rec[i]


@njit(cache=True)
def _next(it):
    return it.table.rec[_cursor(it)] if _advance(it) else None


_register(overload_method, [OrderTableType, OrdersViewType], {
    "values": lambda t: _new_order_iter(t),  # inlined: the cursor must live in the caller's frame
}, inline="always")
_register(overload_method, [OrderTableType, OrdersViewType], {
    "get": lambda t, order_id: _find(t, order_id),
})
_register(overload_method, [OrderIterType], {
    "has_next": lambda it: _advance(it),
    "get": lambda it: _current(it),
    "next": lambda it: _next(it),
})


@overload(operator.contains, inline="always")
def _ov_contains(t, order_id):
    if isinstance(t, (OrderTableType, OrdersViewType)):
        return lambda t, order_id: _table_find(t, order_id) >= 0
    return None


@overload(len, inline="always")
def _ov_len(t):
    if isinstance(t, (OrderTableType, OrdersViewType)):
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
    """Typing of the order record's fields and extra properties.

    Keyed on the order record type itself: numba then consults only this template for it, whatever was compiled
    before this module was imported (keyed on `types.Record`, numba's own record template could come first and
    fail on 'cancellable', e.g. after a conversion ran numba code first). Other records are untouched."""

    key = order_record_type

    def generic_resolve(self, typ, attr):
        if attr in _ORDER_PROPERTIES:
            return _ORDER_PROPERTIES[attr][0]
        if attr in typ.fields:
            return typ.typeof(attr)
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

    @property
    def best_bid(self):
        return float(_depth_best(self)[0])

    @property
    def best_ask(self):
        return float(_depth_best(self)[1])

    @property
    def best_bid_qty(self):
        return float(_depth_best(self)[2])

    @property
    def best_ask_qty(self):
        return float(_depth_best(self)[3])

    @property
    def bid_depth(self):
        return _depth_arrays(self)[0]

    @property
    def ask_depth(self):
        return _depth_arrays(self)[1]

    def bid_qty_at_tick(self, price_tick):
        return float(_depth_qty_at(self, True, int(price_tick)))

    def ask_qty_at_tick(self, price_tick):
        return float(_depth_qty_at(self, False, int(price_tick)))

    def snapshot(self):
        return _depth_snapshot(self)

    def snapshot_free(self, arr):
        return None


# the scalar properties, by position in `_depth_scalars`
for _i, (_name, _conv) in enumerate([("best_bid_tick", int), ("best_ask_tick", int), ("tick_size", float),
                                     ("lot_size", float), (None, None), ("roi_lb_tick", int), ("roi_ub_tick", int)]):
    if _name is not None:
        setattr(Depth, _name, property(lambda self, _i=_i, _conv=_conv: _conv(_depth_scalars(self)[_i])))


structref.define_boxing(DepthViewType, Depth)
structref.define_boxing(DepthType, Depth)  # the engine's own depth (kernel tests, live bot)


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
        return int(entry_point().ctypes(FN_TABLE_FIND, int(_address(self)), 0, _py_oid(order_id), 0, 0, 0, 0.0, 0.0))

    def __contains__(self, order_id):
        return self._find(order_id) >= 0

    def __len__(self):
        return int(_table_arrays(self)[3])

    def __iter__(self):
        return iter(o.order_id for o in self._orders())


structref.define_boxing(OrdersViewType, OrderDict)
structref.define_boxing(OrderTableType, OrderDict)


class _PyOrderIter:
    def __init__(self, items):
        self._items = items
        self._i = -1

    def has_next(self):
        self._i = min(self._i + 1, len(self._items))
        return self._i < len(self._items)

    def get(self):
        if not 0 <= self._i < len(self._items):
            raise RuntimeError("values().get(): no current order (has_next() was not called or returned False)")
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
        """The backtest's current time (ns, the local clock)."""
        return int(_engine_scalars(self)[0])

    @property
    def num_assets(self):
        """Number of assets the backtest was built with."""
        return int(_engine_scalars(self)[1])

    def depth(self, asset_no):
        """The asset's market depth as the strategy sees it (local side), a live view."""
        return _depth(self, self._checked(asset_no))

    def orders(self, asset_no):
        """The asset's orders as the strategy knows them (local side): get(id), values(), `in`, len."""
        return _orders(self, self._checked(asset_no))

    def state_values(self, asset_no):
        """The asset's position, balance, fees, trade count/volume/value (a live record view)."""
        # np.record: attribute access (`.position`) like the reference, still a live view of the engine state
        return _state(self, self._checked(asset_no)).view(np.recarray)[0]

    def position(self, asset_no):
        """The asset's current position (signed quantity; negative when short)."""
        return float(_state(self, self._checked(asset_no))[0]["position"])

    def mark_price(self, asset_no):
        """Last mark price (MARK_PRICE_EVENT 101 rows at local_ts); NaN before the first."""
        return float(_perp(self, self._checked(asset_no))[0])

    def funding(self, asset_no):
        """Cumulative funding paid (negative: received), already taken from the balance; 0 unless
        `BacktestAsset().funding(True)`. Quote currency (linear) or coin (inverse)."""
        return float(_perp(self, self._checked(asset_no))[1])

    def last_trades(self, asset_no):
        """Market trades received since the last clear_last_trades (needs BacktestAsset.last_trades_capacity)."""
        return _last_trades(self, self._checked(asset_no))

    def clear_last_trades(self, asset_no):
        """Forget the recorded market trades of the asset (-1: of every asset)."""
        _clear_last_trades(self, asset_no)

    def _call(self, op, asset_no=0, order_id=0, ns=0, kind=0, flag=0, price=0.0, qty=0.0):
        """Operation `op` of the engine's entry point, its arguments by slot name (kernels/abi.py)."""
        addr = self.__dict__.get("_addr")
        if addr is None:
            addr = self.__dict__["_addr"] = int(_address(self))
        return int(entry_point().ctypes(op, addr, asset_no, order_id, ns, kind, flag, price, qty))

    def _checked(self, asset_no):
        if not 0 <= asset_no < self.num_assets:
            raise AssetNumberError(f"asset number {asset_no} out of range: valid numbers are 0 .. {self.num_assets - 1}")
        return asset_no

    def clear_inactive_orders(self, asset_no):
        """Remove filled, cancelled and expired orders from the asset's order table (-1: every asset)."""
        if asset_no >= 0:
            self._checked(asset_no)
        self._call(FN_CLEAR_INACTIVE, asset_no=asset_no)

    def submit_buy_order(self, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        """Send a buy order (`order_id` unique among the asset's orders). With `wait`, return once the exchange's
        response arrived. Returns a ReturnCode (0: sent)."""
        return self._submit(FN_SUBMIT_BUY, asset_no, order_id, price, qty, time_in_force, order_type, wait)

    def submit_sell_order(self, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        """Send a sell order; as submit_buy_order."""
        return self._submit(FN_SUBMIT_SELL, asset_no, order_id, price, qty, time_in_force, order_type, wait)

    def _submit(self, op, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        return self._call(op, asset_no=self._checked(asset_no), order_id=_py_oid(order_id),
                          kind=order_kind(int(time_in_force), int(order_type)), flag=int(bool(wait)),
                          price=float(price), qty=float(qty))

    def modify(self, asset_no, order_id, price, qty, wait):
        """Ask the exchange to change an open order's price and quantity. Returns a ReturnCode."""
        return self._call(FN_MODIFY, asset_no=self._checked(asset_no), order_id=_py_oid(order_id),
                          flag=int(bool(wait)), price=float(price), qty=float(qty))

    def cancel(self, asset_no, order_id, wait):
        """Ask the exchange to cancel an open order. Returns a ReturnCode."""
        return self._call(FN_CANCEL, asset_no=self._checked(asset_no), order_id=_py_oid(order_id),
                          flag=int(bool(wait)))

    def elapse(self, duration):
        """Advance time by `duration` ns, processing every feed and order event in between. Returns 0, or
        END_OF_DATA (1) once the data is exhausted."""
        return self._call(FN_ELAPSE, ns=int(duration))

    def elapse_bt(self, duration):
        """Same as elapse (the reference's name for the backtest-only variant)."""
        return self._call(FN_ELAPSE, ns=int(duration))

    def wait_next_feed(self, include_order_resp, timeout):
        """Advance to the next market-data event (or, with include_order_resp, order response), at most `timeout`
        ns. Returns MARKET_FEED (2), ORDER_RESPONSE (3), 0 when the timeout passed first, or END_OF_DATA."""
        return self._call(FN_WAIT_NEXT_FEED, ns=int(timeout), flag=int(bool(include_order_resp)))

    def wait_order_response(self, asset_no, order_id, timeout):
        """Advance until the response to the order's last request arrives, at most `timeout` ns."""
        return self._call(FN_WAIT_ORDER_RESPONSE, asset_no=self._checked(asset_no), order_id=_py_oid(order_id),
                          ns=int(timeout))

    def feed_latency(self, asset_no):
        """(exchange timestamp, local timestamp) of the last market-data event, or None before the first."""
        self._checked(asset_no)
        ok, a, b = _feed_latency(self, asset_no)
        return (int(a), int(b)) if ok else None

    def order_latency(self, asset_no):
        """(request, exchange, response timestamps) of the last order response, or None before the first."""
        self._checked(asset_no)
        ok, a, b, c = _order_latency(self, asset_no)
        return (int(a), int(b), int(c)) if ok else None

    def close(self):
        """End the backtest: later elapse/wait/submit/modify/cancel calls return ReturnCode.CLOSED (20) and the
        data feed is released. Views (depth, orders, state values) stay readable. Returns 0."""
        rc = self._call(FN_CLOSE)
        key = self.__dict__.get("_feed_key")
        if key is not None:
            loop.FEEDS.pop(key, None)
        return rc

    def _goto_end(self):
        return self._call(FN_GOTO_END)


structref.define_boxing(BotType, Backtest)



def _load_array(src: Source) -> np.ndarray:
    check_source(src)
    if src.array is not None:
        return as_kernel_array(src.array)
    if src.path.endswith(".npy"):
        return as_kernel_array(np.load(src.path))
    with np.load(src.path) as npz:
        return as_kernel_array(npz["data"])


def _release(key, keepalive):
    loop.FEEDS.pop(key, None)
    keepalive.clear()


def _perp_setup(state, cfg: AssetConfig, first, no: int) -> None:
    """Latency lanes (kernels/perp.py) and the funding data check (funding itself is on through the asset's
    configuration record); nothing to do for a 2.x configuration."""
    if cfg.latency_lanes:
        perp.set_latency_lanes(state, *cfg.latency_lanes)
    if cfg.funding:
        kinds = first["ev"] & 0xFF
        if not np.any((kinds == FUNDING_RATE_EVENT) & ((first["ev"] & EXCH_EVENT) != 0)):
            name = cfg.sources[0].name if cfg.sources else "<no data>"
            msg = (f"asset {no}: funding(True) but {name} has no funding-rate rows (event {FUNDING_RATE_EVENT}); "
                   f"convert the feed with option 'm', or drop .funding(True)")
            if not cfg.funding_lenient:
                raise DataError(msg)
            warnings.warn(msg, stacklevel=4)  # the user's HashMapMarketDepthBacktest(...) line


def _build(assets: list[BacktestAsset], roi: bool, cls):
    if isinstance(assets, BacktestAsset):
        assets = [assets]
    if not assets:
        raise ConfigError("at least one BacktestAsset is required")
    entry = address()  # first: on a cold cache this starts the compile helper before the constructors compile
    key = next(_KEYS)
    feeds = []
    keepalive = []  # C callbacks the engine calls by address: alive as long as the bot
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
        from .asset import check_latency_overlap
        check_latency_overlap(no, cfg, first, len(feed) == 1)
        depths = [dp.new_depth(mode, cfg.tick_size, cfg.lot_size, cfg.roi_lb, cfg.roi_ub, cfg.reference_compatible)
                  for _ in range(2)]
        if cfg.snapshot is not None:
            snap = _load_array(cfg.snapshot)
            for d in depths:
                _apply_snapshot(d, snap)
        kcfg = asset_config(
            tick_size=cfg.tick_size, lot_size=cfg.lot_size, contract_size=cfg.contract_size, maker_fee=cfg.maker_fee,
            taker_fee=cfg.taker_fee, queue_n=cfg.queue_n, asset_type=cfg.asset_type, fee_model=cfg.fee_model,
            queue_model=cfg.queue_model, exchange_model=cfg.exchange_model, latency_model=cfg.latency_model,
            entry_latency=cfg.entry_latency, response_latency=cfg.response_latency,
            reference_compatible=cfg.reference_compatible, record_trades=cfg.last_trades_capacity > 0,
            queue_fn=cfg.queue_prob.address if cfg.queue_prob is not None else 0, funding=cfg.funding)
        if cfg.queue_prob is not None:
            keepalive.append(cfg.queue_prob)
        state = new_asset_state(kcfg, cfg.latency_table, depths[0], depths[1], first, len(feed))
        _perp_setup(state, cfg, first, no)
        _append_asset(states, state)
        feeds.append(feed)
    from .reader import Feed

    loop.FEEDS[key] = Feed(feeds)
    engine = new_engine(states, key, entry)
    obj = cls._numba_box_(bot_type, engine._meminfo)
    obj.__dict__["_feed_key"] = key
    weakref.finalize(obj, _release, key, keepalive)
    return obj


class HashMapMarketDepthBacktest(Backtest):
    """Backtester whose books follow the reference's HashMapMarketDepth semantics (unbounded price range)."""

    def __new__(cls, assets):
        return _build(assets, False, cls)


class ROIVectorMarketDepthBacktest(Backtest):
    """Backtester whose books follow ROIVectorMarketDepth semantics (only [roi_lb, roi_ub] is tracked)."""

    def __new__(cls, assets):
        return _build(assets, True, cls)
