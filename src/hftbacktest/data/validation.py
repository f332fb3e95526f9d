"""Local-timestamp correction, exchange/local event-order merge and order validation (same results as 2.4.4)."""
from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

from ..types import EXCH_EVENT, LOCAL_EVENT, event_dtype
from ._spool import merge_flat


@njit(cache=True)
def _min_latency(exch_ts, local_ts):
    min_lat = np.iinfo(np.int64).max
    for i in range(len(exch_ts)):
        lat = local_ts[i] - exch_ts[i]
        if lat < min_lat:
            min_lat = lat
    return min_lat


@njit(cache=True)
def _is_sorted(x):
    for i in range(1, len(x)):
        if x[i] < x[i - 1]:
            return False
    return True


@njit(cache=True)
def _shift_exact(local_ts, offset):
    for i in range(len(local_ts)):
        local_ts[i] += offset


@njit(cache=True)
def _shift_float(local_ts, offset):
    # numba semantics of `int64 + float64` stored back into int64: add in float64, truncate toward zero.
    for i in range(len(local_ts)):
        local_ts[i] = np.int64(np.float64(local_ts[i]) + offset)


def _is_float(x) -> bool:
    return isinstance(x, (float, np.floating))


def shift_local_timestamp(data: NDArray, min_latency: int, base_latency: float) -> None:
    """Apply the correction for a known minimum latency (used by the streaming converter)."""
    if min_latency >= 0:
        return
    if _is_float(base_latency):
        _shift_float(data["local_ts"], float(-min_latency) + float(base_latency))
    else:
        _shift_exact(data["local_ts"], np.int64(-min_latency + int(base_latency)))


def correct_local_timestamp(data: NDArray, base_latency: float) -> NDArray:
    """Shift every `local_ts` so the smallest feed latency becomes `base_latency` (only if some latency < 0).

    An int `base_latency` shifts exactly; a float one rounds through float64 like the reference does.
    Modifies `data` in place and returns it.
    """
    if len(data) == 0:
        return data
    min_lat = int(_min_latency(data["exch_ts"], data["local_ts"]))
    if min_lat < 0:
        print("local_timestamp is ahead of exch_timestamp by", -min_lat)
        shift_local_timestamp(data, min_lat, base_latency)
    return data


def _as_matrix(a: NDArray) -> NDArray:
    """An event_dtype array as an (n, 8) uint64 matrix over the same bytes (copied only if not contiguous)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint64).reshape(len(a), 8)


def correct_event_order(data: NDArray, sorted_exch_index: NDArray, sorted_local_index: NDArray) -> NDArray:
    """Merge the exchange-time and local-time orders into one stream with EXCH/LOCAL flags.

    Rows whose position agrees in both orders are written once with both flags; rows that are out of order
    are written twice (an EXCH-only and a LOCAL-only copy). Pass stable (mergesort) argsorts.
    """
    n = len(data)
    if n == 0:
        return np.zeros(0, event_dtype)
    if data.dtype != event_dtype:
        raise TypeError(f"expected an array of event_dtype, got {data.dtype}")
    m = _as_matrix(data)
    out = np.zeros((2 * n, 8), np.uint64)
    lo = np.iinfo(np.int64).min
    state = np.array([0, 0, lo, lo, 1], np.int64)  # order-check slots of merge_flat; validation is separate here
    k = merge_flat(m, np.ascontiguousarray(sorted_exch_index, dtype=np.int64),
                   np.ascontiguousarray(sorted_local_index, dtype=np.int64), out, state, 0)
    return out[:k].reshape(-1).view(event_dtype)


@njit(cache=True)
def _first_unordered(ev, ts, flag):
    """Index of the first row with `flag` whose ts is below the previous flagged row's, or -1."""
    last = np.iinfo(np.int64).min
    for i in range(len(ev)):
        if ev[i] & flag == flag:
            if ts[i] < last:
                return i
            last = ts[i]
    return -1


def validate_event_order(data: NDArray) -> None:
    """Raise ValueError if EXCH rows are not sorted by exch_ts or LOCAL rows by local_ts."""
    if _first_unordered(data["ev"], data["exch_ts"], np.uint64(EXCH_EVENT)) >= 0:
        raise ValueError("exchange events are out of order.")
    if _first_unordered(data["ev"], data["local_ts"], np.uint64(LOCAL_EVENT)) >= 0:
        raise ValueError("local events are out of order.")
