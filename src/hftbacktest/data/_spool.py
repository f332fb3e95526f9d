"""Bounded-memory storage and ordering for the converter.

`Spool` is an append-only table of 8-word rows (one `event_dtype` record or one message entry per row) that
lives in memory up to `mem_rows` rows and beyond that in an unlinked temporary file, read back through a
memory map whose pages are dropped (`release`) after each block, so resident memory stays bounded whatever the
input size. `event_order` is the reference's exchange/local event-order merge done as an external sort: the
rows are sorted in blocks ("runs"), and a k-way merge of the runs feeds the merge, writing the output in chunks.
"""
from __future__ import annotations

import mmap
import tempfile

import numpy as np
from numba import njit

from ..types import EXCH_EVENT, LOCAL_EVENT

BLOCK_ROWS = 1 << 21  # rows held in memory per table (128 MB); beyond that tables spill to disk


def release(a) -> None:
    """Drop the resident pages of a file-backed array (they are re-read on the next access); no-op in memory."""
    while a is not None and not isinstance(a, np.memmap):
        a = a.base
    if a is not None and getattr(a, "_mmap", None) is not None:
        a._mmap.madvise(mmap.MADV_DONTNEED)


class Spool:
    """Append-only (n, 8) table of 8-byte words, in memory up to `mem_rows` rows, then in a temporary file."""

    def __init__(self, mem_rows: int, dtype=np.uint64, initial: int = 1 << 16, tmp_dir: str | None = None):
        self.mem_rows = max(int(mem_rows), 1)
        self.dtype = np.dtype(dtype)
        self.buf = np.empty((min(initial, self.mem_rows), 8), self.dtype)
        self.n = 0  # rows in buf
        self.base = 0  # rows already in the file
        self.file = None
        self.tmp_dir = tmp_dir

    @property
    def total(self) -> int:
        return self.base + self.n

    def room(self, rows: int) -> None:
        """Make room in `buf` for `rows` more rows (growing it up to mem_rows, then spilling it to the file)."""
        if self.n + rows <= len(self.buf):
            return
        if self.file is None and self.n + rows <= self.mem_rows:
            new = np.empty((min(max(2 * len(self.buf), self.n + rows), self.mem_rows), 8), self.dtype)
            new[: self.n] = self.buf[: self.n]
            self.buf = new
            return
        self.spill()
        if rows > len(self.buf):
            self.buf = np.empty((max(rows, self.mem_rows), 8), self.dtype)

    def spill(self) -> None:
        if self.file is None:
            self.file = tempfile.TemporaryFile(dir=self.tmp_dir)
        self.file.write(memoryview(self.buf[: self.n]).cast("B"))
        self.base += self.n
        self.n = 0

    def append(self, rows: np.ndarray) -> None:
        """Append rows given as an (m, 8) array of the same width (or a record array of 64-byte records)."""
        rows = np.ascontiguousarray(rows).view(self.dtype).reshape(-1, 8)
        self.room(len(rows))
        self.buf[self.n: self.n + len(rows)] = rows
        self.n += len(rows)

    def finish(self) -> np.ndarray:
        """All rows as one (n, 8) array: the in-memory buffer, or a writable map of the file."""
        if self.file is None:
            return self.buf[: self.n]
        if self.n:
            self.spill()
        self.file.flush()
        self.buf = np.empty((0, 8), self.dtype)  # frees the memory buffer
        if self.base == 0:
            return np.zeros((0, 8), self.dtype)
        return np.memmap(self.file, self.dtype, "r+", shape=(self.base, 8))


def blocks(n: int, size: int = 0):
    """(start, stop) ranges of at most `size` (default BLOCK_ROWS) covering 0..n."""
    size = size or BLOCK_ROWS
    return [(a, min(a + size, n)) for a in range(0, n, size)]


# --- scans over the rows ---------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def min_latency(di, a, b, cur):
    """min(cur, local_ts - exch_ts) over rows a:b of an (n, 8) int64 view."""
    for i in range(a, b):
        lat = di[i, 2] - di[i, 1]
        if lat < cur:
            cur = lat
    return cur


@njit(cache=True, nogil=True)
def shift_float(di, a, b, offset):
    # numba semantics of `int64 + float64` stored back into int64: add in float64, truncate toward zero.
    for i in range(a, b):
        di[i, 2] = np.int64(np.float64(di[i, 2]) + offset)


@njit(cache=True, nogil=True)
def sorted_from(di, a, b, col, last):
    """Whether column `col` of rows a:b is non-decreasing and starts at >= last."""
    for i in range(a, b):
        if di[i, col] < last:
            return False
        last = di[i, col]
    return True


@njit(cache=True, nogil=True)
def gather(src, a, perm, dst, d0):
    for j in range(len(perm)):
        r = a + perm[j]
        for c in range(8):
            dst[d0 + j, c] = src[r, c]


def sorted_runs(rows: np.ndarray, col: int, tmp_dir, mem_rows: int):
    """Rows stably sorted by column `col` (1 exch_ts, 2 local_ts) within each block → (table, run bounds).

    Already sorted input is returned as is, as one run (no copy)."""
    di = rows.view(np.int64)
    n = len(rows)
    if _sorted_blockwise(rows, col):
        return rows, np.array([0, n], np.int64)
    # a run is one block; the output goes through a buffer of an eighth of that once it spills
    out = Spool(mem_rows if n <= mem_rows else mem_rows // 8, np.uint64, initial=min(n, mem_rows), tmp_dir=tmp_dir)
    bounds = [0]
    for a, b in blocks(n, mem_rows):
        perm = np.argsort(di[a:b, col], kind="stable")
        for c, d in blocks(b - a, out.mem_rows):
            out.room(d - c)
            gather(rows, a, perm[c:d], out.buf, out.n)
            out.n += d - c
        release(rows)
        bounds.append(b)
    return out.finish(), np.array(bounds, np.int64)


def _sorted_blockwise(rows, col) -> bool:
    di = rows.view(np.int64)
    last = np.iinfo(np.int64).min
    for a, b in blocks(len(rows)):
        ok = sorted_from(di, a, b, col, last)
        last = di[b - 1, col]
        release(rows)
        if not ok:
            return False
    return True


# --- k-way merge of sorted runs + the exchange/local event-order merge -----------------------------------

@njit(cache=True, nogil=True, inline="always")
def _before(di, cur, col, r1, r2):
    a = di[cur[r1], col]
    b = di[cur[r2], col]
    return a < b or (a == b and r1 < r2)  # ties: the earlier run (earlier in the file) first, so stable


@njit(cache=True, nogil=True, inline="always")
def _sift_down(heap, size, di, cur, col, i):
    while True:
        c = 2 * i + 1
        if c >= size:
            return
        if c + 1 < size and _before(di, cur, col, heap[c + 1], heap[c]):
            c += 1
        if not _before(di, cur, col, heap[c], heap[i]):
            return
        heap[i], heap[c] = heap[c], heap[i]
        i = c


@njit(cache=True, nogil=True)
def heap_init(heap, cur, end, di, col):
    """Heap of the non-empty runs; returns its size."""
    size = 0
    for r in range(len(cur)):
        if cur[r] < end[r]:
            heap[size] = r
            size += 1
    for i in range(size // 2 - 1, -1, -1):
        _sift_down(heap, size, di, cur, col, i)
    return size


@njit(cache=True, nogil=True, inline="always")
def _pop(heap, size, cur, end, di, col):
    r = heap[0]
    cur[r] += 1
    if cur[r] >= end[r]:
        size -= 1
        heap[0] = heap[size]
    if size > 0:
        _sift_down(heap, size, di, cur, col, 0)
    return size


@njit(cache=True, nogil=True)
def merge_event_order(xu, xcur, xend, xheap, lu, lcur, lend, lheap, state, out, k, shift):
    """Merge the exchange-sorted rows (runs of xu) and the local-sorted rows (runs of lu) into out[k:].

    Same rule as the reference's correct_event_order: a row at the head of both orders (equal exch_ts and
    local_ts) is written once with EXCH|LOCAL, otherwise the smaller head (by exch_ts, then local_ts) is written
    with only its own flag. state = [x heap size, l heap size, last EXCH exch_ts, last LOCAL local_ts, order ok].
    Stops when out is full; returns the new k.
    """
    xi64 = xu.view(np.int64)
    li64 = lu.view(np.int64)
    xf = xu.view(np.float64)
    lf = lu.view(np.float64)
    sx = state[0]
    sl = state[1]
    both = np.uint64(EXCH_EVENT | LOCAL_EVENT)
    exch_only = np.uint64(EXCH_EVENT)
    local_only = np.uint64(LOCAL_EVENT)
    cap = out.shape[0]
    last_x = state[2]
    last_l = state[3]
    ok = state[4]
    while (sx > 0 or sl > 0) and k < cap:
        xi = xcur[xheap[0]] if sx > 0 else -1
        li = lcur[lheap[0]] if sl > 0 else -1
        if xi >= 0 and li >= 0 and xi64[xi, 1] == li64[li, 1] and xi64[xi, 2] == li64[li, 2]:
            assert xu[xi, 0] == lu[li, 0]
            assert xf[xi, 3] == lf[li, 3] or (np.isnan(xf[xi, 3]) and np.isnan(lf[li, 3]))
            assert xf[xi, 4] == lf[li, 4]
            use_x = True
            flag = both
            sx = _pop(xheap, sx, xcur, xend, xi64, 1)
            sl = _pop(lheap, sl, lcur, lend, li64, 2)
        elif xi >= 0 and (li < 0 or xi64[xi, 1] < li64[li, 1]
                          or (xi64[xi, 1] == li64[li, 1] and xi64[xi, 2] < li64[li, 2])):
            use_x = True
            flag = exch_only
            sx = _pop(xheap, sx, xcur, xend, xi64, 1)
        else:
            use_x = False
            flag = local_only
            sl = _pop(lheap, sl, lcur, lend, li64, 2)
        if use_x:
            for c in range(8):
                out[k, c] = xu[xi, c]
        else:
            for c in range(8):
                out[k, c] = lu[li, c]
        out[k, 0] |= flag
        out[k, 2] = np.uint64(np.int64(out[k, 2]) + shift)
        if flag & exch_only:
            ts = np.int64(out[k, 1])
            if ts < last_x:
                ok = 0
            last_x = ts
        if flag & local_only:
            ts = np.int64(out[k, 2])
            if ts < last_l:
                ok = 0
            last_l = ts
        k += 1
    state[2] = last_x
    state[3] = last_l
    state[4] = ok
    state[0] = sx
    state[1] = sl
    return k


@njit(cache=True, nogil=True)
def merge_flat(u, xidx, lidx, out, state, shift):
    """merge_event_order for in-memory rows with one run per side: xidx/lidx are the sorting permutations
    (empty = already sorted), so the loop is a plain two-pointer merge."""
    i64 = u.view(np.int64)
    f64 = u.view(np.float64)
    n = u.shape[0]
    both = np.uint64(EXCH_EVENT | LOCAL_EVENT)
    exch_only = np.uint64(EXCH_EVENT)
    local_only = np.uint64(LOCAL_EVENT)
    has_xidx = len(xidx) > 0
    has_lidx = len(lidx) > 0
    i = 0
    j = 0
    k = 0
    last_x = state[2]
    last_l = state[3]
    ok = state[4]
    while i < n or j < n:
        xi = (xidx[i] if has_xidx else i) if i < n else -1
        li = (lidx[j] if has_lidx else j) if j < n else -1
        if xi >= 0 and li >= 0 and i64[xi, 1] == i64[li, 1] and i64[xi, 2] == i64[li, 2]:
            assert u[xi, 0] == u[li, 0]
            assert f64[xi, 3] == f64[li, 3] or (np.isnan(f64[xi, 3]) and np.isnan(f64[li, 3]))
            assert f64[xi, 4] == f64[li, 4]
            src = xi
            flag = both
            i += 1
            j += 1
        elif xi >= 0 and (li < 0 or i64[xi, 1] < i64[li, 1]
                          or (i64[xi, 1] == i64[li, 1] and i64[xi, 2] < i64[li, 2])):
            src = xi
            flag = exch_only
            i += 1
        else:
            src = li
            flag = local_only
            j += 1
        out[k, 0] = u[src, 0] | flag
        for c in range(1, 8):
            out[k, c] = u[src, c]
        out[k, 2] = np.uint64(i64[src, 2] + shift)
        if flag & exch_only:
            if i64[src, 1] < last_x:
                ok = 0
            last_x = i64[src, 1]
        if flag & local_only:
            if i64[src, 2] < last_l:
                ok = 0
            last_l = i64[src, 2]
        k += 1
    state[0] = 0
    state[1] = 0
    state[2] = last_x
    state[3] = last_l
    state[4] = ok
    return k


def event_order(rows: np.ndarray, mem_rows: int, tmp_dir=None, shift: int = 0) -> np.ndarray:
    """The reference's correct_event_order + validate_event_order over (n, 8) rows → (m, 8) rows, adding
    `shift` to every output local_ts (an exact shift keeps every comparison of the merge unchanged).

    In memory when 2n rows fit in `mem_rows`, else through sorted runs on disk and output written in chunks
    to a temporary file (returned as a memory map)."""
    n = len(rows)
    lo = np.iinfo(np.int64).min
    state = np.array([0, 0, lo, lo, 1], np.int64)
    if 2 * n <= mem_rows:  # one run per side: sorting permutations instead of sorted copies
        di = rows.view(np.int64)
        xidx, lidx = (np.zeros(0, np.int64) if sorted_from(di, 0, n, col, lo) else np.argsort(di[:, col], kind="stable")
                      for col in (1, 2))
        out = np.empty((2 * n, 8), np.uint64)
        out = out[: merge_flat(rows, xidx, lidx, out, state, shift)]
    else:
        xs, xb = sorted_runs(rows, 1, tmp_dir, mem_rows)
        ls, lb = sorted_runs(rows, 2, tmp_dir, mem_rows)
        xcur, xend, lcur, lend = xb[:-1].copy(), xb[1:].copy(), lb[:-1].copy(), lb[1:].copy()
        xheap, lheap = np.empty(len(xcur), np.int64), np.empty(len(lcur), np.int64)
        state[0] = heap_init(xheap, xcur, xend, xs.view(np.int64), 1)
        state[1] = heap_init(lheap, lcur, lend, ls.view(np.int64), 2)
        sink = Spool(mem_rows // 8, np.uint64, initial=mem_rows // 8, tmp_dir=tmp_dir)
        while state[0] > 0 or state[1] > 0:
            sink.room(1)
            sink.n = merge_event_order(xs, xcur, xend, xheap, ls, lcur, lend, lheap, state, sink.buf, sink.n, shift)
            for a in (xs, ls, rows):
                release(a)
        out = sink.finish()
    if state[4] == 0:
        raise ValueError("events are out of order after the event-order merge.")
    return out
