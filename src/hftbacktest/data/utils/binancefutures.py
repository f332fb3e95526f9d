"""Binance USD-M (and COIN-M) raw feed → event array, byte-identical to hftbacktest 2.4.4 on well-formed feeds.

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

from ... import _atomic
from ...binance import wire as W
from ...binance.numbers import number
from ...errors import DataError, DataQualityError
from ...types import (BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, SELL_EVENT, TRADE_EVENT,
                      event_dtype)
from .. import _parse as P
from .. import _spool as S
from ..quality import (DepthSync, QualityReport, bad_values, book_apply, book_new, msg_checks, value_problem,
                       warn_or_raise)

try:  # ISA-L inflates about twice as fast as zlib; same API
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover
    import zlib as _zlib

_CHUNK = 1 << 18  # compressed bytes read per step (≈ 2 MB of text: few page faults, small read-ahead)
_OUT_CHUNK = 1 << 22  # most text one step may inflate to (a gzip bomb stays bounded)
MAX_LINE = 1 << 23  # longer lines are skipped unread (a 1000-level depth snapshot is ~50 kB)
_TS_UNITS = {"ns": (19, 1), "us": (16, 1_000), "ms": (13, 1_000_000)}
_DIGITS_TO_UNIT = {d: u for u, (d, _) in _TS_UNITS.items()}


class _Tables:
    """The converter's two growing tables, each a `Spool` (in memory up to a block, then on disk): rows (event
    records) and one entry per event/snapshot line for the quality checks: (line, kind, local_ts, exch_ts,
    id0, id1, id2, first row)."""

    def __init__(self, rows: int, msgs: int, mem_rows: int, tmp_dir):
        self.rows = S.Spool(mem_rows, np.uint64, initial=rows, tmp_dir=tmp_dir)
        self.msgs = S.Spool(max(mem_rows // 4, 1), np.int64, initial=msgs, tmp_dir=tmp_dir)
        self.margin = max(8, min(P.ROW_MARGIN, mem_rows // 2))  # a trade/ticker/mark line needs <= 3 rows

    def add(self, rows: list[tuple], line, kind, local, exch, id0=-1, id1=-1, id2=-1) -> None:
        """One message and its rows (ev, exch_ts, local_ts, px, qty[, ival]); ValueError (nothing added) when a
        row's numbers cannot be market data."""
        arr = np.array([(*r[:5], 0, r[5] if len(r) > 5 else 0, 0.0) for r in rows], event_dtype)
        bad = np.flatnonzero(bad_values(arr["ev"], arr["px"], arr["qty"]))
        if len(bad):
            raise ValueError(value_problem(*(int(arr["ev"][bad[0]]), arr["px"][bad[0]], arr["qty"][bad[0]])))
        self.add_msg(line, kind, local, exch, id0, id1, id2)
        if len(arr):
            self.rows.append(arr)

    def add_msg(self, line, kind, local, exch, id0=-1, id1=-1, id2=-1) -> None:
        self.msgs.room(1)
        self.msgs.buf[self.msgs.n] = (line, kind, local, exch, id0, id1, id2, self.rows.total)
        self.msgs.n += 1


class _NotJson(ValueError):
    pass


def _not_json(token: str):
    raise _NotJson(f"bare {token} is not a JSON number")


class _StopReading(Exception):
    """Strict mode met a bad line (already recorded in the report)."""


class _Converter:
    def __init__(self, path, opt, combined, ts_unit, strict, mark_price_time, mem_rows=0, tmp_dir=None):
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
        mem_rows = mem_rows or S.BLOCK_ROWS
        self.mem_rows, self.tmp_dir = mem_rows, tmp_dir
        self.t = _Tables(max(1 << 16, size // 4), max(1 << 12, size // 16), mem_rows, tmp_dir)
        self.line_no = 0
        self.scratch = np.empty((3, P.N_KEYS), np.int64)

    # -- the slow path: exact reference semantics plus tolerant handling of odd lines ------------------
    def _bad(self, reason: str) -> None:
        self.report.malformed.append((self.line_no, reason))
        if self.strict:
            raise _StopReading

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
                msg = json.loads(body, parse_constant=_not_json)
            except ValueError as exc:
                return self._bad(f"invalid JSON{' (%s)' % exc if isinstance(exc, _NotJson) else ''}")
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
                raise _StopReading

    def _event(self, d, local) -> None:
        e = d["e"]
        rows: list[tuple] = []
        kind, ids = P.KIND_OTHER, (-1, -1, -1)
        if e in (W.TRADE, W.DEPTH_UPDATE, W.MARK_PRICE_UPDATE, W.BOOK_TICKER):
            self._check_symbol(d)
        if e == W.TRADE:
            kind = P.KIND_TRADE
            x = int(d["T"]) * 1_000_000
            if d["X"] != W.MARKET_TRADE:
                ids = (int(d.get("t", -1)), 1, -1)
            else:
                ids = (int(d.get("t", -1)), -1, -1)
                side = SELL_EVENT if d["m"] else BUY_EVENT
                rows.append((TRADE_EVENT | side, x, local, number(d["p"]), number(d["q"])))
        elif e == W.DEPTH_UPDATE:
            kind = P.KIND_DEPTH
            x = int(d["T"]) * 1_000_000
            rows += [(DEPTH_EVENT | BUY_EVENT, x, local, number(p), number(q)) for p, q in d["b"]]
            rows += [(DEPTH_EVENT | SELL_EVENT, x, local, number(p), number(q)) for p, q in d["a"]]
            ids = (int(d["U"]), int(d["u"]), int(d["pu"]))
        elif e == W.MARK_PRICE_UPDATE:
            kind = P.KIND_MARK
            x = int(d["E" if self.mark_use_e else "T"]) * 1_000_000
            if self.opt_m:
                # with E timestamps the funding-rate row keeps its funding time T in ival (0 otherwise: x is T)
                nft = int(d["T"]) * 1_000_000 if self.mark_use_e else 0
                rows += [(100, x, local, number(d["i"]), 0.0), (101, x, local, number(d["p"]), 0.0),
                         (102, x, local, number(d["r"]), 0.0, nft)]
        elif e == W.BOOK_TICKER:
            kind = P.KIND_TICKER
            x = int(d["T"]) * 1_000_000
            if self.opt_t:
                rows += [(103, x, local, number(d["b"]), number(d["B"])),
                         (104, x, local, number(d["a"]), number(d["A"]))]
            ids = (int(d.get("u", -1)), -1, -1)
        else:
            x = -1
            self.report.ignored_events += 1
        self.t.add(rows, self.line_no, kind, local, x, *ids)

    def _snapshot(self, msg, local) -> None:
        x = int(msg["T"]) * 1_000_000
        rows: list[tuple] = []
        for side, key in ((BUY_EVENT, "bids"), (SELL_EVENT, "asks")):
            levels = msg[key]
            if len(levels) > 0:
                rows.append((DEPTH_CLEAR_EVENT | side, x, local, number(levels[-1][0]), 0.0))
                rows += [(DEPTH_SNAPSHOT_EVENT | side, x, local, number(p), number(q)) for p, q in levels]
        self.t.add(rows, self.line_no, P.KIND_SNAPSHOT, local, x, int(msg.get("lastUpdateId", -1)))

    # -- driving the fast path over a decompressed buffer ------------------------------------------------
    def feed(self, buf: np.ndarray, final: bool) -> int:
        """Consume complete lines of buf (all of it if final); return the number of bytes consumed."""
        pos, end = 0, len(buf)
        rows, msgs, margin = self.t.rows, self.t.msgs, self.t.margin
        while pos < end:
            rows.room(margin)
            msgs.room(1)
            ru, mb = rows.buf, msgs.buf
            start, n0, m0 = pos, rows.n, msgs.n
            status, pos, self.line_no, rows.n, msgs.n = P.parse_lines(
                buf, pos, end, final, self.line_no, self.ts_digits, self.ts_mul, self.combined, self.opt_m,
                self.opt_t, self.mark_use_e, self.sym_bytes, ru, ru.view(np.int64), ru.view(np.float64), rows.n,
                margin, rows.base, *(mb[:, c] for c in range(8)), msgs.n, self.scratch)
            if rows.n > n0:
                new = ru[n0: rows.n]
                bad = np.flatnonzero(bad_values(new[:, 0], new.view(np.float64)[:, 3], new.view(np.float64)[:, 4]))
                if len(bad):  # undo from the message holding it on; the slow path names and skips it
                    j = int(np.searchsorted(mb[m0: msgs.n, 7], rows.base + n0 + bad[0], "right")) - 1 + m0
                    rows.n, msgs.n = int(mb[j, 7]) - rows.base, j
                    skip = j - m0  # every line the kernel consumed has one message
                    pos = start if skip == 0 else start + int(np.flatnonzero(buf[start:pos] == 10)[skip - 1]) + 1
                    self.line_no = int(mb[j, 0]) - 1
                    status = P.ST_FALLBACK
            if status == P.ST_DONE:
                break
            if status == P.ST_FULL:
                continue
            line_end = P.line_end(buf, pos, end)
            self._slow_line(buf[pos:line_end].tobytes())
            pos = line_end + 1
        return min(pos, end)

    def run(self) -> None:
        """Read the whole file into the tables; in strict mode stop at the first bad line (the checks of what
        was read so far then decide which problem comes first)."""
        try:
            self._read()
        except _StopReading:
            pass
        self.report.lines = self.line_no
        self.rows, self.msgs = self.t.rows.finish(), self.t.msgs.finish()

    def _read(self) -> None:
        from ..progress import progress_bar

        size = os.path.getsize(self.path)
        with progress_bar(size, f"Reading {self.path}") as bar:
            pending = b""
            skipping = False  # inside a line longer than MAX_LINE: its bytes are dropped up to its newline
            chunks = _decompressed_chunks(self.path, bar, self.report)
            try:
                for data in chunks:
                    if skipping:
                        nl = data.find(b"\n") + 1
                        if nl == 0:
                            continue
                        data, skipping = memoryview(data)[nl:], False
                    if pending:  # complete the line cut by the previous chunk without copying the whole chunk
                        nl = data.find(b"\n") + 1
                        if nl == 0:
                            pending += data
                            if len(pending) > MAX_LINE:
                                self._long_line()
                                pending, skipping = b"", True
                            continue
                        head = pending + data[:nl]
                        self.feed(np.frombuffer(head, np.uint8), final=False)
                        data = memoryview(data)[nl:]
                    buf = np.frombuffer(data, np.uint8)
                    used = self.feed(buf, final=False)
                    pending = bytes(buf[used:])  # < _OUT_CHUNK: only the branch above can exceed MAX_LINE
            finally:
                chunks.close()  # also when leaving early: stops the reader thread now, not at garbage collection
            if self.report.truncated and self.strict:
                raise DataQualityError("truncated gzip stream", path=self.path, line=self.line_no + 1)
            if skipping:
                return
            if pending:
                self.feed(np.frombuffer(pending, np.uint8), final=True)

    def _long_line(self) -> None:
        self.line_no += 1
        self._bad(f"line longer than {MAX_LINE:,} bytes (skipped unread)")


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
                    parts, size = [], 0
                    while raw and not stop.is_set():
                        if dec.eof:  # concatenated gzip members
                            dec = _zlib.decompressobj(31)
                        parts.append(dec.decompress(raw, _OUT_CHUNK))
                        size += len(parts[-1])
                        raw = dec.unused_data if dec.eof else dec.unconsumed_tail
                        if size >= _OUT_CHUNK:
                            q.put(b"".join(parts))
                            parts, size = [], 0
                    if parts:
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


def _msg_blocks(m: NDArray, nrows: int, mem_rows: int):
    """The message table in blocks: (offset, block, first row of the next block)."""
    for a, b in S.blocks(len(m), max(1, mem_rows // 8)):
        yield a, m[a:b], int(m[b, 7]) if b < len(m) else nrows
        S.release(m)


class _BookCheck:
    """Replays the depth stream as the output holds it, in a background thread, counting messages that leave the
    book crossed: with `resync` as a synced consumer would (only applicable diffs, whole-book resets at each
    snapshot, bridging diffs after it), else as the reference conversion does (every kept diff and snapshot in
    arrival order, a snapshot clearing only the price range it covers)."""

    def __init__(self, conv: _Converter, apply, defer_to, resync: bool, drop):
        import threading

        self.report, self.apply, self.defer_to, self.resync, self.drop = conv.report, apply, defer_to, resync, drop
        self.rows, self.msgs, self.mem_rows = conv.rows, conv.msgs, conv.mem_rows  # before any resync
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            rows = self.rows
            ev, key, qty = rows[:, 0], rows.view(np.float64)[:, 3], rows.view(np.float64)[:, 4]
            book, crossed_at = book_new(), np.empty(10, np.int64)
            deferred: dict[int, list[tuple]] = {}
            for a, m, next_row in _msg_blocks(self.msgs, len(rows), self.mem_rows):
                kind, line, row = m[:, 1], m[:, 0], m[:, 7]
                ends = np.append(row[1:], next_row)
                if not self.resync:
                    book_msg = (kind == P.KIND_SNAPSHOT) | (kind == P.KIND_DEPTH)
                    sel = np.nonzero(book_msg & ~self.drop[a: a + len(m)])[0]
                    if len(sel):
                        book = book_apply(*book, ev, key, qty, row[sel], ends[sel], line[sel], False, 0.0, False,
                                          crossed_at)
                    S.release(rows)
                    continue
                sel = np.nonzero((kind == P.KIND_SNAPSHOT) | self.apply[a: a + len(m)])[0]
                spans = np.stack([row[sel], ends[sel], line[sel]], 1)
                # bridging diffs wait for their snapshot: only those and the snapshots they wait for are moved
                moved = np.array([*self.defer_to, *self.defer_to.values()], np.int64)
                pieces, start = [], 0
                for i in np.nonzero(np.isin(sel + a, moved))[0].tolist():
                    pieces.append(spans[start:i])
                    start = i + 1
                    j, span = a + int(sel[i]), tuple(spans[i].tolist())
                    if j in self.defer_to:
                        deferred.setdefault(self.defer_to[j], []).append(span)
                    else:
                        pieces.append(np.array([span, *deferred.pop(j, [])], np.int64))
                pieces.append(spans[start:])
                st, en, ln = np.concatenate(pieces).T.copy()
                if len(st):
                    book = book_apply(*book, ev, key, qty, st, en, ln, True, 0.0, False, crossed_at)
                S.release(rows)
            crossed = int(book[-1][4])
            self.result = crossed, crossed_at[: min(crossed, len(crossed_at))]
        except BaseException as exc:  # re-raised in join()
            self.error = exc

    def join(self):
        self.thread.join()
        if self.error is not None:
            raise self.error
        crossed, lines = self.result
        self.report.crossed_book_count, self.report.crossed_book_lines = crossed, lines.tolist()


def _fill_report(conv: _Converter, initial_last_u):
    """Message-level checks, block by block over the message table; returns the depth sync's (apply, defer_to)
    and a bool per message: a repeated trade or depth diff."""
    rep = conv.report
    names = {P.KIND_DEPTH: "depthUpdate", P.KIND_TRADE: "trade", P.KIND_TICKER: "bookTicker",
             P.KIND_MARK: "markPriceUpdate", P.KIND_SNAPSHOT: "snapshot", P.KIND_ERROR: "rest_error",
             P.KIND_OTHER: "other"}
    st = np.zeros(21, np.int64)  # see msg_checks
    st[0] = np.iinfo(np.int64).max  # min(local_ts - exch_ts) over the rows: a message's rows share both
    sync = DepthSync(len(conv.msgs), rep, initial_last_u)
    for a, m, next_row in _msg_blocks(conv.msgs, len(conv.rows), conv.mem_rows):
        flags = np.empty(len(m), np.uint8)
        msg_checks(m, next_row, flags, st)
        if flags.any():
            line = m[:, 0]
            rep.non_market_trades += line[(flags & 1) != 0].tolist()
            rep.non_monotonic_exch_lines += line[(flags & 2) != 0].tolist()
            rep.duplicate_lines += line[(flags & 4) != 0].tolist()
            sync.duplicate[a: a + len(m)] |= (flags & 4) != 0
        sync.feed(a, *(m[:, c] for c in (1, 0, 2, 4, 5, 6)))
    counts = st[14:21]
    rep.messages = {names[k]: int(counts[k]) for k in names if counts[k]}
    rep.ignored_events = int(counts[P.KIND_OTHER])
    rep.min_latency_ns = int(st[1]) if st[2] else None
    rep.negative_latency_messages = int(st[3])
    conv.row_min_latency = int(st[0])
    apply, defer_to = sync.finish()
    rep.duplicate_lines.sort()
    return apply, defer_to, sync.duplicate


def _rewrite(conv: _Converter, drop, resync: bool, apply, defer_to):
    """Rows without those of the messages in `drop`; with `resync` (gap_policy='resync') also drop depth diffs
    that cannot be applied, replace each snapshot's partial clears by full-side clears (px=NaN), and move
    buffered bridging diffs to the snapshot's local time, after it."""
    rows = conv.rows
    out = S.Spool(conv.mem_rows, np.uint64, initial=min(len(rows), conv.mem_rows), tmp_dir=conv.tmp_dir)

    def copy(a, b, keep):  # rows a:b where keep (a bool slice of the same length), in bounded pieces
        for c, d in S.blocks(b - a, conv.mem_rows):
            out.append(rows[a + c: a + d][keep[c:d]])

    deferred: dict[int, list[tuple]] = {}
    for a, m, next_row in _msg_blocks(conv.msgs, len(rows), conv.mem_rows):
        kind, local, row = m[:, 1], m[:, 2], m[:, 7]
        ends = np.append(row[1:], next_row)
        r0 = int(row[0])
        keep = np.ones(next_row - r0, bool)
        for j in np.nonzero(drop[a: a + len(m)])[0].tolist():
            keep[row[j] - r0: ends[j] - r0] = False
        for j in np.nonzero(kind == P.KIND_DEPTH)[0].tolist() if resync else ():
            if not apply[a + j] or a + j in defer_to:
                keep[row[j] - r0: ends[j] - r0] = False
                if apply[a + j]:
                    deferred.setdefault(defer_to[a + j], []).append((int(row[j]), int(ends[j])))
        start = r0
        for j in np.nonzero(kind == P.KIND_SNAPSHOT)[0].tolist() if resync else ():
            s0, s1 = int(row[j]), int(ends[j])
            copy(start, s0, keep[start - r0: s0 - r0])
            snap = np.array(rows[s0:s1])
            clears = (snap[:, 0] & np.uint64(0xFF)) == DEPTH_CLEAR_EVENT
            snap.view(np.float64)[clears, 3] = np.nan
            out.append(snap)
            for r, e in deferred.pop(a + j, []):
                moved = np.array(rows[r:e])
                moved.view(np.int64)[:, 2] = local[j]
                out.append(moved)
            start = s1
        copy(start, next_row, keep[start - r0:])
        S.release(rows)
    conv.rows = out.finish()


def _correct_latency(rows: NDArray, base_latency, min_lat: int | None) -> int:
    """The reference's correct_local_timestamp, block by block over (n, 8) rows (min_lat: the smallest
    latency when known). A float shift is applied here; an exact int shift is returned for the event-order
    merge to apply as it writes (the merge's comparisons do not change under it)."""
    di = rows.view(np.int64)
    if min_lat is None:
        min_lat = np.iinfo(np.int64).max
        for a, b in S.blocks(len(rows)):
            min_lat = S.min_latency(di, a, b, min_lat)
            S.release(rows)
    if len(rows) == 0 or min_lat >= 0:
        return 0
    print("local_timestamp is ahead of exch_timestamp by", -min_lat)
    if not isinstance(base_latency, (float, np.floating)):
        return -min_lat + int(base_latency)
    for a, b in S.blocks(len(rows)):
        S.shift_float(di, a, b, float(-min_lat) + float(base_latency))
        S.release(rows)
    return 0


def _save_npz(path: str, data: NDArray) -> None:
    """np.savez_compressed(path, data=data), atomically (see _atomic), streaming a memory-mapped array in
    bounded pieces."""
    if not isinstance(data, np.memmap):
        _atomic.savez(path, data=data)
        return
    import zipfile

    with _atomic.atomic_writer(_atomic.npz_path(path), "wb") as out, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf, \
            zf.open("data.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_2_0(f, np.lib.format.header_data_from_array_1_0(data))
        for a, b in S.blocks(len(data)):
            f.write(memoryview(np.ascontiguousarray(data[a:b])).cast("B"))
            S.release(data)


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
    mark_price_time: Literal["T", "E"] = "E",
    duplicates: Literal["drop", "keep"] = "drop",
    initial_last_u: Optional[int] = None,
    return_report: bool = False,
    tmp_dir: Optional[str] = None,
):
    """Convert a raw Binance USD-M feed file (gzip or plain text) into an `event_dtype` array.

    Same signature, defaults and output as hftbacktest 2.4.4 (`opt`: 'm' mark/index/funding rows 100-102,
    't' bookTicker rows 103/104). `buffer_size` is accepted for compatibility only: tables grow as needed.

    Bad numbers (non-finite, negative, out of range) skip their line, repeated trades/diffs are dropped (both
    counted in the report) and mark-price rows take the event time; otherwise the output is the reference's.
    Extras (keyword-only):
      ts_unit: unit of the local timestamps ('auto' detects 19/16/13 digits = ns/us/ms; always stored in ns).
      strict: raise DataQualityError naming the line at the first problem instead of skipping and warning.
      gap_policy='resync': drop depth diffs that cannot be applied (gaps, stale, duplicates), clear whole
        sides (DEPTH_CLEAR with px=NaN) at each resync snapshot and replay the bridging diffs after it.
      mark_price_time='T': time markPriceUpdate rows (opt 'm') by their `T` as the reference does; `T` is the
        next funding time, up to 8 h ahead, which shifts every local timestamp by as much. Default 'E': the
        event time.
      duplicates='keep': keep repeated messages (a trade id not above the highest seen, a depth diff repeating
        or older than the last applied one) as the reference does; by default they are dropped and counted.
      initial_last_u: last `u` of the previous file, so its first diff continues the sequence.
      return_report: return `(data, QualityReport)` instead of `data`.
      tmp_dir: where inputs larger than memory blocks spill (default: the system temp dir). The result is then
        a memory map of an unlinked temporary file.
    """
    del buffer_size  # kept for signature compatibility; storage grows on demand
    if gap_policy not in ("none", "resync"):
        raise ValueError(f"gap_policy must be 'none' or 'resync', not {gap_policy!r}")
    if duplicates not in ("drop", "keep"):
        raise ValueError(f"duplicates must be 'drop' or 'keep', not {duplicates!r}")
    if not os.path.exists(input_filename):
        raise FileNotFoundError(input_filename)
    conv = _Converter(input_filename, opt, combined_stream, ts_unit, strict, mark_price_time, tmp_dir=tmp_dir)
    conv.run()
    conv.report.rows = len(conv.rows)
    apply, defer_to, duplicate = _fill_report(conv, initial_last_u)
    drop = duplicate if duplicates == "drop" else np.zeros_like(duplicate)
    conv.report.duplicates_dropped = duplicates == "drop"
    conv.report.gap_policy = gap_policy
    # runs in a thread (nogil) while the rest proceeds
    book_check = _BookCheck(conv, apply, defer_to, gap_policy == "resync", drop)
    rewritten = gap_policy == "resync" or bool(drop.any())
    if rewritten:
        _rewrite(conv, drop, gap_policy == "resync", apply, defer_to)
    if strict:
        book_check.join()
        warn_or_raise(conv.report, strict)

    print("Correcting the latency")
    rows = conv.rows
    shift = _correct_latency(rows, base_latency, None if rewritten else conv.row_min_latency)
    print("Correcting the event order")
    out = S.event_order(rows, conv.mem_rows, conv.tmp_dir, shift)
    data = out.reshape(-1).view(event_dtype)
    if not strict:
        book_check.join()
        warn_or_raise(conv.report, strict)
    if output_filename is not None:
        print("Saving to %s" % output_filename)
        _save_npz(output_filename, data)
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
