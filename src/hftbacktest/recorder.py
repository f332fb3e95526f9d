"""Recorder: samples each asset's mid price and local state from inside `@njit` strategy code.

    recorder = Recorder(num_assets, record_size)
    run(hbt, recorder.recorder)          # inside: recorder.record(hbt)
    recorder.to_npz("run.npz")           # keys "0", "1", ... — what hftbacktest.stats and `hftbacktest report` read

The in-numba object is a StructRef (cacheable, unlike a jitclass); `record` is generic over the bot type, so the
same recorder serves the backtest bots and the live bot.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
from numba import njit
from numba.core import types
from numba.experimental import structref
from numba.extending import overload, overload_method

from . import _atomic
from ._cache_salt import SALT
from .errors import ConfigError
from .backtest.views import BotType
from .types import record_dtype


@structref.register
class RecorderStateType(types.StructRef):
    def __init__(self, fields):
        super().__init__(fields)
        self.name = f"{self.name}.{SALT}"  # a changed package recompiles users' cached code (see _cache_salt)

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class RecorderState(structref.StructRefProxy):
    """What `Recorder.recorder` returns: pass it to `@njit` code and call `.record(hbt)` there."""

    @property
    def records(self) -> np.ndarray:
        """The whole buffer as record_dtype, shape (capacity, num_assets); only the first `i` rows are filled."""
        return _get_words(self).view(record_dtype)[:, :, 0]

    @property
    def i(self) -> int:
        """Number of rows recorded so far."""
        return _get_count(self)

    def record(self, hbt) -> None:
        """Plain-Python twin of the compiled `record` (for bots used outside `@njit`)."""
        _record(self, hbt)


# Rows are stored as 8 machine words per asset (record_dtype is eight 8-byte fields) and written through an int64
# and a float64 view of the same memory: no dependence on how numba types record attributes.
_WORD = {name: record_dtype.fields[name][1] // 8 for name in record_dtype.names}
_TS, _PX, _POS, _BAL = _WORD["timestamp"], _WORD["price"], _WORD["position"], _WORD["balance"]
_FEE, _NT, _VOL, _VAL = _WORD["fee"], _WORD["num_trades"], _WORD["trading_volume"], _WORD["trading_value"]
_WORDS = record_dtype.itemsize // 8

_STATE_TYPE = RecorderStateType(fields=[
    ("words", types.Array(types.int64, 3, "C")),
    ("floats", types.Array(types.float64, 3, "C")),
    ("i", types.int64),
    ("grow", types.boolean),
    ("funding", types.Array(types.float64, 2, "C")),  # cumulative funding per row and asset (kept apart: record_dtype is 2.x's)
])
structref.define_boxing(RecorderStateType, RecorderState)


@njit(cache=True)
def _new_state(words, grow):
    st = structref.new(_STATE_TYPE)
    st.words = words
    st.floats = words.view(np.float64)
    st.i = 0
    st.grow = grow
    st.funding = np.zeros((words.shape[0], words.shape[1]))
    return st


@njit(cache=True)
def _get_words(st):
    return st.words


@njit(cache=True)
def _get_count(st):
    return st.i


@njit(cache=True)
def _get_funding(st):
    return st.funding


@njit(cache=True)
def _grow(st):
    bigger = np.zeros((2 * st.words.shape[0], st.words.shape[1], st.words.shape[2]), dtype=np.int64)
    bigger[: st.words.shape[0]] = st.words
    st.words = bigger
    st.floats = bigger.view(np.float64)
    funding = np.zeros((bigger.shape[0], bigger.shape[1]))
    funding[: st.funding.shape[0]] = st.funding
    st.funding = funding


def _funding_of(hbt, asset_no):
    """Cumulative funding of a bot's asset (`hbt.funding`: backtest, or a bot type marked `has_funding`, the live
    bot); 0 for other bots."""


@overload(_funding_of)
def _funding_of_impl(hbt, asset_no):
    if isinstance(hbt, BotType) or getattr(hbt, "has_funding", False):
        return lambda hbt, asset_no: hbt.funding(asset_no)
    return lambda hbt, asset_no: 0.0


@overload_method(RecorderStateType, "record")
def _record_impl(st, hbt):
    def impl(st, hbt):
        if st.i == st.words.shape[0]:
            if not st.grow:
                raise IndexError(
                    "Recorder is full: create it with a larger record_size, or Recorder(..., grow=True)"
                )
            _grow(st)
        if hbt.num_assets > st.words.shape[1]:
            raise IndexError("Recorder has fewer assets than the bot: create it with Recorder(hbt.num_assets, ...)")
        i = st.i
        ints = st.words
        floats = st.floats
        timestamp = hbt.current_timestamp
        for asset_no in range(hbt.num_assets):
            depth = hbt.depth(asset_no)
            sv = hbt.state_values(asset_no)
            ints[i, asset_no, _TS] = timestamp
            floats[i, asset_no, _PX] = (depth.best_bid + depth.best_ask) / 2.0
            floats[i, asset_no, _POS] = sv.position
            floats[i, asset_no, _BAL] = sv.balance
            floats[i, asset_no, _FEE] = sv.fee
            ints[i, asset_no, _NT] = sv.num_trades
            floats[i, asset_no, _VOL] = sv.trading_volume
            floats[i, asset_no, _VAL] = sv.trading_value
            st.funding[i, asset_no] = _funding_of(hbt, asset_no)
        st.i = i + 1

    return impl


@njit  # not cached: the bot may be a jitclass (e.g. user mocks), which numba cannot pickle into a cache
def _record(st, hbt):
    st.record(hbt)


class Recorder:
    """Time series of every asset's mid price and state values (record_dtype), one row per `record(hbt)` call.

    Args:
        num_assets: number of assets of the bot.
        record_size: capacity in rows. When it is exhausted, `record` raises IndexError before writing anything
            (the rows already recorded stay readable), unless `grow=True`, which doubles the buffer instead.
    """

    def __init__(self, num_assets: int, record_size: int, grow: bool = False):
        if int(num_assets) <= 0 or int(record_size) <= 0:
            raise ConfigError(f"Recorder needs num_assets > 0 and record_size > 0, got {num_assets}, {record_size}")
        words = np.zeros((int(record_size), int(num_assets), _WORDS), np.int64)
        state = _new_state(words, bool(grow))
        # boxed as this process's (salted) type: the cached constructor returns the type current when it was cached
        self._state = RecorderState._numba_box_(_STATE_TYPE, state._meminfo)

    @property
    def recorder(self) -> RecorderState:
        """The object to pass into `@njit` code, where `recorder.record(hbt)` appends one row."""
        return self._state

    @property
    def num_assets(self) -> int:
        return self._state.records.shape[1]

    def get(self, asset_no: int) -> np.ndarray:
        """Rows recorded so far for one asset (a view)."""
        if not 0 <= asset_no < self.num_assets:
            raise ConfigError(f"asset_no {asset_no} out of range: the recorder has {self.num_assets} asset(s)")
        return self._state.records[: self._state.i, asset_no]

    def funding(self, asset_no: int) -> np.ndarray:
        """Cumulative funding paid (`hbt.funding`) at each recorded row of one asset; zeros without funding."""
        if not 0 <= asset_no < self.num_assets:
            raise ConfigError(f"asset_no {asset_no} out of range: the recorder has {self.num_assets} asset(s)")
        return _get_funding(self._state)[: self._state.i, asset_no]

    def to_npz(
        self,
        file: str,
        config: Mapping[str, Any] | None = None,
        order_latency: Mapping[int, np.ndarray] | np.ndarray | None = None,
    ) -> None:
        """Saves the records with keys "0", "1", … (one per asset), like hftbacktest 2.x.

        Optional extras read by `hftbacktest report`: `config` (a JSON-serialisable description of the run, shown
        in the report) and `order_latency` (order_latency_dtype rows, per asset or for asset 0) for the latency
        histogram. An asset that paid or received funding also gets `funding_<n>` (cumulative funding per row).
        """
        records = self._state.records[: self._state.i]
        arrays: dict[str, np.ndarray] = {str(a): records[:, a] for a in range(records.shape[1])}
        for a in range(records.shape[1]):
            funding = self.funding(a)
            if np.any(funding != 0.0):
                arrays[f"funding_{a}"] = np.array(funding)
        if config is not None:
            arrays["config"] = np.array(json.dumps(config, default=str))
        if order_latency is not None:
            per_asset = order_latency if isinstance(order_latency, Mapping) else {0: order_latency}
            for asset_no, rows in per_asset.items():
                arrays[f"order_latency_{asset_no}"] = np.asarray(rows)
        _atomic.savez(file, **arrays)
