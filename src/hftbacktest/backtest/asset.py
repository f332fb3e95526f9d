"""`BacktestAsset`: the reference's chainable builder, producing a frozen, validated `AssetConfig`."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..kernels import models as m
from ..kernels.perp import LANE_CODES
from ..types import CANCELED, NEW, REPLACED
from .reader import Source, check_source


@dataclass(frozen=True)
class AssetConfig:
    sources: tuple[Source, ...]
    snapshot: Source | None
    tick_size: float
    lot_size: float
    roi_lb: float
    roi_ub: float
    asset_type: int
    contract_size: float
    fee_model: int
    maker_fee: float
    taker_fee: float
    queue_model: int
    queue_n: float
    exchange_model: int
    latency_model: int
    entry_latency: int
    response_latency: int
    latency_table: np.ndarray = field(repr=False)
    last_trades_capacity: int
    latency_offset: int
    reference_compatible: bool
    queue_prob: Any = field(default=None, repr=False)  # compiled C callback of custom_prob_queue_model
    # latency tables per request type (NEW, CANCELED, REPLACED; empty: the shared table), from a `req` column
    latency_lanes: tuple = field(default=(), repr=False)
    funding: bool = False
    funding_lenient: bool = False  # data without funding-rate rows: a warning instead of a DataError


class BacktestAsset:
    """Chainable asset description (same methods and defaults as hftbacktest 2.x's `BacktestAsset`).

    `reference_compatible(True)` reproduces known reference bugs that change results: partial fills not applied
    to the local state (#316), an exact queue fill leaving a zombie order that later raises error 14 (#312),
    modify re-queueing with a stale leaves_qty (PR #317) and ROI `best_bid_qty/best_ask_qty` returning prices. The default is the corrected behaviour; both are identical for
    the no-partial-fill exchange without modify.
    """

    def __init__(self) -> None:
        self._sources: list[Source] = []
        self._snapshot: Source | None = None
        self._tick_size = 0.0
        self._lot_size = 0.0
        self._roi = (0.0, 0.0)
        self._roi_given = [False, False]  # the ROI book has no sensible default range: both bounds are required
        self._asset = (m.ASSET_LINEAR, 1.0)
        self._fee = (m.FEE_TRADING_VALUE, 0.0, 0.0)
        self._queue = (m.QUEUE_LOG2, 0.0)
        self._queue_prob: Any = None
        self._exchange = m.EXCH_NO_PARTIAL_FILL
        self._latency: tuple[int, int, int, Any, int] = (m.LATENCY_CONSTANT, 0, 0, None, 0)
        self._last_trades_capacity = 0
        self._latency_offset = 0
        self._compat = False
        self._funding = (False, False)

    # --- data -------------------------------------------------------------------------------------------------
    def data(self, data):
        items = data if isinstance(data, (list, tuple)) else [data]
        for item in items:
            if isinstance(item, np.ndarray):
                self.add_data(item)
            else:
                self.add_file(item)
        return self

    def add_file(self, path):
        self._sources.append(Source(path=str(path)))
        return self

    def add_data(self, data):
        self._sources.append(Source(array=data))
        return self

    def initial_snapshot(self, data):
        self._snapshot = Source(array=data) if isinstance(data, np.ndarray) else Source(path=str(data))
        return self

    # --- asset type and sizes ---------------------------------------------------------------------------------
    def linear_asset(self, contract_size):
        self._asset = (m.ASSET_LINEAR, float(contract_size))
        return self

    def inverse_asset(self, contract_size):
        self._asset = (m.ASSET_INVERSE, float(contract_size))
        return self

    def tick_size(self, tick_size):
        self._tick_size = float(tick_size)
        return self

    def lot_size(self, lot_size):
        self._lot_size = float(lot_size)
        return self

    def roi_lb(self, roi_lb):
        self._roi = (float(roi_lb), self._roi[1])
        self._roi_given[0] = True
        return self

    def roi_ub(self, roi_ub):
        self._roi = (self._roi[0], float(roi_ub))
        self._roi_given[1] = True
        return self

    # --- latency ----------------------------------------------------------------------------------------------
    def constant_order_latency(self, entry_latency, response_latency):
        self._latency = (m.LATENCY_CONSTANT, int(entry_latency), int(response_latency), None, 0)
        return self

    def constant_latency(self, entry_latency, response_latency):
        warnings.warn("constant_latency is deprecated; use constant_order_latency", DeprecationWarning, stacklevel=2)
        return self.constant_order_latency(entry_latency, response_latency)

    def intp_order_latency(self, data, latency_offset=0):
        self._latency = (m.LATENCY_INTP, 0, 0, data, int(latency_offset))
        return self

    def latency_offset(self, latency_offset):
        self._latency_offset = int(latency_offset)
        return self

    # --- queue models -----------------------------------------------------------------------------------------
    def risk_adverse_queue_model(self):
        self._queue = (m.QUEUE_RISK_ADVERSE, 0.0)
        return self

    def power_prob_queue_model(self, n):
        self._queue = (m.QUEUE_POWER, float(n))
        return self

    def power_prob_queue_model2(self, n):
        self._queue = (m.QUEUE_POWER2, float(n))
        return self

    def power_prob_queue_model3(self, n):
        self._queue = (m.QUEUE_POWER3, float(n))
        return self

    def log_prob_queue_model(self):
        self._queue = (m.QUEUE_LOG, 0.0)
        return self

    def log_prob_queue_model2(self):
        self._queue = (m.QUEUE_LOG2, 0.0)
        return self

    def custom_prob_queue_model(self, prob):
        """Probabilistic queue model with your own `prob(front, back) -> float`: when a level shrinks, the share of
        the decrease assumed to happen behind the order (front/back = qty ahead of / behind it). `prob` is an
        `@njit` function, a plain function numba can compile, or a numba `cfunc` of `float64(float64, float64)`;
        the engine calls it through its C address, so the compiled engine is shared by every probability function
        (the reference offers this in Rust only)."""
        self._queue = (m.QUEUE_CUSTOM, 0.0)
        self._queue_prob = prob
        return self

    def l3_fifo_queue_model(self):
        self._queue = (m.QUEUE_L3_FIFO, 0.0)
        return self

    # --- exchange and fees ------------------------------------------------------------------------------------
    def no_partial_fill_exchange(self):
        self._exchange = m.EXCH_NO_PARTIAL_FILL
        return self

    def partial_fill_exchange(self):
        self._exchange = m.EXCH_PARTIAL_FILL
        return self

    def trading_value_fee_model(self, maker_fee, taker_fee):
        self._fee = (m.FEE_TRADING_VALUE, float(maker_fee), float(taker_fee))
        return self

    def trading_qty_fee_model(self, maker_fee, taker_fee):
        self._fee = (m.FEE_TRADING_QTY, float(maker_fee), float(taker_fee))
        return self

    def flat_per_trade_fee_model(self, maker_fee, taker_fee):
        self._fee = (m.FEE_FLAT_PER_TRADE, float(maker_fee), float(taker_fee))
        return self

    # --- misc -------------------------------------------------------------------------------------------------
    def last_trades_capacity(self, capacity):
        self._last_trades_capacity = int(capacity)
        return self

    def parallel_load(self, parallel_load):
        return self  # accepted for compatibility; files are loaded lazily on demand

    def reference_compatible(self, enabled=True):
        self._compat = bool(enabled)
        return self

    def funding(self, enabled=True, lenient=False):
        """Settle perpetual funding from the data's funding-rate (102) and mark-price (101) rows (off by
        default, as in hftbacktest 2.x). Data without funding-rate rows (converter option `m`) is a DataError
        at build, or a warning naming the file with `lenient=True`."""
        self._funding = (bool(enabled), bool(lenient))
        return self

    # --- build ------------------------------------------------------------------------------------------------
    def build(self, asset_no: int = 0, roi: bool = False) -> AssetConfig:
        where = f"asset {asset_no}"
        for name, value in (("tick_size", self._tick_size), ("lot_size", self._lot_size)):
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"{where}: {name} must be > 0 (got {value}); call .{name}(...)")
        if not self._sources:
            raise ConfigError(f"{where}: no data; call .data([...]) with event files or arrays")
        if roi:
            lb, ub = self._roi
            missing = [name for name, given in zip(("roi_lb", "roi_ub"), self._roi_given) if not given]
            if missing:
                raise ConfigError(f"{where}: ROIVectorMarketDepthBacktest needs the price range it tracks: call "
                                  + " and ".join(f".{name}(...)" for name in missing))
            if not (np.isfinite(lb) and np.isfinite(ub)) or ub <= lb:
                raise ConfigError(f"{where}: roi_ub must be > roi_lb (got roi_lb={lb}, roi_ub={ub})")
            if (ub - lb) / self._tick_size > 1e8:
                raise ConfigError(f"{where}: ROI [{lb}, {ub}] spans more than 1e8 ticks")
        if self._queue[0] == m.QUEUE_L3_FIFO:
            raise ConfigError(f"{where}: l3_fifo_queue_model is not supported by this engine yet")
        if self._asset[1] <= 0 or not np.isfinite(self._asset[1]):
            raise ConfigError(f"{where}: contract_size must be > 0 (got {self._asset[1]})")
        for name, value in (("maker_fee", self._fee[1]), ("taker_fee", self._fee[2]), ("queue model n", self._queue[1])):
            if not np.isfinite(value):
                raise ConfigError(f"{where}: {name} must be a finite number (got {value})")
        if self._queue[0] in (m.QUEUE_POWER, m.QUEUE_POWER2, m.QUEUE_POWER3) and self._queue[1] <= 0:
            raise ConfigError(f"{where}: the power queue model needs n > 0 (got {self._queue[1]})")
        if self._latency[0] == m.LATENCY_CONSTANT and min(self._latency[1], self._latency[2]) < 0:
            raise ConfigError(f"{where}: constant_order_latency needs latencies >= 0 "
                              f"(got entry {self._latency[1]}, response {self._latency[2]})")
        for src in self._sources:
            try:
                check_source(src)
            except DataError as exc:
                raise DataError(f"{where}: {exc}") from None
        if self._snapshot is not None:
            try:
                check_source(self._snapshot)
            except DataError as exc:
                raise DataError(f"{where}: initial_snapshot: {exc}") from None
        queue_prob = _compile_queue_prob(self._queue_prob, where) if self._queue[0] == m.QUEUE_CUSTOM else None
        code, entry, resp, lat_data, lat_offset = self._latency
        table = np.zeros((1, 4), np.int64)
        lanes: tuple = ()
        if code == m.LATENCY_INTP:
            table = _load_latency(lat_data, lat_offset, where)
            if np.any(table[:, 3] != 0):
                lanes = tuple(np.ascontiguousarray(table[table[:, 3] == c]) for c in LANE_CODES)
        return AssetConfig(
            sources=tuple(self._sources),
            snapshot=self._snapshot,
            tick_size=self._tick_size,
            lot_size=self._lot_size,
            roi_lb=self._roi[0],
            roi_ub=self._roi[1],
            asset_type=self._asset[0],
            contract_size=self._asset[1],
            fee_model=self._fee[0],
            maker_fee=self._fee[1],
            taker_fee=self._fee[2],
            queue_model=self._queue[0],
            queue_n=self._queue[1],
            exchange_model=self._exchange,
            latency_model=code,
            entry_latency=entry,
            response_latency=resp,
            latency_table=table,
            last_trades_capacity=self._last_trades_capacity,
            latency_offset=self._latency_offset,
            reference_compatible=self._compat,
            queue_prob=queue_prob,
            latency_lanes=lanes,
            funding=self._funding[0],
            funding_lenient=self._funding[1],
        )


def _load_latency(data, offset: int, where: str) -> np.ndarray:
    """Recorded order latencies (req_ts, exch_ts, resp_ts, req) as one (n, 4) i64 table, offset applied
    (req: the request-type column when the rows have one, else 0)."""
    items = data if isinstance(data, (list, tuple)) else [data]
    parts = []
    for item in items:
        if isinstance(item, np.ndarray):
            arr, name = item, "<latency array>"
        else:
            name = str(item)
            try:
                with np.load(name) as npz:
                    arr = npz["data"]
            except FileNotFoundError:
                raise DataError(f"{where}: latency file not found: {name}") from None
            except (OSError, ValueError, KeyError) as exc:
                raise DataError(f"{where}: cannot read latency file {name} ({exc})") from None
        if arr.dtype.names is not None:
            missing = {"req_ts", "exch_ts", "resp_ts"} - set(arr.dtype.names)
            if missing:
                raise DataError(f"{where}: {name}: latency rows lack fields {sorted(missing)}")
            req = np.zeros(len(arr), np.int64)
            if "req" in arr.dtype.names:  # request type per row: 0 any, else the lane of NEW / CANCELED / REPLACED
                req = arr["req"].astype(np.int64)
                bad = np.flatnonzero(~np.isin(req, (0,) + LANE_CODES))
                if bad.size:
                    raise DataError(f"{where}: {name}: row {int(bad[0])}: unknown request type {int(req[bad[0]])} "
                                    f"in field req (expected 0 any, {NEW} NEW, {CANCELED} CANCELED, "
                                    f"{REPLACED} REPLACED)")
            tab = np.stack([arr["req_ts"], arr["exch_ts"], arr["resp_ts"], req], axis=1)
        elif arr.ndim == 2 and arr.shape[1] >= 3:
            tab = np.zeros((arr.shape[0], 4), np.int64)
            tab[:, :3] = arr[:, :3]
        else:
            raise DataError(f"{where}: {name}: expected order_latency_dtype rows (req_ts, exch_ts, resp_ts)")
        parts.append((name, tab.astype(np.int64)))
    table = np.ascontiguousarray(np.concatenate([tab for _, tab in parts])) if parts else np.zeros((0, 4), np.int64)
    if table.shape[0] == 0:
        raise DataError(f"{where}: intp_order_latency got no rows")
    back = np.flatnonzero(table[1:, 0] < table[:-1, 0])
    if back.size:  # the interpolation searches req_ts: unsorted rows would give silently wrong latencies
        row = int(back[0]) + 1
        starts = np.cumsum([0] + [len(tab) for _, tab in parts])
        part = int(np.searchsorted(starts, row, side="right")) - 1
        raise DataError(f"{where}: {parts[part][0]}: row {row - starts[part]}: req_ts goes backwards "
                        f"({table[row - 1, 0]} -> {table[row, 0]})")
    if offset:
        table[:, 1] += offset
        table[:, 2] += 2 * offset
    return table



def _compile_queue_prob(prob, where):
    """The C callback `double(double, double)` the engine calls for custom_prob_queue_model."""
    from numba import cfunc, types
    from numba.core.ccallback import CFunc

    sig = types.float64(types.float64, types.float64)
    if isinstance(prob, CFunc):
        if prob._sig != sig:
            raise ConfigError(f"{where}: custom_prob_queue_model needs a cfunc of {sig}, got {prob._sig}")
        return prob
    py_func = getattr(prob, "py_func", prob)
    if not callable(py_func):
        raise ConfigError(f"{where}: custom_prob_queue_model needs a function prob(front, back) -> float, "
                          f"got {type(prob).__name__}")
    try:
        return cfunc(sig, error_model="numpy")(py_func)
    except Exception as exc:  # numba's typing errors are long; keep the first lines
        msg = str(exc).strip().splitlines()[:6]
        raise ConfigError(f"{where}: custom_prob_queue_model: {getattr(py_func, '__name__', prob)!s} does not "
                          f"compile as float64(float64, float64): " + " ".join(msg)) from None


def check_latency_overlap(no: int, cfg: AssetConfig, first: np.ndarray, whole: bool) -> None:
    """intp_order_latency applies recorded latencies by request time and holds the nearest row's outside their
    span, so a file that does not overlap the data (recorded live on another day) gives every order one latency.
    Warn. `first`: the first data chunk; `whole`: it is all the data (else only its start is known)."""
    if cfg.latency_model != m.LATENCY_INTP or not len(first) or not len(cfg.latency_table):
        return
    local = first["local_ts"]
    local = local[local > 0]
    if not len(local):
        return
    lat_lo, lat_hi = int(cfg.latency_table[0, 0]), int(cfg.latency_table[-1, 0])  # sorted by req_ts at load
    data_lo, data_hi = int(local.min()), int(local.max()) if whole else None
    if data_lo > lat_hi or (data_hi is not None and data_hi < lat_lo):
        utc = lambda ns: np.datetime_as_string(np.datetime64(ns, "ns"), unit="s") + "Z"
        span = f"{utc(data_lo)} .. {utc(data_hi)}" if data_hi is not None else f"from {utc(data_lo)}"
        warnings.warn(f"asset {no}: the order latencies ({utc(lat_lo)} .. {utc(lat_hi)}) do not overlap the data "
                      f"({span}): every order gets the latency of the file's nearest end", UserWarning, stacklevel=4)
