"""Binance USD-M (and COIN-M) raw feed → event array, byte-identical to hftbacktest 2.4.4 by default.

Reading is streamed (gzip decompressed in chunks, rows appended to growable tables), parsing runs in a numba
kernel with a Python fallback for unusual lines, and every problem is counted in a `QualityReport`.
"""
from __future__ import annotations

import json
import os
from typing import Literal, Optional

import numpy as np
import orjson
from numpy.typing import NDArray

from ...errors import DataError, DataQualityError
from ...types import (BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, SELL_EVENT, TRADE_EVENT,
                      event_dtype)
from .. import _parse as P
from ..quality import QualityReport, check_depth_sequence, replay_book, warn_or_raise
from ..validation import _is_sorted, _min_latency, correct_event_order, shift_local_timestamp, validate_event_order

try:  # ISA-L inflates about twice as fast as zlib; same API
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover
    import zlib as _zlib

_CHUNK = 4 << 20  # compressed bytes read per step
_TS_UNITS = {"ns": (19, 1), "us": (16, 1_000), "ms": (13, 1_000_000)}
_DIGITS_TO_UNIT = {d: u for u, (d, _) in _TS_UNITS.items()}


class _Tables:
    """Growable column tables: rows (event fields) and one entry per event/snapshot line (for quality checks)."""

    def __init__(self, rows: int, msgs: int):
        self.nrow = 0
        self.nmsg = 0
        self.rows = self._alloc_rows(rows)
        self.msgs = self._alloc_msgs(msgs)

    @staticmethod
    def _alloc_rows(n):
        return np.empty((n, 8), np.uint64)

    @staticmethod
    def _alloc_msgs(n):
        return [np.empty(n, np.int64), np.empty(n, np.int8)] + [np.empty(n, np.int64) for _ in range(6)]

    def reserve(self, rows: int, msgs: int) -> None:
        if self.nrow + rows > len(self.rows):
            cap = max(2 * len(self.rows), self.nrow + rows)
            new = self._alloc_rows(cap)
            new[: self.nrow] = self.rows[: self.nrow]
            self.rows = new
        if self.nmsg + msgs > len(self.msgs[0]):
            cap = max(2 * len(self.msgs[0]), self.nmsg + msgs)
            new = self._alloc_msgs(cap)
            for a, b in zip(new, self.msgs):
                a[: self.nmsg] = b[: self.nmsg]
            self.msgs = new

    def add_rows(self, rows: list[tuple]) -> None:
        self.reserve(len(rows), 0)
        n = self.nrow
        recs = self.records(n, n + len(rows))
        for i, r in enumerate(rows):
            recs[i] = (*r, 0, 0, 0.0)
        self.nrow = n + len(rows)

    def records(self, a: int, b: int) -> NDArray:
        """Rows a:b as an `event_dtype` view (no copy)."""
        return self.rows[a:b].reshape(-1).view(event_dtype)

    def views(self):
        return self.rows, self.rows.view(np.int64), self.rows.view(np.float64)

    def add_msg(self, line, kind, local, exch, id0=-1, id1=-1, id2=-1, row=None):
        self.reserve(0, 1)
        vals = (line, kind, local, exch, id0, id1, id2, self.nrow if row is None else row)
        for col, v in zip(self.msgs, vals):
            col[self.nmsg] = v
        self.nmsg += 1


class _Converter:
    def __init__(self, path, opt, combined, ts_unit, strict, mark_price_time):
        self.path = str(path)
        self.opt_m = "m" in opt
        self.opt_t = "t" in opt
        self.combined = combined
        self.strict = strict
        self.mark_use_e = mark_price_time == "E"
        if ts_unit not in ("auto", *_TS_UNITS):
            raise ValueError(f"ts_unit must be 'auto', 'ns', 'us' or 'ms', not {ts_unit!r}")
        self.ts_digits, self.ts_mul = _TS_UNITS.get(ts_unit, (0, 1))
        self.report = QualityReport(path=self.path, ts_unit=ts_unit)
        self.symbol: Optional[str] = None
        self.sym_bytes = np.zeros(0, np.uint8)
        size = os.path.getsize(path)
        self.t = _Tables(rows=max(1 << 16, size // 4), msgs=max(1 << 12, size // 16))
        self.line_no = 0

    # -- the slow path: exact reference semantics plus tolerant handling of odd lines ------------------
    def _bad(self, reason: str) -> None:
        if self.strict:
            raise DataQualityError(reason, path=self.path, line=self.line_no)
        self.report.malformed.append((self.line_no, reason))

    def _slow_line(self, raw: bytes) -> None:
        self.line_no += 1
        s = raw.strip()
        if not s:
            return self._bad("blank line")
        parts = s.split(None, 1)
        if len(parts) != 2 or not parts[0].isdigit():
            return self._bad("line does not start with '<local timestamp> '")
        ts_text, body = parts
        if self.ts_digits == 0:
            unit = _DIGITS_TO_UNIT.get(len(ts_text))
            if unit is None:
                return self._bad(f"cannot tell the unit of a {len(ts_text)}-digit local timestamp "
                                 "(pass ts_unit='ns'|'us'|'ms')")
            self.ts_digits, self.ts_mul = _TS_UNITS[unit]
            self.report.ts_unit = unit
        elif len(ts_text) != self.ts_digits:
            return self._bad(f"{len(ts_text)}-digit local timestamp in a file of {self.ts_digits}-digit ones "
                             "(mixed units)")
        local = int(ts_text) * self.ts_mul
        try:
            msg = orjson.loads(body)
        except orjson.JSONDecodeError:
            try:
                msg = json.loads(body)
            except ValueError:
                return self._bad("invalid JSON")
        if not isinstance(msg, dict):
            return self._bad("JSON is not an object")
        d = msg.get("data") if self.combined else msg
        if d is None and "e" in msg:
            d = msg  # a plain event line in a combined-stream file
        elif not self.combined and isinstance(msg.get("data"), dict) and "e" not in msg:
            d = msg["data"]  # an envelope in a plain-stream file
        try:
            if d is not None:
                if not isinstance(d, dict) or "e" not in d:
                    return self._bad("event without an 'e' field")
                self._event(d, local)
            elif "code" in msg:
                text = f"{msg['code']} {msg.get('msg', '')}"
                print(msg["code"], msg.get("msg"))
                self.report.rest_errors.append((self.line_no, text))
                self.t.add_msg(self.line_no, P.KIND_ERROR, local, -1)
            elif "bids" in msg or "asks" in msg:
                self._snapshot(msg, local)
            else:
                return self._bad("neither a stream event, a depth snapshot nor an error response")
        except KeyError as exc:
            return self._bad(f"missing field {exc}")
        except (ValueError, TypeError, IndexError, AttributeError, OverflowError) as exc:
            return self._bad(f"bad field value ({exc})")

    def _check_symbol(self, d) -> None:
        sym = d.get("s")
        if self.symbol is None and isinstance(sym, str):
            self.symbol = sym
            self.report.symbols.append(sym)
            self.sym_bytes = np.frombuffer(orjson.dumps(sym), np.uint8).copy()
        elif sym != self.symbol:
            if sym not in self.report.symbols:
                self.report.symbols.append(sym)
            self.report.symbol_mix_lines.append(self.line_no)
            if self.strict:
                raise DataQualityError(f"symbol {sym!r} in a file of {self.symbol!r}", path=self.path,
                                       line=self.line_no)

    def _event(self, d, local) -> None:
        e = d["e"]
        rows: list[tuple] = []
        kind, ids = P.KIND_OTHER, (-1, -1, -1)
        if e in ("trade", "depthUpdate", "markPriceUpdate", "bookTicker"):
            self._check_symbol(d)
        if e == "trade":
            kind = P.KIND_TRADE
            x = int(d["T"]) * 1_000_000
            if d["X"] != "MARKET":
                ids = (int(d.get("t", -1)), 1, -1)
            else:
                ids = (int(d.get("t", -1)), -1, -1)
                side = SELL_EVENT if d["m"] else BUY_EVENT
                rows.append((TRADE_EVENT | side, x, local, float(d["p"]), float(d["q"])))
        elif e == "depthUpdate":
            kind = P.KIND_DEPTH
            x = int(d["T"]) * 1_000_000
            rows += [(DEPTH_EVENT | BUY_EVENT, x, local, float(p), float(q)) for p, q in d["b"]]
            rows += [(DEPTH_EVENT | SELL_EVENT, x, local, float(p), float(q)) for p, q in d["a"]]
            ids = (int(d["U"]), int(d["u"]), int(d["pu"]))
        elif e == "markPriceUpdate":
            kind = P.KIND_MARK
            x = int(d["E" if self.mark_use_e else "T"]) * 1_000_000
            if self.opt_m:
                rows += [(100, x, local, float(d["i"]), 0.0), (101, x, local, float(d["p"]), 0.0),
                         (102, x, local, float(d["r"]), 0.0)]
        elif e == "bookTicker":
            kind = P.KIND_TICKER
            x = int(d["T"]) * 1_000_000
            if self.opt_t:
                rows += [(103, x, local, float(d["b"]), float(d["B"])),
                         (104, x, local, float(d["a"]), float(d["A"]))]
            ids = (int(d.get("u", -1)), -1, -1)
        else:
            x = -1
            self.report.ignored_events += 1
        self.t.add_msg(self.line_no, kind, local, x, *ids)
        self.t.add_rows(rows)

    def _snapshot(self, msg, local) -> None:
        x = int(msg["T"]) * 1_000_000
        rows: list[tuple] = []
        for side, key in ((BUY_EVENT, "bids"), (SELL_EVENT, "asks")):
            levels = msg[key]
            if len(levels) > 0:
                rows.append((DEPTH_CLEAR_EVENT | side, x, local, float(levels[-1][0]), 0.0))
                rows += [(DEPTH_SNAPSHOT_EVENT | side, x, local, float(p), float(q)) for p, q in levels]
        self.t.add_msg(self.line_no, P.KIND_SNAPSHOT, local, x, int(msg.get("lastUpdateId", -1)))
        self.t.add_rows(rows)

    # -- driving the fast path over a decompressed buffer ------------------------------------------------
    def feed(self, buf: np.ndarray, final: bool) -> int:
        """Consume complete lines of buf (all of it if final); return the number of bytes consumed."""
        pos, end = 0, len(buf)
        t = self.t
        while pos < end:
            status, pos, self.line_no, t.nrow, t.nmsg = P.parse_lines(
                buf, pos, end, final, self.line_no, self.ts_digits, self.ts_mul, self.combined, self.opt_m,
                self.opt_t, self.mark_use_e, self.sym_bytes, *t.views(), t.nrow, *t.msgs, t.nmsg)
            if status == P.ST_DONE:
                break
            if status == P.ST_FULL:
                t.reserve(max(1 << 16, len(t.rows)), max(1 << 12, len(t.msgs[0])))
                continue
            line_end = P.line_end(buf, pos, end)
            self._slow_line(buf[pos:line_end].tobytes())
            pos = line_end + 1
        return min(pos, end)

    def run(self) -> None:
        from ..progress import progress_bar

        size = os.path.getsize(self.path)
        with progress_bar(size, f"Reading {self.path}") as bar:
            pending = b""
            for data in _decompressed_chunks(self.path, bar, self.report):
                buf = pending + data if pending else data
                used = self.feed(np.frombuffer(buf, np.uint8), final=False)
                pending = buf[used:]
            if self.report.truncated and self.strict:
                raise DataQualityError("truncated gzip stream", path=self.path, line=self.line_no + 1)
            if pending:
                self.feed(np.frombuffer(pending, np.uint8), final=True)
        self.report.lines = self.line_no


def _decompressed_chunks(path: str, advance, report: QualityReport):
    """Yield decompressed chunks of a gzip (multi-member allowed) or plain file.

    Decompression runs one chunk ahead in a thread (zlib/isal release the GIL, the numba parser too), so
    reading and parsing overlap. A stream that ends early marks `report.truncated`.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce():
        try:
            with open(path, "rb") as f:
                gz = f.read(2) == b"\x1f\x8b"
                f.seek(0)
                dec = _zlib.decompressobj(31) if gz else None
                while not stop.is_set() and (raw := f.read(_CHUNK)):
                    advance(len(raw))
                    if not gz:
                        q.put(raw)
                        continue
                    parts = []
                    while raw:
                        if dec.eof:  # concatenated gzip members
                            dec = _zlib.decompressobj(31)
                        parts.append(dec.decompress(raw))
                        raw = dec.unused_data
                    q.put(b"".join(parts))
                if gz and not dec.eof:
                    report.truncated = True
            q.put(None)
        except Exception as exc:  # handed to the consumer
            q.put(exc)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, Exception):
                if isinstance(item, _zlib.error):
                    raise DataError(f"{path}: corrupt gzip data ({item})") from item
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except Exception:
                worker.join(0.01)


def _tmp_array(t: _Tables) -> NDArray:
    return t.records(0, t.nrow)


class _BookCheck:
    """Replays the depth stream as a synced consumer would (only applicable diffs, whole-book resets at each
    snapshot, bridging diffs after it) in a background thread, counting messages that leave the book crossed."""

    def __init__(self, tmp, conv: _Converter, apply, defer_to):
        import threading

        t = conv.t
        kind, line, row = t.msgs[1][: t.nmsg], t.msgs[0][: t.nmsg], t.msgs[7][: t.nmsg]
        ends = np.append(row[1:], t.nrow)
        order: list[int] = []
        deferred: dict[int, list[int]] = {}
        for i in np.nonzero((kind == P.KIND_SNAPSHOT) | apply)[0].tolist():
            if defer_to[i] >= 0:
                deferred.setdefault(int(defer_to[i]), []).append(i)
            else:
                order.append(i)
                order += deferred.pop(i, [])
        idx = np.array(order, np.int64)
        args = (tmp["ev"], tmp["px"], tmp["qty"], row[idx], ends[idx], line[idx], True, 0.0, False, 10)
        self.report = conv.report
        self.result = None
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args):
        self.result = replay_book(*args)

    def join(self):
        self.thread.join()
        _, _, _, _, crossed, lines = self.result
        self.report.crossed_book_count, self.report.crossed_book_lines = int(crossed), lines.tolist()


def _fill_report(conv: _Converter, initial_last_u):
    t, rep = conv.t, conv.report
    line, kind, local, exch, id0, id1, id2, row = (c[: t.nmsg] for c in t.msgs)
    names = {P.KIND_DEPTH: "depthUpdate", P.KIND_TRADE: "trade", P.KIND_TICKER: "bookTicker",
             P.KIND_MARK: "markPriceUpdate", P.KIND_SNAPSHOT: "snapshot", P.KIND_ERROR: "rest_error",
             P.KIND_OTHER: "other"}
    counts = np.bincount(kind.astype(np.int64) + 0, minlength=7)
    rep.messages = {names[k]: int(counts[k]) for k in names if counts[k]}
    rep.ignored_events = int(counts[P.KIND_OTHER])
    rep.non_market_trades = line[(kind == P.KIND_TRADE) & (id1 == 1)].tolist()
    has_ts = (exch >= 0) & (kind != P.KIND_ERROR) & (kind != P.KIND_OTHER)
    if np.any(has_ts):
        lat = local[has_ts] - exch[has_ts]
        rep.min_latency_ns = int(lat.min())
        rep.negative_latency_messages = int(np.count_nonzero(lat < 0))
    for k in (P.KIND_DEPTH, P.KIND_TRADE, P.KIND_TICKER, P.KIND_MARK):
        sel = kind == k
        x = exch[sel]
        bad = np.nonzero(x[1:] < x[:-1])[0] + 1
        rep.non_monotonic_exch_lines += line[sel][bad].tolist()
        if k == P.KIND_TRADE:
            tid = id0[sel]
            dup = np.nonzero((tid[1:] <= tid[:-1]) & (tid[1:] >= 0))[0] + 1
            rep.duplicate_lines += line[sel][dup].tolist()
    rep.non_monotonic_exch_lines.sort()
    apply, defer_to = check_depth_sequence(kind, line, local, id0, id1, id2, rep, initial_last_u)
    rep.duplicate_lines.sort()
    return apply, defer_to


def _resync(tmp, kind, local, row, apply, defer_to):
    """Gap-aware rows: drop depth diffs that cannot be applied, replace each snapshot's partial clears by
    full-side clears (px=NaN), and move buffered bridging diffs to the snapshot's local time, after it."""
    ends = np.append(row[1:], len(tmp))
    keep = np.ones(len(tmp), bool)
    deferred: dict[int, list[int]] = {}
    for i in np.nonzero(kind == P.KIND_DEPTH)[0]:
        if not apply[i]:
            keep[row[i]:ends[i]] = False
        elif defer_to[i] >= 0:
            keep[row[i]:ends[i]] = False
            deferred.setdefault(int(defer_to[i]), []).append(int(i))
    pieces = []
    start = 0
    for s in np.nonzero(kind == P.KIND_SNAPSHOT)[0]:
        a, b = row[s], ends[s]
        pieces.append(tmp[start:a][keep[start:a]])
        snap = tmp[a:b].copy()
        clears = (snap["ev"] & 0xFF) == DEPTH_CLEAR_EVENT
        snap["px"][clears] = np.nan
        pieces.append(snap)
        for i in deferred.get(int(s), []):
            moved = tmp[row[i]:ends[i]].copy()
            moved["local_ts"] = local[s]
            pieces.append(moved)
        start = b
    pieces.append(tmp[start:][keep[start:]])
    return np.concatenate(pieces) if pieces else tmp


def _stable_argsort(x: NDArray) -> NDArray:
    """np.argsort(kind='mergesort'); collector files are already in local-time order, so check that first."""
    if _is_sorted(x):
        return np.arange(len(x), dtype=np.int64)
    return np.argsort(x, kind="mergesort")


def convert(
    input_filename: str,
    output_filename: Optional[str] = None,
    opt: Literal["", "m", "t", "mt"] = "",
    base_latency: float = 0,
    combined_stream: bool = True,
    buffer_size: int = 100_000_000,
    *,
    ts_unit: Literal["auto", "ns", "us", "ms"] = "auto",
    strict: bool = False,
    gap_policy: Literal["none", "resync"] = "none",
    mark_price_time: Literal["T", "E"] = "T",
    initial_last_u: Optional[int] = None,
    return_report: bool = False,
):
    """Convert a raw Binance USD-M feed file (gzip or plain text) into an `event_dtype` array.

    Same signature, defaults and output as hftbacktest 2.4.4 (`opt`: 'm' mark/index/funding rows 100-102,
    't' bookTicker rows 103/104). `buffer_size` is accepted for compatibility only: tables grow as needed.

    Extras (keyword-only, off by default so the output stays identical to the reference):
      ts_unit: unit of the local timestamps ('auto' detects 19/16/13 digits = ns/us/ms; always stored in ns).
      strict: raise DataQualityError naming the line at the first problem instead of skipping and warning.
      gap_policy='resync': drop depth diffs that cannot be applied (gaps, stale, duplicates), clear whole
        sides (DEPTH_CLEAR with px=NaN) at each resync snapshot and replay the bridging diffs after it.
      mark_price_time='E': use the event time of markPriceUpdate (T is the next funding time).
      initial_last_u: last `u` of the previous file, so its first diff continues the sequence.
      return_report: return `(data, QualityReport)` instead of `data`.
    """
    del buffer_size  # kept for signature compatibility; storage grows on demand
    if gap_policy not in ("none", "resync"):
        raise ValueError(f"gap_policy must be 'none' or 'resync', not {gap_policy!r}")
    if not os.path.exists(input_filename):
        raise FileNotFoundError(input_filename)
    conv = _Converter(input_filename, opt, combined_stream, ts_unit, strict, mark_price_time)
    conv.run()
    tmp = _tmp_array(conv.t)
    apply, defer_to = _fill_report(conv, initial_last_u)
    book_check = _BookCheck(tmp, conv, apply, defer_to)  # runs in a thread (nogil) while the rest proceeds
    if gap_policy == "resync":
        t = conv.t
        tmp = _resync(tmp, t.msgs[1][: t.nmsg], t.msgs[2][: t.nmsg], t.msgs[7][: t.nmsg], apply, defer_to)
    if strict:
        book_check.join()
        warn_or_raise(conv.report, strict)

    print("Correcting the latency")
    if len(tmp):
        min_lat = int(_min_latency(tmp["exch_ts"], tmp["local_ts"]))
        if min_lat < 0:
            print("local_timestamp is ahead of exch_timestamp by", -min_lat)
            shift_local_timestamp(tmp, min_lat, base_latency)
    print("Correcting the event order")
    data = correct_event_order(tmp, _stable_argsort(tmp["exch_ts"]), _stable_argsort(tmp["local_ts"]))
    validate_event_order(data)
    if not strict:
        book_check.join()
        warn_or_raise(conv.report, strict)
    if output_filename is not None:
        print("Saving to %s" % output_filename)
        np.savez_compressed(output_filename, data=data)
    return (data, conv.report) if return_report else data


def check_quality(input_filename: str, combined_stream: bool = True, **kwargs) -> QualityReport:
    """Run the converter's checks only and return the report (never raises for data problems)."""
    import contextlib
    import io
    import warnings

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rep = convert(input_filename, combined_stream=combined_stream, return_report=True, **kwargs)
    return rep
