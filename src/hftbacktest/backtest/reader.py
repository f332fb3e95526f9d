"""Event data sources: validated at build time, served to the kernels chunk by chunk.

* in-memory arrays are kept referenced (never copied unless `latency_offset` must rewrite them);
* `.npy` files are memory-mapped read-only and served in slices; pages of slices both processors have left are
  released (`madvise(MADV_DONTNEED)`), so resident memory stays bounded however long the file is;
* `.npz` files are decompressed lazily, one at a time, when a processor reaches them.
"""
from __future__ import annotations

import mmap
import os
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from ..kernels.numeric import I64_MIN
from ..kernels.rows import EXCH_TS_BACKWARDS, PRICE_NOT_FINITE, ROWS_OK, check_rows
from ..types import event_dtype

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


def _npz_member_header(path: str) -> np.dtype:
    """dtype of the 'data' array of an .npz without decompressing the body."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            member = "data.npy" if "data.npy" in names else None
            if member is None:
                raise DataError(f"{path}: .npz has no 'data' array (found {', '.join(names) or 'nothing'})")
            with zf.open(member) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    _, _, dtype = np.lib.format.read_array_header_1_0(fh)
                else:
                    _, _, dtype = np.lib.format.read_array_header_2_0(fh)
                return dtype
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read .npz ({exc})") from exc


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
        _check_dtype(_npz_member_header(path), path)
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
    """Serves one asset's data as a sequence of chunks; each processor (0 local, 1 exchange) walks it forward."""

    def __init__(self, sources: list[Source], latency_offset: int, validate: bool = True):
        self.latency_offset = latency_offset
        self.validate = validate
        self.pieces: list[tuple[Source, int, int]] = []  # (source, start row, stop row) per served chunk
        for src in sources:
            if src.path is not None and src.path.endswith(".npy"):
                n = np.load(src.path, mmap_mode="r").shape[0]
                for start in range(0, max(n, 1), SLICE_ROWS):
                    self.pieces.append((src, start, min(n, start + SLICE_ROWS)))
            else:
                self.pieces.append((src, 0, -1))
        self._mmaps: dict[str, np.memmap] = {}
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
        for k in [k for k in self._cache if k not in self._at]:
            self._release(k)
        return arr

    def _load(self, index: int) -> np.ndarray:
        src, start, stop = self.pieces[index]
        where = src.name
        if src.array is not None:
            arr = src.array
        elif src.path.endswith(".npy"):
            mm = self._mmaps.get(src.path)
            if mm is None:
                mm = self._mmaps[src.path] = np.load(src.path, mmap_mode="r")
            arr = mm[start:stop]
            where = f"{src.path} (rows {start}..{stop})"
        else:
            try:
                with np.load(src.path) as npz:
                    arr = npz["data"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                raise DataError(f"{src.path}: cannot load ({exc})") from exc
            _check_dtype(arr.dtype, src.path)
        arr = as_kernel_array(arr)
        if self.validate:
            self._last_ts[index] = validate_rows(arr, where, self._last_ts.get(index - 1, (None, None)))
        if self.latency_offset:
            arr = as_kernel_array(_apply_latency_offset(arr, self.latency_offset, where))
        return arr

    def _release(self, index: int) -> None:
        arr = self._cache.pop(index)
        src, start, stop = self.pieces[index]
        if src.path is not None and src.path.endswith(".npy") and not self.latency_offset:
            mm = self._mmaps[src.path]
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
