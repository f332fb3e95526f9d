"""The 'data' member of an `.npz`, served in bounded row slices instead of being loaded whole.

* a stored (uncompressed, `numpy.savez`) member is memory-mapped at its data offset inside the zip;
* a deflated member (`numpy.savez_compressed`, what `convert` writes) is inflated slice by slice into a buffer of
  one slice, by ISA-L (`isal.isal_zlib`, a dependency: ~4x the system zlib's speed, which made inflation most of
  the data path's CPU time). Both ISA-L and the fallback, the system zlib called through ctypes, release the GIL
  while inflating, so a background thread can inflate the next slice while the engine (which holds the GIL)
  replays the current one. The zip's CRC-32 and length are checked: by ISA-L's crc32 on the inflated bytes, or by
  zlib itself (the raw deflate stream framed as a gzip stream whose trailer carries the zip's CRC and size).
  Without either, the same work is done with Python's `zlib`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header (30 bytes)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_IN_BLOCK = 1 << 22  # compressed bytes read per top-up


@dataclass(frozen=True)
class Member:
    """Where the 'data' array sits inside an .npz."""

    path: str
    dtype: np.dtype
    rows: int
    stored: bool
    offset: int  # file offset of the member's first byte (the .npy header)
    header: int  # length of the .npy header inside the member
    csize: int  # compressed size of the member
    usize: int  # uncompressed size of the member
    crc: int


def member(path: str) -> Member:
    """Locate and describe the 'data' member without reading its body."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "data.npy" not in names:
                raise DataError(f"{path}: .npz has no 'data' array (found {', '.join(names) or 'nothing'})")
            info = zf.getinfo("data.npy")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise DataError(f"{path}: .npz member data.npy uses unsupported compression {info.compress_type}")
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(fh)
                header = fh.tell()
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error) as exc:
        raise DataError(f"{path}: cannot read .npz ({exc})") from exc
    if fields[0] != b"PK\x03\x04":
        raise DataError(f"{path}: cannot read .npz (bad local header of data.npy)")
    if len(shape) != 1:
        raise DataError(f"{path}: 'data' must be 1-D, found shape {shape}")
    rows = shape[0]
    if info.file_size != header + rows * dtype.itemsize:
        raise DataError(f"{path}: data.npy holds {info.file_size - header} bytes, its header says {rows} rows")
    offset = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
    return Member(path, dtype, rows, info.compress_type == zipfile.ZIP_STORED, offset, header,
                  info.compress_size, info.file_size, info.CRC)


def mapped(m: Member) -> np.memmap:
    """A read-only memory map of a stored member's rows."""
    try:
        return np.memmap(m.path, dtype=m.dtype, mode="r", offset=m.offset + m.header, shape=(m.rows,))
    except (OSError, ValueError) as exc:
        raise DataError(f"{m.path}: cannot map .npz member data.npy ({exc})") from exc


class _ZStream(ctypes.Structure):
    _fields_ = [("next_in", ctypes.c_void_p), ("avail_in", ctypes.c_uint), ("total_in", ctypes.c_ulong),
                ("next_out", ctypes.c_void_p), ("avail_out", ctypes.c_uint), ("total_out", ctypes.c_ulong),
                ("msg", ctypes.c_char_p), ("state", ctypes.c_void_p), ("zalloc", ctypes.c_void_p),
                ("zfree", ctypes.c_void_p), ("opaque", ctypes.c_void_p), ("data_type", ctypes.c_int),
                ("adler", ctypes.c_ulong), ("reserved", ctypes.c_ulong)]


def _libz():
    name = ctypes.util.find_library("z")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        for fn in (lib.inflateInit2_, lib.inflate, lib.inflateEnd):
            fn.restype = ctypes.c_int
        lib.inflate.argtypes = [ctypes.POINTER(_ZStream), ctypes.c_int]
        lib.inflateEnd.argtypes = [ctypes.POINTER(_ZStream)]
        lib.inflateInit2_.argtypes = [ctypes.POINTER(_ZStream), ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.zlibVersion.restype = ctypes.c_char_p
        return lib
    except (OSError, AttributeError):
        return None


_LIBZ = _libz()
try:
    from isal import isal_zlib as _ISAL
except ImportError:  # pragma: no cover - isal is a dependency; stay correct without it
    _ISAL = None
_Z_STREAM_END = 1
_Z_OK = 0


class Inflater:
    """Sequential reader of a deflated member: `read(n)` returns its next `n` bytes of rows as a uint8 array.
    `lib`: a zlib-compatible module (`isal_zlib`, `zlib`), the ctypes zlib, or None for Python's `zlib`."""

    def __init__(self, m: Member, lib="auto"):
        lib = (_ISAL or _LIBZ) if lib == "auto" else lib
        if not isinstance(lib, ctypes.CDLL):
            self._zmod, lib = lib or zlib, None
        self.m = m
        self.fh = open(m.path, "rb")
        self.fh.seek(m.offset)
        self.left = m.csize  # compressed bytes not yet read from the file
        trailer = struct.pack("<II", m.crc, m.usize & 0xFFFFFFFF)
        self._tail = trailer
        self._lib = lib
        if lib is not None:
            self._z = _ZStream()
            rc = lib.inflateInit2_(ctypes.byref(self._z), 16 + 15, lib.zlibVersion(), ctypes.sizeof(_ZStream))
            if rc != _Z_OK:
                raise DataError(f"{m.path}: zlib init failed ({rc})")
            self._in = np.frombuffer(_GZIP_HEADER, np.uint8)
            self._z.next_in, self._z.avail_in = self._in.ctypes.data, self._in.size
        else:
            self._d = self._zmod.decompressobj(-15)
            self._pending, self._crc, self._seen = b"", 0, 0
        self.done = False
        self.read(m.header)  # the .npy header

    def _fail(self, why: str):
        self.close()
        return DataError(f"{self.m.path}: corrupt .npz member data.npy ({why})")

    def _more(self, want: int) -> bytes:
        n = min(max(want, _IN_BLOCK), self.left)
        block = self.fh.read(n)
        if len(block) != n:
            raise self._fail("file ends inside the compressed data")
        self.left -= n
        return block

    def top_up(self, out_bytes: int) -> None:
        """Make about enough compressed input available for `out_bytes` more output (so `read` needs no file
        access, which would have to wait for the GIL)."""
        if self._lib is None or self.left == 0:
            return
        z = self._z
        ratio = max(1.0, z.total_out / z.total_in) if z.total_in > 4096 else 1.0
        want = int(out_bytes / ratio * 1.25) + 65536
        if z.avail_in >= want:
            return
        rest = ctypes.string_at(z.next_in, z.avail_in) if z.avail_in else b""
        block = rest + self._more(want - z.avail_in)
        if self.left == 0:
            block += self._tail
        self._in = np.frombuffer(block, np.uint8)
        z.next_in, z.avail_in = self._in.ctypes.data, self._in.size

    def read(self, n: int) -> np.ndarray:
        if self._lib is None:
            return self._read_py(n)
        out = np.empty(n, np.uint8)
        z, lib = self._z, self._lib
        z.next_out, z.avail_out = out.ctypes.data, n
        while z.avail_out:
            if z.avail_in == 0:
                self.top_up(z.avail_out)
                if z.avail_in == 0:
                    raise self._fail("data ends early")
            rc = lib.inflate(ctypes.byref(z), 0)  # the whole slice in one call, outside the GIL
            if rc == _Z_STREAM_END and z.avail_out:
                raise self._fail("data ends early")
            if rc not in (_Z_OK, _Z_STREAM_END):
                raise self._fail((z.msg or b"zlib error %d" % rc).decode(errors="replace"))
        if z.total_out >= self.m.usize and not self.done:
            self._finish()
        return out

    def _finish(self) -> None:
        """After the last row: the gzip trailer (the zip's CRC and size) must be read and must match."""
        z, lib = self._z, self._lib
        spare = np.empty(1, np.uint8)
        while True:
            z.next_out, z.avail_out = spare.ctypes.data, 1
            if z.avail_in == 0:
                self.top_up(1)
            rc = lib.inflate(ctypes.byref(z), 0)
            if rc == _Z_STREAM_END and z.avail_out == 1:
                break
            if rc not in (_Z_OK, _Z_STREAM_END) or z.avail_out == 0 or (z.avail_in == 0 and self.left == 0):
                raise self._fail((z.msg or b"data longer than its size").decode(errors="replace"))
        self.done = True
        self.close()

    def _read_py(self, n: int) -> np.ndarray:
        parts, got = [], 0
        while got < n:
            if not self._pending and self.left:
                self._pending = self._more(_IN_BLOCK)
            try:  # ISA-L may hold inflated bytes back after its input is used up: an empty call releases them
                piece = self._d.decompress(self._pending, n - got)
            except self._zmod.error as exc:
                raise self._fail(str(exc)) from None
            self._pending = self._d.unconsumed_tail
            self._crc = self._zmod.crc32(piece, self._crc)
            parts.append(piece)
            got += len(piece)
            if got < n and (self._d.eof or not (piece or self._pending or self.left)):
                raise self._fail("data ends early")
        self._seen += n
        if self._seen >= self.m.usize:
            if self._crc != self.m.crc:
                raise self._fail("CRC mismatch")
            self.done = True
            self.close()
        return np.frombuffer(b"".join(parts), np.uint8)

    def close(self) -> None:
        if self._lib is not None and getattr(self, "_z", None) is not None:
            self._lib.inflateEnd(ctypes.byref(self._z))
            self._z = self._in = None
        self.fh.close()
