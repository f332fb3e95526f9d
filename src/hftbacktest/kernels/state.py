"""Engine state as numba StructRefs (cacheable, unlike jitclass): one `AssetState` per asset and the `Engine`.

The user's bot object (`backtest/bot.py`) is a thin proxy over `Engine`; every kernel takes these structs.
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.experimental import structref
from numba.np import numpy_support
from numba.typed import List

from ..types import event_dtype, order_dtype, state_values_dtype
from .depth import depth_type
from .structbase import CompactStructRef
from .abi import struct_from_ptr, struct_ptr
from .._numba_tricks.borrow import borrowed
from .orders import bus_type, new_bus, new_table, order_array_type, table_type


@structref.register
class AssetStateType(CompactStructRef):
    pass


@structref.register
class EngineType(CompactStructRef):
    pass


event_record_type = numpy_support.from_dtype(event_dtype)
event_array_type = types.Array(event_record_type, 1, "C")
data_array_type = types.Array(event_record_type, 1, "C", readonly=True)
state_record_type = numpy_support.from_dtype(state_values_dtype)
state_array_type = types.Array(state_record_type, 1, "C")

asset_fields = [
    # configuration (codes from kernels.models)
    ("tick", types.float64),
    ("lot", types.float64),
    ("asset_type", types.int64),
    ("cs", types.float64),
    ("fee_model", types.int64),
    ("maker_fee", types.float64),
    ("taker_fee", types.float64),
    ("queue_model", types.int64),
    ("queue_n", types.float64),
    ("queue_fn", types.int64),  # address of the user's probability function (QUEUE_CUSTOM)
    ("exch_model", types.int64),
    ("lat_model", types.int64),
    ("lat_entry", types.int64),
    ("lat_resp", types.int64),
    ("lat_tab", types.int64[:, ::1]),
    ("lat_ce", types.int64),
    ("lat_cr", types.int64),
    ("compat", types.boolean),  # reproduce reference bugs #316/#312/#317 (docs/architecture.md "Reference compatibility")
    ("record_trades", types.boolean),
    # books, orders, buses
    ("depth_l", depth_type),
    ("depth_x", depth_type),
    ("ord_l", table_type),
    ("ord_x", table_type),
    ("to_exch", bus_type),
    ("to_local", bus_type),
    # data cursors: each processor has its own chunk (file) and row position
    ("data_l", data_array_type),
    ("data_x", data_array_type),
    ("pos_l", types.int64),
    ("pos_x", types.int64),
    ("file_l", types.int64),
    ("file_x", types.int64),
    ("nfiles", types.int64),
    # accounting
    ("sv_l", state_array_type),
    ("sv_x", state_array_type),
    ("trades", event_array_type),
    ("ntrades", types.int64),
    ("feed_lat", types.int64[::1]),
    ("has_feed_lat", types.boolean),
    ("ord_lat", types.int64[::1]),
    ("has_ord_lat", types.boolean),
    ("scratch", order_array_type),  # two order rows for building requests without allocating; row 1 stays zero
    # perpetual-futures extras (kernels/perp.py): latency per request type, mark price, funding
    ("lat_new", types.int64[:, ::1]),
    ("lat_cxl", types.int64[:, ::1]),
    ("lat_mod", types.int64[:, ::1]),
    ("lat_lx", types.int64[::1]),
    ("perp_f", types.float64[::1]),
    ("perp_i", types.int64[::1]),
]
asset_state_type = AssetStateType(asset_fields)


class AssetState(structref.StructRefProxy):
    """Opaque Python handle on one asset's engine state (only passed back into kernels)."""


structref.define_boxing(AssetStateType, AssetState)

engine_fields = [
    ("assets", types.ListType(asset_state_type)),
    ("cur_ts", types.int64),
    ("slots", types.int64[::1]),  # next timestamp per (asset, LocalData/LocalOrder/ExchData/ExchOrder)
    ("key", types.int64),  # registry key of the Python-side data feed (lazy file loading)
    ("num_assets", types.int64),
    ("error", types.int64),  # last data error code (100) reported by the loader
    ("entry", types.int64),  # address of the C entry point (kernels.entry), filled at build
    ("aptr", types.int64[::1]),  # address of each AssetState (owned by `assets`)
    ("closed", types.boolean),  # close() was called: time-advancing and order operations return CLOSED
    # no event of any processor or order bus before this time (set when the loop stops with nothing due, else
    # I64_MIN): until then an elapse only moves cur_ts, which the bot's elapse does without calling the engine
    ("quiet_until", types.int64),
]
engine_type = EngineType(engine_fields)


class Engine(structref.StructRefProxy):
    """Opaque Python handle on an engine as built by `new_engine`; the bot re-boxes it as its salted view type.

    Registered here, next to the type, so the boxing code numba caches with `new_engine` never depends on which
    module a process happened to import first."""


structref.define_boxing(EngineType, Engine)


# The configuration of one asset as it crosses from the Python API (backtest/bot.py, live/bot.py) into the engine:
# one named record, read field by field in `new_asset_state`.
asset_config_dtype = np.dtype([
    ("tick_size", np.float64),
    ("lot_size", np.float64),
    ("contract_size", np.float64),
    ("maker_fee", np.float64),
    ("taker_fee", np.float64),
    ("queue_n", np.float64),  # exponent of the power queue models
    ("asset_type", np.int64),  # codes of kernels/models.py (docs/architecture.md "Model codes")
    ("fee_model", np.int64),
    ("queue_model", np.int64),
    ("queue_fn", np.int64),  # address of a custom queue model's C callback (0: none)
    ("exchange_model", np.int64),
    ("latency_model", np.int64),
    ("entry_latency", np.int64),  # constant latency model, ns
    ("response_latency", np.int64),
    ("reference_compatible", np.bool_),
    ("record_trades", np.bool_),
    ("funding", np.bool_),  # settle perpetual funding (kernels/perp.py); off as in hftbacktest 2.x
])


def asset_config(**fields) -> np.ndarray:
    """A one-element `asset_config_dtype` array: the named fields given, every other field 0 / False."""
    cfg = np.zeros(1, asset_config_dtype)
    for name, value in fields.items():
        cfg[name] = value  # an unknown name raises ValueError/KeyError here, never reaches the kernel
    return cfg


@njit(cache=True, error_model="numpy")
def new_asset_state(cfg_array, lat_tab, depth_l, depth_x, data_l, nfiles):
    """An asset's engine state from its configuration (`cfg_array`: one `asset_config_dtype` record)."""
    cfg = cfg_array[0]
    s = structref.new(asset_state_type)
    s.tick = cfg.tick_size
    s.lot = cfg.lot_size
    s.cs = cfg.contract_size
    s.maker_fee = cfg.maker_fee
    s.taker_fee = cfg.taker_fee
    s.queue_n = cfg.queue_n
    s.asset_type = cfg.asset_type
    s.fee_model = cfg.fee_model
    s.queue_model = cfg.queue_model
    s.queue_fn = cfg.queue_fn
    s.exch_model = cfg.exchange_model
    s.lat_model = cfg.latency_model
    s.lat_entry = cfg.entry_latency
    s.lat_resp = cfg.response_latency
    s.compat = cfg.reference_compatible
    s.record_trades = cfg.record_trades
    s.lat_tab = lat_tab
    s.lat_ce = 0
    s.lat_cr = 0
    s.depth_l = depth_l
    s.depth_x = depth_x
    s.ord_l = new_table(64)
    s.ord_x = new_table(64)
    s.to_exch = new_bus(64)
    s.to_local = new_bus(64)
    s.data_l = data_l
    s.data_x = data_l
    s.pos_l = 0
    s.pos_x = 0
    s.file_l = 0
    s.file_x = 0
    s.nfiles = nfiles
    s.sv_l = np.zeros(1, state_values_dtype)
    s.sv_x = np.zeros(1, state_values_dtype)
    s.trades = np.zeros(64, event_dtype)
    s.ntrades = 0
    s.feed_lat = np.zeros(2, np.int64)
    s.has_feed_lat = False
    s.ord_lat = np.zeros(3, np.int64)
    s.has_ord_lat = False
    s.scratch = np.zeros(2, order_dtype)
    s.lat_new = np.zeros((0, 4), np.int64)
    s.lat_cxl = np.zeros((0, 4), np.int64)
    s.lat_mod = np.zeros((0, 4), np.int64)
    s.lat_lx = np.zeros(7, np.int64)
    s.perp_f = np.array([np.nan, np.nan, 0.0, 0.0])
    s.perp_i = np.zeros(3, np.int64)
    s.perp_i[0] = 1 if cfg.funding else 0
    return s


@njit(cache=True, error_model="numpy")
def new_asset_list():
    return List.empty_list(asset_state_type)


@njit(cache=True, error_model="numpy")
def new_engine(assets, key, entry):
    e = structref.new(engine_type)
    e.assets = assets
    e.cur_ts = 9223372036854775807
    e.num_assets = len(assets)
    e.slots = np.full(4 * len(assets), 9223372036854775807, np.int64)
    e.key = key
    e.error = 0
    e.entry = entry
    e.aptr = np.zeros(len(assets), np.int64)
    e.closed = False
    e.quiet_until = -9223372036854775808
    for a in range(len(assets)):
        e.aptr[a] = struct_ptr(assets[a])
        assets[a].ord_l.entry = entry
    return e


@borrowed(inline="always")
def asset(e, a):
    """Asset `a` of engine `e` as a borrowed StructRef (a typed-List getitem would take a reference)."""
    return struct_from_ptr(e.aptr[a], asset_state_type)
