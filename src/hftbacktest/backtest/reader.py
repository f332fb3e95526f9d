"""Event data sources: validated at build time, served to the kernels chunk by chunk.

* in-memory arrays are kept referenced (never copied unless `latency_offset` must rewrite them);
* `.npy` files are memory-mapped read-only and served in slices; pages of slices both processors have left are
  released (`madvise(MADV_DONTNEED)`), so resident memory stays bounded however long the file is;
* `.npz` files are served the same way from their 'data' member (`_npz`): a stored member is memory-mapped inside
  the zip, a compressed one is inflated slice by slice, the next slice in a background thread.
"""
from __future__ import annotations

import mmap
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from ..kernels.numeric import I64_MIN
from ..kernels.rows import EXCH_TS_BACKWARDS, PRICE_NOT_FINITE, ROWS_OK, check_rows
from ..types import event_dtype
from . import _npz

SLICE_ROWS = 1 << 18  # rows per served slice of a memory-mapped file (16 MiB: resident file pages stay small)


@dataclass(frozen=True)
class Source:
    """One element of an asset's data list: a file path or an in-memory array."""

    path: str | None = None
    array: Any = None

    @property
    def name(self) -> str:
        return self.path if self.path is not None else "<in-memory array>"


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype != event_dtype:
        raise DataError(f"{where}: wrong dtype {dtype}; expected hftbacktest event_dtype (64-byte records)")


def check_source(src: Source) -> None:
    """Build-time checks that need no full read: existence, format, dtype."""
    if src.array is not None:
        arr = src.array
        if not isinstance(arr, np.ndarray) or arr.ndim != 1:
            raise DataError(f"{src.name}: expected a 1-D numpy array of event_dtype")
        _check_dtype(arr.dtype, src.name)
        return
    path = src.path
    if not os.path.exists(path):
        raise DataError(f"{path}: data file not found")
    if path.endswith(".npz"):
        _check_dtype(_npz.member(path).dtype, path)
    elif path.endswith(".npy"):
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read .npy ({exc})") from exc
        _check_dtype(arr.dtype, path)
    else:
        raise DataError(f"{path}: unsupported data file (expected .npz or .npy)")


def validate_rows(arr: np.ndarray, where: str, after: tuple = (None, None)) -> tuple:
    """Timestamps must be non-decreasing per processor (EXCH rows by exch_ts, LOCAL rows by local_ts), also across
    chunks (`after`: the previous chunk's last exch_ts / local_ts, None if unknown), and depth/trade rows need a
    finite price and quantity. `arr` is a kernel array (`as_kernel_array`). Returns this chunk's last
    (exch_ts, local_ts)."""
    prev = [I64_MIN if t is None else t for t in after]
    code, row, before, now, from_previous, last_x, last_l = check_rows(arr, prev[0], prev[1])
    if code == PRICE_NOT_FINITE:
        what = "quantity" if np.isfinite(arr["px"][row]) else "price"
        raise DataError(f"{where}: row {row}: {what} is NaN or infinite")
    if code != ROWS_OK:
        field = "exch_ts" if code == EXCH_TS_BACKWARDS else "local_ts"
        if from_previous:
            raise DataError(f"{where}: row {row}: {field} goes backwards from the previous file or chunk "
                            f"({before} -> {now})")
        raise DataError(f"{where}: row {row}: {field} goes backwards ({before} -> {now})")
    return tuple(None if t == I64_MIN else int(t) for t in (last_x, last_l))


def _apply_latency_offset(arr: np.ndarray, offset: int, where: str) -> np.ndarray:
    out = arr.copy()
    out["local_ts"] += offset
    bad = np.flatnonzero(out["local_ts"] <= out["exch_ts"])
    if bad.size:
        raise DataError(f"{where}: row {int(bad[0])}: latency_offset {offset} makes local_ts <= exch_ts")
    return out


def as_kernel_array(arr: np.ndarray) -> np.ndarray:
    """A read-only, aligned, contiguous view typed with our `event_dtype` (files may carry an unaligned-struct
    dtype with the same layout); copies only if the buffer itself is misaligned or strided."""
    if not (arr.flags.aligned and arr.flags.c_contiguous):
        arr = np.require(arr, requirements=["A", "C"])
    view = arr.view(event_dtype)
    view.flags.writeable = False
    return view


class AssetFeed:
    """Serves one asset's data as a sequence of chunks; each processor (0 local, 1 exchange) walks it forward.

    Chunks between the two processors' positions stay cached; the chunk after the furthest one is inflated in a
    background thread when it comes from a compressed `.npz` (one chunk ahead, also across files)."""

    def __init__(self, sources: list[Source], latency_offset: int, validate: bool = True):
        self.latency_offset = latency_offset
        self.validate = validate
        self.pieces: list[tuple[Source, int, int]] = []  # (source, start row, stop row) per served chunk
        self._members: dict[str, _npz.Member] = {}
        for src in sources:
            if src.path is None:
                self.pieces.append((src, 0, -1))
                continue
            if src.path.endswith(".npy"):
                n = np.load(src.path, mmap_mode="r").shape[0]
            else:
                m = self._members[src.path] = _npz.member(src.path)
                _check_dtype(m.dtype, src.path)
                n = m.rows
            for start in range(0, max(n, 1), SLICE_ROWS):
                self.pieces.append((src, start, min(n, start + SLICE_ROWS)))
        self._maps: dict[str, np.memmap] = {}  # .npy files and stored .npz members
        self._streams: dict[str, tuple[_npz.Inflater, int]] = {}  # deflated member -> (inflater, its next row)
        self._ahead: tuple[int, threading.Thread, list] | None = None  # chunk being inflated in the background
        self._cache: dict[int, np.ndarray] = {}
        self._at = [-1, -1]
        self._last_ts: dict[int, tuple] = {}  # piece index -> its last (exch_ts, local_ts), for the next piece

    def __len__(self) -> int:
        return len(self.pieces)

    def chunk(self, which: int, index: int) -> np.ndarray:
        self._at[which] = index
        arr = self._cache.get(index)
        if arr is None:
            arr = self._load(index)
            self._cache[index] = arr
        lo, hi = min(self._at), max(self._at)
        for k in [k for k in self._cache if k < lo]:
            self._release(k)
        if index == hi:
            self._read_ahead(index + 1)
        return arr

    def _deflated(self, index: int) -> _npz.Member | None:
        path = self.pieces[index][0].path
        m = self._members.get(path) if path is not None else None
        return m if m is not None and not m.stored else None

    def _map(self, path: str) -> np.memmap:
        mm = self._maps.get(path)
        if mm is None:
            m = self._members.get(path)
            mm = self._maps[path] = np.load(path, mmap_mode="r") if m is None else _npz.mapped(m)
        return mm

    def _stream(self, index: int) -> _npz.Inflater:
        """The inflater of this chunk's member, positioned at the chunk's first row (restarted if behind)."""
        src, start, _ = self.pieces[index]
        m = self._members[src.path]
        inf, row = self._streams.get(src.path, (None, -1))
        if inf is None or row > start:
            if inf is not None:
                inf.close()
            inf, row = _npz.Inflater(m), 0
        while row < start:  # only after a restart: skip whole slices
            n = min(SLICE_ROWS, start - row)
            inf.read(n * m.dtype.itemsize)
            row += n
        self._streams[src.path] = (inf, start)
        return inf

    def _inflate(self, index: int) -> np.ndarray:
        src, start, stop = self.pieces[index]
        inf = self._stream(index)
        raw = inf.read((stop - start) * event_dtype.itemsize)
        if inf.done:  # a finished member keeps no buffers (a long data list must not accumulate them)
            del self._streams[src.path]
        else:
            self._streams[src.path] = (inf, stop)
        return raw

    def _read_ahead(self, index: int) -> None:
        if self._ahead is not None or index >= len(self.pieces) or index in self._cache or \
                self._deflated(index) is None:
            return
        src, start, stop = self.pieces[index]
        try:
            inf = self._stream(index)
            inf.top_up((stop - start) * event_dtype.itemsize)
        except DataError:
            return  # raised again, in order, when the chunk is needed
        box: list = []
        started = threading.Event()

        def work():
            started.set()  # from here the thread is inside zlib, which runs without the GIL
            try:
                box.append(self._inflate(index))
            except BaseException as exc:  # handed to the main thread in _load
                box.append(exc)

        t = threading.Thread(target=work, name="hftbacktest-npz-read-ahead", daemon=True)
        t.start()
        started.wait()
        self._ahead = (index, t, box)

    def _join_ahead(self):
        index, t, box = self._ahead
        self._ahead = None
        t.join()
        return index, box[0]

    def _load(self, index: int) -> np.ndarray:
        src, start, stop = self.pieces[index]
        where = src.name
        if src.array is not None:
            arr = src.array
        elif self._deflated(index) is None:
            arr = self._map(src.path)[start:stop]
        else:
            raw = None
            if self._ahead is not None:
                done, raw = self._join_ahead()
                if done != index:
                    raw = None
                elif isinstance(raw, BaseException):
                    raise raw
            if raw is None:
                raw = self._inflate(index)
            arr = raw.view(self._members[src.path].dtype)
        if src.path is not None:  # a .npz served whole is named as given, a slice with its rows
            m = self._members.get(src.path)
            whole = m is not None and (start, stop) == (0, m.rows)
            where = src.path if whole else f"{src.path} (rows {start}..{stop})"
        arr = as_kernel_array(arr)
        if self.validate:
            self._last_ts[index] = validate_rows(arr, where, self._last_ts.get(index - 1, (None, None)))
        if self.latency_offset:
            arr = as_kernel_array(_apply_latency_offset(arr, self.latency_offset, where))
        return arr

    def _release(self, index: int) -> None:
        arr = self._cache.pop(index)
        src, start, stop = self.pieces[index]
        mm = self._maps.get(src.path) if src.path is not None else None
        if mm is not None and not self.latency_offset:
            base = getattr(mm, "_mmap", None)
            if base is not None and hasattr(mmap, "MADV_DONTNEED"):
                offset = mm.offset % mmap.ALLOCATIONGRANULARITY + start * event_dtype.itemsize
                page = mmap.PAGESIZE
                lo = (offset // page) * page
                length = (stop - start) * event_dtype.itemsize + (offset - lo)
                try:
                    base.madvise(mmap.MADV_DONTNEED, lo, length)
                except (OSError, ValueError):
                    pass
        del arr


class Feed:
    """All assets' feeds of one backtest; the kernels reach it through `kernels.loop.FEEDS[key]`."""

    def __init__(self, assets: list[AssetFeed]):
        self.assets = assets
        self.error: Exception | None = None

    def chunk(self, asset: int, which: int, index: int) -> np.ndarray:
        return self.assets[asset].chunk(which, index)
