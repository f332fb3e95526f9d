"""Data-quality checks for raw Binance USD-M feeds: sequence gaps (U/u/pu), duplicates, crossed books,
non-monotonic exchange time, negative feed latency, malformed lines. Line numbers are 1-based."""
from __future__ import annotations

import heapq
import warnings
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ..errors import DataQualityError
from ..types import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, LOCAL_EVENT, SELL_EVENT
from ._parse import KIND_DEPTH, KIND_ERROR, KIND_MARK, KIND_SNAPSHOT, KIND_TICKER, KIND_TRADE

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

    @property
    def ok(self) -> bool:
        """True when nothing had to be skipped and the depth stream has no gap, duplicate or crossed book."""
        return not self.problems()

    def problems(self) -> list[str]:
        out = []

        def lines(xs):
            shown = ", ".join(str(x) for x in xs[:_SHOW])
            return shown + (f", ... ({len(xs)} in all)" if len(xs) > _SHOW else "")

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
            out.append(f"{len(self.duplicate_lines)} duplicate message(s): lines {lines(self.duplicate_lines)}")
        if self.non_monotonic_exch_lines:
            out.append(f"exchange time goes backwards within a stream at lines {lines(self.non_monotonic_exch_lines)}")
        if self.crossed_book_count:
            out.append(f"crossed book (best bid >= best ask) after {self.crossed_book_count} message(s), "
                       f"first at lines {self.crossed_book_lines}")
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


def check_depth_sequence(kind, line, local, U, u, pu, report: QualityReport, initial_last_u: int | None = None):
    """Run the sync state machine over the message table in file order.

    Returns `apply` (bool per message: the depth diff may be applied), `defer_to` (message index whose local time
    a buffered bridging diff must wait for, or -1) and fills the report's gaps/sync/duplicate fields.
    """
    n = len(kind)
    apply = np.zeros(n, bool)
    defer_to = np.full(n, -1, np.int64)
    state = UNSYNCED
    last_u = -1
    last_pu = -1
    if initial_last_u is not None:
        state, last_u = SYNCED, int(initial_last_u)
    buf: list[int] = []
    snap_u = -1
    snap_idx = -1
    open_gap: Gap | None = None
    duplicates = 0

    def open_(i, kind_, details):
        nonlocal open_gap
        if open_gap is None:
            open_gap = Gap(int(line[i]), int(local[i]), None, None, kind_, details)
            report.gaps.append(open_gap)

    def synced_at(i):
        nonlocal open_gap
        report.sync_lines.append(int(line[i]))
        if open_gap is not None:
            open_gap.end_line, open_gap.end_local_ts = int(line[i]), int(local[i])
            open_gap = None

    def feed_synced(i):
        nonlocal state, last_u, last_pu, buf, duplicates
        if U[i] <= last_u and u[i] == last_u and pu[i] == last_pu:
            duplicates += 1
            report.duplicate_lines.append(int(line[i]))
        elif pu[i] == last_u:
            apply[i] = True
            last_u, last_pu = u[i], pu[i]
        elif u[i] <= last_u:
            duplicates += 1
            report.duplicate_lines.append(int(line[i]))  # replayed old diff (e.g. after a reconnect)
        else:
            open_(i, "pu_mismatch", f"expected pu={last_u}, got pu={pu[i]}")
            state = UNSYNCED
            buf = [i]

    def try_bridge():
        nonlocal state, last_u, last_pu, buf, snap_u
        while buf and u[buf[0]] < snap_u:
            report.stale_dropped += 1
            buf.pop(0)
        if not buf:
            return
        first = buf[0]
        if U[first] <= snap_u <= u[first]:
            apply[first] = True
            if snap_idx > first:
                defer_to[first] = snap_idx
            last_u, last_pu = u[first], pu[first]
            state = SYNCED
            synced_at(snap_idx)
            rest, buf = buf[1:], []
            for m in rest:
                if state == SYNCED:
                    if snap_idx > m:
                        defer_to[m] = snap_idx
                    feed_synced(m)
                else:
                    buf.append(m)
        else:
            open_(first, "snapshot_too_old", f"lastUpdateId {snap_u} < first buffered U {U[first]}")
            state = UNSYNCED
            snap_u = -1

    line, local, U, u, pu = line.tolist(), local.tolist(), U.tolist(), u.tolist(), pu.tolist()
    for i in np.nonzero((kind == KIND_DEPTH) | (kind == KIND_SNAPSHOT))[0].tolist():
        k = kind[i]
        if k == KIND_DEPTH:
            if state == SYNCED:
                feed_synced(i)
            else:
                buf.append(i)
                if state == WAIT_BRIDGE:
                    try_bridge()
        elif k == KIND_SNAPSHOT:
            if state == SYNCED:
                if U[i] <= last_u:
                    continue  # redundant snapshot: we are already in sync
                open_(i, "snapshot_ahead", f"lastUpdateId {U[i]} > last applied u {last_u}")
                buf = []
            snap_u, snap_idx = int(U[i]), i
            state = WAIT_BRIDGE
            try_bridge()
    if state != SYNCED:
        if buf:
            open_(buf[0], "unsynced_at_eof", f"{len(buf)} depth message(s) never applied")
        elif open_gap is None and np.any(kind == KIND_DEPTH):
            i = int(np.nonzero(kind == KIND_DEPTH)[0][-1])
            open_(i, "unsynced_at_eof", "no usable snapshot")
    report.buffered_unsynced = int(np.count_nonzero((kind == KIND_DEPTH) & ~apply)) - duplicates \
        - report.stale_dropped
    return apply, defer_to


# --- book replay (crossed-book check and last snapshot) -------------------------------------------------

_EMPTY = np.iinfo(np.int64).min


@njit(cache=True, nogil=True, inline="always")
def _slot(k, mask):
    h = np.uint64(k) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(40)) & mask


@njit(cache=True, nogil=True)
def _h_find(keys, k):
    mask = len(keys) - 1
    i = _slot(k, mask)
    while keys[i] != _EMPTY:
        if keys[i] == k:
            return i
        i = (i + 1) & mask
    return -1 - i  # free slot where k would go


@njit(cache=True, nogil=True)
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
def _h_rebuild(keys, vals, cap, lo, hi):
    """A table of capacity `cap` holding the entries with lo <= key <= hi."""
    nk = np.full(cap, _EMPTY, np.int64)
    nv = np.zeros(cap, np.float64)
    n = 0
    for i in range(len(keys)):
        k = keys[i]
        if k != _EMPTY and lo <= k <= hi:
            j = -1 - _h_find(nk, k)
            nk[j] = k
            nv[j] = vals[i]
            n += 1
    return nk, nv, n


@njit(cache=True, nogil=True)
def _top(keys, heap, sign):
    """Best key of a side: lazily drop heap entries whose level is gone (heap holds sign*key)."""
    while len(heap) > 0:
        k = sign * heap[0]
        if _h_find(keys, k) >= 0:
            return k
        heapq.heappop(heap)
    return _EMPTY if sign < 0 else -_EMPTY - 1


@njit(cache=True, nogil=True)
def _set_level(keys, vals, n, heap, k, q, zero_qty, sign):
    """Set one side's level k to q (removing it when q <= zero_qty); heap holds sign*key. Returns the table."""
    i = _h_find(keys, k)
    if q <= zero_qty:
        if i >= 0:
            _h_delete(keys, vals, i)
            n -= 1
    elif i >= 0:
        vals[i] = q
    else:
        if 2 * (n + 1) > len(keys):
            keys, vals, n = _h_rebuild(keys, vals, 2 * len(keys), _EMPTY, -_EMPTY - 1)
            i = _h_find(keys, k)
        keys[-1 - i] = k
        vals[-1 - i] = q
        n += 1
        heapq.heappush(heap, sign * k)
    return keys, vals, n


@njit(cache=True, nogil=True)
def replay_book(ev, key, qty, msg_start, msg_end, msg_line, full_clear, zero_qty, only_local, max_report):
    """Apply depth/clear/snapshot rows to a price-keyed book, message by message.

    Message i is rows msg_start[i]:msg_end[i] (messages may be given in any order); after each message the
    book is checked for best bid >= best ask. `full_clear` makes every clear row clear its whole side (as does
    a NaN price). A row with `qty <= zero_qty` removes its level. Levels live in open-addressing hash tables
    keyed by the price's int64 bit pattern (same order as the price for positive prices); the best of each
    side comes from a heap with lazy deletion.
    Returns (bid prices, bid qty, ask prices, ask qty, crossed count, line of the first `max_report` crossings).
    """
    cap = 1024
    bk = np.full(cap, _EMPTY, np.int64)
    bv = np.zeros(cap, np.float64)
    ak = np.full(cap, _EMPTY, np.int64)
    av = np.zeros(cap, np.float64)
    nb = 0
    na = 0
    bheap = [0]
    aheap = [0]
    bheap.pop()
    aheap.pop()
    crossed = 0
    crossed_at = np.empty(max_report, np.int64)
    fkey = np.empty(1, np.float64)
    ikey = fkey.view(np.int64)
    for m in range(len(msg_start)):
        touched = False
        for r in range(msg_start[m], msg_end[m]):
            e = ev[r]
            if only_local and (e & LOCAL_EVENT) == 0:
                continue
            kind = e & 0xFF
            is_bid = (e & BUY_EVENT) != 0
            is_ask = (e & SELL_EVENT) != 0
            fkey[0] = key[r] + 0.0  # -0.0 -> 0.0
            k = ikey[0]
            if kind == DEPTH_EVENT or kind == DEPTH_SNAPSHOT_EVENT:
                touched = True
                q = qty[r]
                if is_bid:
                    bk, bv, nb = _set_level(bk, bv, nb, bheap, k, q, zero_qty, -1)
                elif is_ask:
                    ak, av, na = _set_level(ak, av, na, aheap, k, q, zero_qty, 1)
            elif kind == DEPTH_CLEAR_EVENT:
                touched = True
                whole = full_clear or np.isnan(key[r])
                if is_bid:  # keep bids strictly below the clear price
                    bk, bv, nb = _h_rebuild(bk, bv, len(bk), _EMPTY, _EMPTY if whole else k - 1)
                elif is_ask:  # keep asks strictly above it
                    ak, av, na = _h_rebuild(ak, av, len(ak), -_EMPTY - 1 if whole else k + 1, -_EMPTY - 1)
        if touched and nb > 0 and na > 0 and _top(bk, bheap, -1) >= _top(ak, aheap, 1):
            if crossed < max_report:
                crossed_at[crossed] = msg_line[m]
            crossed += 1
    return (_h_items(bk, bv, nb) + _h_items(ak, av, na)) + (crossed, crossed_at[:min(crossed, max_report)])


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
