"""Data-quality checks for raw Binance USD-M feeds: sequence gaps (U/u/pu), duplicates, crossed books,
non-monotonic exchange time, negative feed latency, malformed lines. Line numbers are 1-based."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ..binance import depth
from ..errors import DataQualityError
from ..kernels.borrow import borrowed
from ..types import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, LOCAL_EVENT, SELL_EVENT
from ._parse import KIND_DEPTH, KIND_ERROR, KIND_MARK, KIND_SNAPSHOT, KIND_TICKER, KIND_TRADE, float_bits, unowned

_KIND_NAMES = {KIND_DEPTH: "depthUpdate", KIND_TRADE: "trade", KIND_TICKER: "bookTicker",
               KIND_MARK: "markPriceUpdate", KIND_SNAPSHOT: "snapshot"}
_SHOW = 10  # line numbers listed per issue in summaries


class DataQualityWarning(UserWarning):
    """Issued by `convert` (non-strict) when the input has problems it skipped or could not repair."""


@dataclass
class Gap:
    start_line: int
    start_local_ts: int
    end_line: int | None  # line where sync was regained (None: never, up to end of file)
    end_local_ts: int | None
    kind: str  # pu_mismatch | snapshot_too_old | snapshot_ahead | unsynced_at_eof
    details: str


@dataclass
class QualityReport:
    """What `convert(..., return_report=True)` and `hftbacktest validate` tell about one input."""

    path: str = ""
    lines: int = 0
    messages: dict[str, int] = field(default_factory=dict)
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    truncated: bool = False
    ts_unit: str = "ns"
    symbols: list[str] = field(default_factory=list)
    symbol_mix_lines: list[int] = field(default_factory=list)
    rest_errors: list[tuple[int, str]] = field(default_factory=list)
    ignored_events: int = 0
    non_market_trades: list[int] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    sync_lines: list[int] = field(default_factory=list)
    stale_dropped: int = 0
    buffered_unsynced: int = 0
    duplicate_lines: list[int] = field(default_factory=list)
    non_monotonic_exch_lines: list[int] = field(default_factory=list)
    negative_latency_messages: int = 0
    min_latency_ns: int | None = None
    crossed_book_lines: list[int] = field(default_factory=list)
    crossed_book_count: int = 0
    rows: int | None = None  # event rows read (None: not a conversion)
    duplicates_dropped: bool = False
    gap_policy: str = "none"  # the conversion's: the crossed-book check replays the book its output holds

    @property
    def ok(self) -> bool:
        """True when nothing had to be skipped and the depth stream has no gap, duplicate or crossed book."""
        return not self.problems()

    def problems(self) -> list[str]:
        out = []

        def lines(xs):
            shown = ", ".join(str(x) for x in xs[:_SHOW])
            return shown + (f", ... ({len(xs)} in all)" if len(xs) > _SHOW else "")

        if self.rows == 0:
            out.append("the input is empty" if self.lines == 0 else
                       "no event rows: nothing in the input converts to market data")
        if self.truncated:
            out.append("truncated gzip stream (the last line may be cut; everything before it was kept)")
        if self.malformed:
            out.append(f"{len(self.malformed)} malformed line(s) skipped: "
                       + "; ".join(f"line {n}: {r}" for n, r in self.malformed[:_SHOW])
                       + (" ..." if len(self.malformed) > _SHOW else ""))
        if self.symbol_mix_lines:
            out.append(f"symbols mixed in one file {self.symbols}: lines {lines(self.symbol_mix_lines)}")
        for g in self.gaps:
            end = f"resynced at line {g.end_line}" if g.end_line else "never resynced"
            out.append(f"depth gap ({g.kind}) at line {g.start_line}, {end}: {g.details}")
        if self.duplicate_lines:
            what = "dropped" if self.duplicates_dropped else "kept"
            out.append(f"{len(self.duplicate_lines)} duplicate message(s) {what}: lines {lines(self.duplicate_lines)}")
        if self.non_monotonic_exch_lines:
            out.append(f"exchange time goes backwards within a stream at lines {lines(self.non_monotonic_exch_lines)}")
        if self.crossed_book_count:
            hint = "" if self.gap_policy == "resync" else (
                " (a snapshot applied at its arrival can revert newer diffs or keep levels a gap left stale; "
                "gap_policy='resync', CLI --gap-policy resync, resets the book at each snapshot)")
            out.append(f"crossed book (best bid >= best ask) after {self.crossed_book_count} message(s), "
                       f"first at lines {self.crossed_book_lines}{hint}")
        if self.rest_errors:
            out.append("REST error responses: " + "; ".join(f"line {n}: {m}" for n, m in self.rest_errors[:_SHOW]))
        return out

    def summary(self) -> str:
        msgs = ", ".join(f"{k} {v:,}" for k, v in self.messages.items())
        head = [f"{self.path}: {self.lines:,} lines ({msgs}); local timestamps in {self.ts_unit}"]
        if self.min_latency_ns is not None:
            head.append(f"feed latency min {self.min_latency_ns / 1e6:.3f} ms; "
                        f"{self.negative_latency_messages:,} message(s) with negative latency "
                        "(local clock behind the exchange; corrected by the local-timestamp shift)")
            if self.min_latency_ns < -3_600_000_000_000 and self.messages.get("markPriceUpdate"):
                head.append("hint: markPriceUpdate's T is the next funding time, which shifts every local_ts by "
                            "hours; convert with mark_price_time='E' (CLI: --mark-price-time E) to avoid it")
        head.append(f"depth sync: {len(self.sync_lines)} (re)sync point(s) at lines {self.sync_lines[:_SHOW]}, "
                    f"{self.stale_dropped} stale diff(s) before a snapshot, {len(self.gaps)} gap(s)")
        if self.non_market_trades:
            head.append(f"{len(self.non_market_trades)} non-MARKET trade(s) (no rows, as in the reference)")
        probs = self.problems()
        head += ["PROBLEM: " + p for p in probs] if probs else ["no problems found"]
        return "\n".join(head)


# --- numbers a feed row may hold -------------------------------------------------------------------------

# No listed contract's price or quantity comes near 1e15, and float64 no longer resolves a 0.1 tick there.
MAX_VALUE = 1e15
_FUNDING = 102  # funding rate rows (opt 'm'): the value may be negative


def bad_values(ev: np.ndarray, px: np.ndarray, qty: np.ndarray) -> np.ndarray:
    """Rows whose numbers cannot be market data: a price that is not finite, not positive (a funding rate may
    be negative) or not below MAX_VALUE; a quantity that is not finite, negative or not below MAX_VALUE."""
    with np.errstate(invalid="ignore"):  # NaN compares False
        qty_ok = (qty >= 0) & (qty < MAX_VALUE)
        ok = qty_ok & (px > 0) & (px < MAX_VALUE)
        if not ok.all():  # the rare case (or funding rows): a second look at signed values
            ok |= qty_ok & ((ev & np.uint64(0xFF)) == _FUNDING) & (np.abs(px) < MAX_VALUE)
    return ~ok


def value_problem(ev: int, px: float, qty: float) -> str:
    """What bad_values found in one row, for the report."""
    what = "funding rate" if (ev & 0xFF) == _FUNDING else "price"
    for name, v in ((what, px), ("quantity", qty)):
        if not np.isfinite(v):
            return f"{name} is {v} (not a finite number)"
        if abs(v) >= MAX_VALUE:
            return f"{name} {v:g} is out of range (>= {MAX_VALUE:g})"
    if qty < 0:
        return f"quantity {qty} is negative"
    return f"price {px} is not positive"


def warn_or_raise(report: QualityReport, strict: bool) -> None:
    probs = report.problems()
    if not probs:
        return
    if strict:
        line = _first_problem_line(report)
        raise DataQualityError(probs[0], path=report.path, line=line)
    warnings.warn(DataQualityWarning(f"{report.path}: " + " | ".join(probs)), stacklevel=3)


def _first_problem_line(r: QualityReport) -> int | None:
    cands = [n for n, _ in r.malformed[:1]] + r.symbol_mix_lines[:1] + [g.start_line for g in r.gaps[:1]]
    cands += r.duplicate_lines[:1] + r.crossed_book_lines[:1] + r.non_monotonic_exch_lines[:1] + [n for n, _ in r.rest_errors[:1]]
    return min(cands) if cands else None


# --- depth sequence (Binance USD-M: pu must equal the previous u; first diff after a snapshot straddles it)

UNSYNCED, WAIT_BRIDGE, SYNCED = 0, 1, 2


class DepthSync:
    """The sync state machine over depth diffs and snapshots, fed the message table block by block in file order.

    Fills `apply` (bool per message: the depth diff may be applied), `defer_to` ({message index: index of the
    snapshot whose local time a buffered bridging diff must wait for}) and the report's gap/sync/duplicate
    fields. A message is a tuple (index, line, local_ts, U, u, pu); a snapshot carries its lastUpdateId as U.
    """

    def __init__(self, n_messages: int, report: QualityReport, initial_last_u: int | None = None):
        self.apply = np.zeros(n_messages, bool)
        self.duplicate = np.zeros(n_messages, bool)  # repeated depth diffs here, repeated trades by msg_checks
        self.defer_to: dict[int, int] = {}
        self.report = report
        self.state, self.last_u, self.last_pu = UNSYNCED, -1, -1
        if initial_last_u is not None:
            self.state, self.last_u = SYNCED, int(initial_last_u)
        self.buf: list[tuple] = []
        self.snap: tuple | None = None
        self.open_gap: Gap | None = None
        self.duplicates = 0
        self.depth_seen = 0
        self.last_depth: tuple | None = None

    def feed(self, offset: int, kind, line, local, U, u, pu) -> None:
        """Messages offset .. offset+len(kind)-1 (column arrays of one block of the message table)."""
        sel = np.nonzero((kind == KIND_DEPTH) | (kind == KIND_SNAPSHOT))[0]
        kind, line, local, U, u, pu = (c[sel] for c in (kind, line, local, U, u, pu))
        j, n = 0, len(sel)
        while j < n:
            if self.state == SYNCED:  # the common case, in numba: diffs that simply continue the sequence
                j, self.last_u, self.last_pu, applied, last = sync_run(kind, U, u, pu, sel, offset, j, self.last_u,
                                                                      self.last_pu, self.apply)
                if applied:
                    self.depth_seen += applied
                    self.last_depth = self._msg(sel, offset, last, line, local, U, u, pu)
                if j >= n:
                    break
            msg = self._msg(sel, offset, j, line, local, U, u, pu)
            if kind[j] == KIND_SNAPSHOT:
                self._snapshot(msg)
            else:
                self.depth_seen += 1
                self.last_depth = msg
                if self.state == SYNCED:
                    self._synced(msg)
                else:
                    self.buf.append(msg)
                    if self.state == WAIT_BRIDGE:
                        self._try_bridge()
            j += 1

    @staticmethod
    def _msg(sel, offset, j, line, local, U, u, pu) -> tuple:
        return (offset + int(sel[j]), int(line[j]), int(local[j]), int(U[j]), int(u[j]), int(pu[j]))

    def finish(self):
        rep = self.report
        if self.state != SYNCED:
            if self.buf:
                self._open(self.buf[0], "unsynced_at_eof", f"{len(self.buf)} depth message(s) never applied")
            elif self.open_gap is None and self.last_depth is not None:
                self._open(self.last_depth, "unsynced_at_eof", "no usable snapshot")
        rep.buffered_unsynced = self.depth_seen - int(np.count_nonzero(self.apply)) - self.duplicates \
            - rep.stale_dropped
        return self.apply, self.defer_to

    def _open(self, msg, kind_, details):
        if self.open_gap is None:
            self.open_gap = Gap(msg[1], msg[2], None, None, kind_, details)
            self.report.gaps.append(self.open_gap)

    def _synced_at(self, msg):
        self.report.sync_lines.append(msg[1])
        if self.open_gap is not None:
            self.open_gap.end_line, self.open_gap.end_local_ts = msg[1], msg[2]
            self.open_gap = None

    def _duplicate(self, msg):
        self.duplicate[msg[0]] = True
        self.duplicates += 1
        self.report.duplicate_lines.append(msg[1])

    def _synced(self, msg):
        i, _, _, U, u, pu = msg
        verdict = depth.next_diff(U, u, pu, self.last_u, self.last_pu)
        if verdict == depth.REPEAT:
            self._duplicate(msg)  # a repeat of the last diff or a replayed old one (e.g. after a reconnect)
        elif verdict == depth.APPLY:
            self.apply[i] = True
            self.last_u, self.last_pu = u, pu
        else:
            self._open(msg, "pu_mismatch", f"expected pu={self.last_u}, got pu={pu}")
            self.state = UNSYNCED
            self.buf = [msg]

    def _snapshot(self, msg):
        if self.state == SYNCED:
            if depth.snapshot_continues(msg[3], self.last_u):
                return  # redundant snapshot: we are already in sync
            self._open(msg, "snapshot_ahead", f"lastUpdateId {msg[3]} > last applied u {self.last_u}")
            self.buf = []
        self.snap = msg
        self.state = WAIT_BRIDGE
        self._try_bridge()

    def _try_bridge(self):
        snap_i, snap_u = self.snap[0], self.snap[3]
        buf = self.buf
        while buf and depth.stale(buf[0][4], snap_u):
            self.report.stale_dropped += 1
            buf.pop(0)
        if not buf:
            return
        first = buf[0]
        if depth.bridges(first[3], first[4], snap_u):
            self.apply[first[0]] = True
            if snap_i > first[0]:
                self.defer_to[first[0]] = snap_i
            self.last_u, self.last_pu = first[4], first[5]
            self.state = SYNCED
            self._synced_at(self.snap)
            rest, self.buf = buf[1:], []
            for m in rest:
                if self.state == SYNCED:
                    if snap_i > m[0]:
                        self.defer_to[m[0]] = snap_i
                    self._synced(m)
                else:
                    self.buf.append(m)
        else:
            self._open(first, "snapshot_too_old", f"lastUpdateId {snap_u} < first buffered U {first[3]}")
            self.state = UNSYNCED
            self.snap = (snap_i, 0, 0, -1, 0, 0)


@borrowed(nogil=True)
def sync_run(kind, U, u, pu, sel, offset, j, last_u, last_pu, apply):
    """DepthSync in its SYNCED state over depth/snapshot messages j, j+1, ... (message index offset + sel[j]):
    applies the diffs `binance.depth.next_diff` calls APPLY (pu is the last u, not a repeat of the last one)
    until a snapshot or any other diff, which the Python state machine takes. Returns (that position, last u, last pu, diffs applied,
    position of the last one)."""
    applied = 0
    last = -1
    while j < len(kind):
        if kind[j] != KIND_DEPTH or pu[j] != last_u or (U[j] <= last_u and u[j] == last_u and pu[j] == last_pu):
            break
        apply[offset + sel[j]] = True
        last_u = u[j]
        last_pu = pu[j]
        applied += 1
        last = j
        j += 1
    return j, last_u, last_pu, applied, last


@borrowed(nogil=True)
def msg_checks(m, next_row, flags, st):
    """The per-message checks over one block of the message table m (rows: line, kind, local_ts, exch_ts, id0,
    id1, id2, first row; next_row = first row of the next block), carrying state across blocks in st:
    [min row latency, min latency, any latency, negative latencies, last exch_ts per kind 1-4 (4 slots), seen per
    kind 1-4 (4 slots), last trade id, trade seen, message count per kind (7 slots)].
    flags[i] |= 1 non-MARKET trade, 2 exchange time going backwards within its stream, 4 repeated trade id (not
    above the highest one seen: trade ids increase, so a replay after a reconnect repeats lower ones)."""
    m = unowned(m)
    n = len(m)
    for i in range(n):
        kind = m[i, 1]
        local = m[i, 2]
        exch = m[i, 3]
        nxt = m[i + 1, 7] if i + 1 < n else next_row
        if nxt > m[i, 7] and local - exch < st[0]:
            st[0] = local - exch
        st[14 + kind] += 1
        f = 0
        if exch >= 0 and kind != KIND_ERROR and kind != 0:
            lat = local - exch
            if st[2] == 0 or lat < st[1]:
                st[1] = lat
            st[2] = 1
            if lat < 0:
                st[3] += 1
        if 1 <= kind <= 4:
            if st[7 + kind] != 0 and exch < st[3 + kind]:
                f |= 2
            st[3 + kind] = exch
            st[7 + kind] = 1
            if kind == KIND_TRADE:
                if m[i, 5] == 1:
                    f |= 1
                tid = m[i, 4]
                prev = st[12] if st[13] != 0 else tid - 1
                if tid <= prev and tid >= 0:
                    f |= 4
                st[12] = max(prev, tid)
                st[13] = 1
        flags[i] = f


# --- book replay (crossed-book check and last snapshot) -------------------------------------------------

_EMPTY = np.iinfo(np.int64).min


@borrowed(nogil=True)
def _slot(k, mask):
    h = np.uint64(k) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(40)) & mask


@borrowed(nogil=True)
def _h_find(keys, k):
    mask = len(keys) - 1
    i = _slot(k, mask)
    while keys[i] != _EMPTY:
        if keys[i] == k:
            return i
        i = (i + 1) & mask
    return -1 - i  # free slot where k would go


@borrowed(nogil=True)
def _h_delete(keys, vals, i):
    """Backward-shift deletion (linear probing keeps no tombstones)."""
    mask = len(keys) - 1
    j = i
    while True:
        j = (j + 1) & mask
        if keys[j] == _EMPTY:
            break
        home = _slot(keys[j], mask)
        # move keys[j] into the hole at i unless its home lies cyclically in (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
            keys[i] = keys[j]
            vals[i] = vals[j]
            i = j
    keys[i] = _EMPTY


@njit(cache=True, nogil=True)
def _h_fill(keys, vals, src_k, src_v, lo, hi):
    """Insert into the empty table (keys, vals) the entries of (src_k, src_v) with lo <= key <= hi; returns n."""
    n = 0
    for i in range(len(src_k)):
        k = src_k[i]
        if k != _EMPTY and lo <= k <= hi:
            j = -1 - _h_find(keys, k)
            keys[j] = k
            vals[j] = src_v[i]
            n += 1
    return n


@njit(cache=True, nogil=True)
def _h_rebuild(keys, vals, cap, lo, hi):
    """A table of capacity `cap` holding the entries with lo <= key <= hi."""
    nk = np.full(cap, _EMPTY, np.int64)
    nv = np.zeros(cap, np.float64)
    return nk, nv, _h_fill(nk, nv, keys, vals, lo, hi)


@borrowed(nogil=True)
def _heap_push(heap, size, v):
    """Push v on a min-heap held in heap[:size] (the caller makes sure size < len(heap)); returns the new size."""
    i = size
    heap[i] = v
    while i > 0:
        p = (i - 1) // 2
        if heap[p] <= heap[i]:
            break
        heap[p], heap[i] = heap[i], heap[p]
        i = p
    return size + 1


@borrowed(nogil=True)
def _heap_pop(heap, size):
    size -= 1
    heap[0] = heap[size]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and heap[c + 1] < heap[c]:
            c += 1
        if heap[i] <= heap[c]:
            break
        heap[i], heap[c] = heap[c], heap[i]
        i = c
    return size


@borrowed(nogil=True)
def _heap_compact(keys, heap, sign):
    """Rebuild a side's heap in place from the levels present (drops the stale entries lazy deletion leaves
    behind; the levels are fewer than the entries, so it fits). Returns the new size."""
    size = 0
    for k in keys:
        if k != _EMPTY:
            size = _heap_push(heap, size, sign * k)
    return size


@borrowed(nogil=True)
def _top(keys, heap, size, sign):
    """Best key of a side: lazily drop heap entries whose level is gone (heap holds sign*key)."""
    while size > 0:
        k = sign * heap[0]
        if _h_find(keys, k) >= 0:
            return k, size
        size = _heap_pop(heap, size)
    return (_EMPTY if sign < 0 else -_EMPTY - 1), size


@borrowed(nogil=True)
def _set_level(keys, vals, n, heap, hsize, k, q, zero_qty, sign):
    """Set one side's level k to q (removing it when q <= zero_qty); heap holds sign*key and has room for one
    more entry. Returns (levels, heap size), or (-1, heap size) with nothing changed when a new level needs a
    bigger table."""
    i = _h_find(keys, k)
    if q <= zero_qty:
        if i >= 0:
            _h_delete(keys, vals, i)
            n -= 1
    elif i >= 0:
        vals[i] = q
    else:
        if 2 * (n + 1) > len(keys):
            return -1, hsize
        keys[-1 - i] = k
        vals[-1 - i] = q
        n += 1
        if hsize > 4 * n + 1024:
            hsize = _heap_compact(keys, heap, sign)
        else:
            hsize = _heap_push(heap, hsize, sign * k)
    return n, hsize


@njit(cache=True, nogil=True)
def _grown(heap, size):
    out = np.empty(2 * len(heap), np.int64)
    for i in range(size):  # a loop, not a slice copy: compiles in a fraction of the time
        out[i] = heap[i]
    return out


@njit(cache=True, nogil=True)
def _clear_side(keys, vals, lo, hi):
    """Keep only the levels with lo <= key <= hi, in place (same capacity). Returns the number kept."""
    old_k = np.empty(len(keys), np.int64)
    old_v = np.empty(len(keys), np.float64)
    for i in range(len(keys)):
        old_k[i] = keys[i]
        old_v[i] = vals[i]
        keys[i] = _EMPTY
    return _h_fill(keys, vals, old_k, old_v, lo, hi)


@njit(cache=True, nogil=True)
def book_new():
    """An empty book for `book_apply`: (bid keys, bid qty, ask keys, ask qty, bid heap, ask heap, counters)
    with counters = [bid levels, ask levels, bid heap size, ask heap size, crossed messages]."""
    cap = 1024
    return (np.full(cap, _EMPTY, np.int64), np.zeros(cap, np.float64), np.full(cap, _EMPTY, np.int64),
            np.zeros(cap, np.float64), np.empty(cap, np.int64), np.empty(cap, np.int64), np.zeros(5, np.int64))


_GROW_BID_TABLE, _GROW_ASK_TABLE, _GROW_BID_HEAP, _GROW_ASK_HEAP = 1, 2, 3, 4


@borrowed(nogil=True)
def _apply_rows(bk, bv, ak, av, bheap, aheap, cnt, ev, key, qty, msg_start, msg_end, msg_line, full_clear, zero_qty,
                only_local, crossed_at, state):
    """`book_apply`'s loop on borrowed views of the book (no per-row reference counting), from message
    state[0], row state[1] (-1: its first row), state[2] = rows of that message touched the book. Returns 0 when
    every message is applied, else the table or heap that must grow before row state[1] (nothing of it applied)."""
    bk, bv, ak, av, bheap, aheap = unowned(bk), unowned(bv), unowned(ak), unowned(av), unowned(bheap), unowned(aheap)
    ev, key, qty = unowned(ev), unowned(key), unowned(qty)
    nb, na, hb, ha, crossed = cnt[0], cnt[1], cnt[2], cnt[3], cnt[4]
    m, r, touched = state[0], state[1], state[2] != 0
    # run-time values, not constants: a literal argument compiles a second specialisation of every callee
    bid, ask, lowest, highest = np.int64(-1), np.int64(1), np.int64(_EMPTY), np.int64(-_EMPTY - 1)
    status = 0
    while m < len(msg_start):
        if r < 0:
            r, touched = msg_start[m], False
        while r < msg_end[m]:
            e = ev[r]
            if not only_local or (e & LOCAL_EVENT) != 0:
                kind = e & 0xFF
                k = float_bits(key[r] + 0.0)  # -0.0 -> 0.0
                if kind == DEPTH_EVENT or kind == DEPTH_SNAPSHOT_EVENT:
                    q = qty[r]
                    if (e & BUY_EVENT) != 0:
                        if hb == len(bheap):
                            status = _GROW_BID_HEAP
                            break
                        n, hb = _set_level(bk, bv, nb, bheap, hb, k, q, zero_qty, bid)
                        if n < 0:
                            status = _GROW_BID_TABLE
                            break
                        nb = n
                    elif (e & SELL_EVENT) != 0:
                        if ha == len(aheap):
                            status = _GROW_ASK_HEAP
                            break
                        n, ha = _set_level(ak, av, na, aheap, ha, k, q, zero_qty, ask)
                        if n < 0:
                            status = _GROW_ASK_TABLE
                            break
                        na = n
                    touched = True
                elif kind == DEPTH_CLEAR_EVENT:
                    touched = True
                    whole = full_clear or np.isnan(key[r])
                    if (e & BUY_EVENT) != 0:  # keep bids strictly below the clear price
                        nb = _clear_side(bk, bv, lowest, lowest if whole else k - 1)
                    elif (e & SELL_EVENT) != 0:  # keep asks strictly above it
                        na = _clear_side(ak, av, highest if whole else k + 1, highest)
            r += 1
        if status != 0:
            break
        if touched and nb > 0 and na > 0:
            best_bid, hb = _top(bk, bheap, hb, bid)
            best_ask, ha = _top(ak, aheap, ha, ask)
            if best_bid >= best_ask:
                if crossed < len(crossed_at):
                    crossed_at[crossed] = msg_line[m]
                crossed += 1
        m += 1
        r = -1
    cnt[0], cnt[1], cnt[2], cnt[3], cnt[4] = nb, na, hb, ha, crossed
    state[0], state[1], state[2] = m, r, touched
    return status


@njit(cache=True, nogil=True)
def book_apply(bk, bv, ak, av, bheap, aheap, cnt, ev, key, qty, msg_start, msg_end, msg_line, full_clear,
               zero_qty, only_local, crossed_at):
    """Apply messages to a book from `book_new` (resumable: pass the returned book to the next call).

    Message i is rows msg_start[i]:msg_end[i] (messages may be given in any order); after each message the
    book is checked for best bid >= best ask, and the lines of the first len(crossed_at) crossings are kept.
    `full_clear` makes every clear row clear its whole side (as does a NaN price). A row with `qty <= zero_qty`
    removes its level. Levels live in open-addressing hash tables keyed by the price's int64 bit pattern (same
    order as the price for positive prices); the best of each side comes from a heap with lazy deletion.
    """
    state = np.array([0, -1, 0], np.int64)
    lowest, highest = np.int64(_EMPTY), np.int64(-_EMPTY - 1)  # not literals: one specialisation of _h_fill
    while True:
        status = _apply_rows(bk, bv, ak, av, bheap, aheap, cnt, ev, key, qty, msg_start, msg_end, msg_line,
                             full_clear, zero_qty, only_local, crossed_at, state)
        if status == 0:
            return bk, bv, ak, av, bheap, aheap, cnt
        if status == _GROW_BID_TABLE:
            bk, bv, n = _h_rebuild(bk, bv, 2 * len(bk), lowest, highest)
        elif status == _GROW_ASK_TABLE:
            ak, av, n = _h_rebuild(ak, av, 2 * len(ak), lowest, highest)
        elif status == _GROW_BID_HEAP:
            bheap = _grown(bheap, cnt[2])
        else:
            aheap = _grown(aheap, cnt[3])


def book_levels(book):
    """(bid prices, bid qty, ask prices, ask qty) of a book from `book_new`/`book_apply`."""
    bk, bv, ak, av, _, _, cnt = book
    return _h_items(bk, bv, cnt[0]) + _h_items(ak, av, cnt[1])


def replay_book(ev, key, qty, msg_start, msg_end, msg_line, full_clear, zero_qty, only_local, max_report):
    """Replay messages on an empty book (see `book_apply`).

    Returns (bid prices, bid qty, ask prices, ask qty, crossed count, line of the first `max_report` crossings).
    """
    crossed_at = np.empty(max_report, np.int64)
    book = book_apply(*book_new(), ev, key, qty, msg_start, msg_end, msg_line, full_clear, zero_qty, only_local,
                      crossed_at)
    crossed = int(book[-1][4])
    return book_levels(book) + (crossed, crossed_at[:min(crossed, max_report)])


@njit(cache=True, nogil=True)
def _h_items(keys, vals, n):
    px = np.empty(n, np.float64)
    q = np.empty(n, np.float64)
    pxi = px.view(np.int64)
    j = 0
    for i in range(len(keys)):
        if keys[i] != _EMPTY:
            pxi[j] = keys[i]
            q[j] = vals[i]
            j += 1
    return px, q
