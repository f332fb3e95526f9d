"""Rust-compatible numeric helpers: the reference rounds half away from zero and casts with saturation."""
from __future__ import annotations

import numpy as np
from numba import njit

I64_MIN = -9223372036854775808
I64_MAX = 9223372036854775807


@njit(cache=True, error_model="numpy", inline="always")
def rha(x):
    """`x.round() as i64` in Rust: half away from zero, saturating, NaN -> 0."""
    if x != x:
        return np.int64(0)
    t = np.trunc(x)
    if abs(x - t) >= 0.5:
        t += 1.0 if x > 0 else -1.0
    if t >= 9.223372036854775807e18:
        return np.int64(I64_MAX)
    if t <= -9.223372036854775808e18:
        return np.int64(I64_MIN)
    return np.int64(t)


@njit(cache=True, error_model="numpy", inline="always")
def rmin(a, b):
    """Rust f64::min: a NaN argument is ignored."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a < b else b


@njit(cache=True, error_model="numpy", inline="always")
def rmax(a, b):
    if a != a:
        return b
    if b != b:
        return a
    return a if a > b else b


@njit(cache=True, error_model="numpy")
def resized(arr, n, start, stop):
    """A new zeroed array of length n holding arr[start:stop] at its front.

    An explicit loop on purpose: numba's slice-to-slice assignment drags in its shape-mismatch error path (string
    formatting) and costs seconds of compile time per dtype."""
    out = np.zeros(n, arr.dtype)
    for k in range(stop - start):
        out[k] = arr[start + k]
    return out
