"""Local-timestamp correction, exchange/local event-order merge and order validation (same results as 2.4.4)."""
from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

from ..types import EXCH_EVENT, LOCAL_EVENT, event_dtype


@njit(cache=True)
def _min_latency(exch_ts, local_ts):
    min_lat = np.iinfo(np.int64).max
    for i in range(len(exch_ts)):
        lat = local_ts[i] - exch_ts[i]
        if lat < min_lat:
            min_lat = lat
    return min_lat


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


@njit(cache=True)
def _merge_orders(ev, exch, local, px, qty, oid, ival, fval, ex_idx, lo_idx,
                  o_ev, o_exch, o_local, o_px, o_qty, o_oid, o_ival, o_fval):
    n = len(ev)
    i = 0
    j = 0
    k = 0
    while True:
        has_x = i < n
        has_l = j < n
        if not has_x and not has_l:
            break
        xi = ex_idx[i] if has_x else 0
        li = lo_idx[j] if has_l else 0
        if has_x and has_l and exch[xi] == exch[li] and local[xi] == local[li]:
            assert ev[xi] == ev[li]
            assert px[xi] == px[li] or (np.isnan(px[xi]) and np.isnan(px[li]))
            assert qty[xi] == qty[li]
            src = xi
            flag = np.uint64(EXCH_EVENT | LOCAL_EVENT)
            i += 1
            j += 1
        elif has_x and (not has_l or exch[xi] < exch[li]
                        or (exch[xi] == exch[li] and local[xi] < local[li])):
            src = xi
            flag = np.uint64(EXCH_EVENT)
            i += 1
        else:
            src = li
            flag = np.uint64(LOCAL_EVENT)
            j += 1
        o_ev[k] = ev[src] | flag
        o_exch[k] = exch[src]
        o_local[k] = local[src]
        o_px[k] = px[src]
        o_qty[k] = qty[src]
        o_oid[k] = oid[src]
        o_ival[k] = ival[src]
        o_fval[k] = fval[src]
        k += 1
    return k


def _columns(a):
    return (a["ev"], a["exch_ts"], a["local_ts"], a["px"], a["qty"], a["order_id"], a["ival"], a["fval"])


def correct_event_order(data: NDArray, sorted_exch_index: NDArray, sorted_local_index: NDArray) -> NDArray:
    """Merge the exchange-time and local-time orders into one stream with EXCH/LOCAL flags.

    Rows whose position agrees in both orders are written once with both flags; rows that are out of order
    are written twice (an EXCH-only and a LOCAL-only copy). Pass stable (mergesort) argsorts.
    """
    n = len(data)
    out = np.zeros(2 * n, event_dtype)
    if n == 0:
        return out
    k = _merge_orders(*_columns(data), np.ascontiguousarray(sorted_exch_index, dtype=np.int64),
                      np.ascontiguousarray(sorted_local_index, dtype=np.int64), *_columns(out))
    return out[:k]


def validate_event_order(data: NDArray) -> None:
    """Raise ValueError if EXCH rows are not sorted by exch_ts or LOCAL rows by local_ts."""
    ev = data["ev"]
    exch = data["exch_ts"][(ev & EXCH_EVENT) == EXCH_EVENT]
    if np.any(exch[1:] < exch[:-1]):
        raise ValueError("exchange events are out of order.")
    local = data["local_ts"][(ev & LOCAL_EVENT) == LOCAL_EVENT]
    if np.any(local[1:] < local[:-1]):
        raise ValueError("local events are out of order.")
