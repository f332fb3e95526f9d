"""Loading and checking what a reconciliation compares: order journals, the order-latency log and the recorded feed.

The journal (docs/paper.md) is read into order *instances*: a bot may reuse an order id once the order is done
(the grid example's id is its price tick), so every `submit` request starts a new instance and later lines with
that id belong to it, except the exchange's events of an earlier instance, known by their client order id (a fill
reported after the bot submitted the id again). Every problem names the file and line, or the interval, at fault.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from ..errors import DataError
from ..types import BUY, FOK, GTC, GTX, IOC, LIMIT, MARKET, SELL

ACTIONS = ("submit", "cancel", "modify")
EVENTS = ("request", "ack", "fill", "cancel", "expiry", "amend", "rejection")
TIFS = {"GTC": GTC, "GTX": GTX, "IOC": IOC, "FOK": FOK}
TYPES = {"LIMIT": LIMIT, "MARKET": MARKET}
SIDES = {"BUY": BUY, "SELL": SELL}
# exchange events that answer a request of each action (what the request's latency is measured to)
# refusal codes that the matching decides: GTX would cross, unknown order (already filled / cancelled), an
# amendment that changes nothing
MATCHING_REFUSALS = {-5022, -2011, -2013, -5027}
ANSWERS = {"submit": ("ack", "fill", "expiry", "cancel"), "cancel": ("cancel",), "modify": ("amend", "cancel")}


@dataclass
class Request:
    """One request of the journal, with the exchange's answer when there was one."""

    ts: int  # local_ts of the request line
    action: str
    inst: int  # order instance (index into Session.orders)
    side: int = 0
    tif: int = GTC
    order_type: int = LIMIT
    price: float = 0.0
    qty: float = 0.0
    exch_ts: int = 0  # exchange time of the answer (0: none, or refused)
    resp_ts: int = 0  # local time of the answer
    refused: bool = False
    code: int | None = None  # the refusal's code
    where: str = ""  # file:line

    @property
    def replayed(self) -> bool:
        """A request refused before matching (rate limit, margin, filters) never reached the order book: the
        backtest does not get it. Refusals that are matching outcomes (a post-only order that would cross, an
        order already filled or gone) are the backtest's to decide."""
        return not self.refused or self.code in MATCHING_REFUSALS


@dataclass
class Fill:
    inst: int
    exch_ts: int
    local_ts: int
    price: float
    qty: float
    maker: bool
    fee: float = 0.0


@dataclass
class OrderInstance:
    order_id: int
    side: int
    price: float
    qty: float
    submit_ts: int
    end_ts: int | None = None  # local_ts of its last event
    status: str = ""  # last exchange status seen live
    where: str = ""


@dataclass
class Session:
    """A live (or paper) session of one symbol as its journals tell it."""

    symbol: str
    requests: list[Request]
    orders: list[OrderInstance]
    fills: list[Fill]
    files: list[str]
    start_ts: int
    end_ts: int
    warnings: list[str] = field(default_factory=list)

    def latency_rows(self) -> np.ndarray:
        """(req_ts, exch_ts, resp_ts, estimated) per answered request, sorted: each request's own recorded latency
        for `intp_order_latency` (the interpolation returns a row's latency at exactly its req_ts). `estimated` is 1
        for a refusal's row, whose exch_ts is estimated (the exchange gave none), else 0."""
        rows = [(r.ts, r.exch_ts, r.resp_ts, 0) for r in self.requests if r.exch_ts > 0 and not r.refused]
        if not rows:
            raise DataError(f"{', '.join(self.files)}: no request was answered by the exchange: no latency to replay")
        arr = np.array(rows, dtype=np.int64)
        # A refusal by the matching (a post-only order that would cross) carries no exchange time, only when its
        # reply arrived: the exchange decided about one typical response latency before that.
        resp = int(np.median(arr[:, 2] - arr[:, 1]))
        est = [(r.ts, min(max(r.resp_ts - resp, r.ts), r.resp_ts), r.resp_ts, 1) for r in self.requests
               if r.refused and r.replayed and r.resp_ts > r.ts]
        if est:
            arr = np.concatenate([arr, np.array(est, dtype=np.int64)])
        return arr[np.argsort(arr[:, 0], kind="stable")]


def _fail(where: str, message: str) -> DataError:
    return DataError(f"{where}: {message}")


def _read_lines(path: Path):
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such journal file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a journal (JSONL)") from None
    for lineno, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _fail(where, f"not a JSON line ({exc})") from None
        if not isinstance(rec, dict):
            raise _fail(where, "expected a JSON object")
        for key in ("event", "local_ts", "symbol", "order_id"):
            if key not in rec:
                raise _fail(where, f"missing key {key!r}")
        if rec["event"] not in EVENTS:
            raise _fail(where, f"key 'event': unknown value {rec['event']!r} (accepted: {', '.join(EVENTS)})")
        for key in ("local_ts", "order_id"):
            if not isinstance(rec[key], int) or isinstance(rec[key], bool):
                raise _fail(where, f"key {key!r}: expected an integer, got {rec[key]!r}")
        yield where, rec


def _number(rec: dict, key: str, where: str) -> float:
    value = rec.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
        raise _fail(where, f"key {key!r}: expected a finite number, got {value!r}")
    return float(value)


def _choice(rec: dict, key: str, where: str, accepted: dict):
    value = rec.get(key)
    if value not in accepted:
        raise _fail(where, f"key {key!r}: unknown value {value!r} (accepted: {', '.join(accepted)})")
    return accepted[value]


def load_journals(paths, symbol: str | None = None) -> Session:
    """Reads one or more journals of a session into a Session of `symbol` (default: the journals' only symbol).

    Errors: a malformed line, a line repeated (within or across files), journals whose time spans overlap
    (two copies, or two connectors' journals of the same account), no line for `symbol`."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if not paths:
        raise DataError("no journal given")
    resolved = [p.resolve() for p in paths]
    for i, p in enumerate(resolved):
        if p in resolved[:i]:
            raise DataError(f"{paths[i]}: journal given twice")
    per_file = []
    seen: dict[bytes, str] = {}
    for path in paths:
        recs = []
        for where, rec in _read_lines(path):
            key = orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)
            if key in seen:
                raise _fail(where, f"duplicates {seen[key]} (the same journal line twice: a journal given twice, "
                                   "or a copy appended to it)")
            seen[key] = where
            recs.append((where, rec))
        if recs:
            per_file.append((path, recs))
    if not per_file:
        raise DataError(f"{', '.join(map(str, paths))}: no journal lines")
    spans = sorted((min(r["local_ts"] for _, r in recs), max(r["local_ts"] for _, r in recs), path)
                   for path, recs in per_file)
    for (a0, a1, pa), (b0, b1, pb) in zip(spans, spans[1:]):
        if b0 <= a1:
            raise DataError(f"{pa} and {pb} overlap in time ({_span(b0, min(a1, b1))}): journals of one session "
                            "follow each other; give each session's journals to its own reconciliation")
    symbols = sorted({str(r["symbol"]).lower() for _, recs in per_file for _, r in recs})
    if symbol is None:
        if len(symbols) > 1:
            raise DataError(f"{', '.join(map(str, paths))}: the journals hold several symbols ({', '.join(symbols)}); "
                            "name the one to reconcile")
        symbol = symbols[0]
    symbol = symbol.lower()
    if symbol not in symbols:
        raise DataError(f"{', '.join(map(str, paths))}: no journal line for symbol {symbol!r} "
                        f"(the journals hold {', '.join(symbols)})")
    lines = [(where, rec) for _, recs in per_file for where, rec in recs if str(rec["symbol"]).lower() == symbol]
    lines.sort(key=lambda x: x[1]["local_ts"])  # stable: the file order within a timestamp
    session = _build(lines, symbol, [str(p) for p in paths])
    others = [s for s in symbols if s != symbol]
    if others:
        session.warnings.append(f"journal lines of other symbols ignored: {', '.join(others)}")
    return session


def _span(a: int, b: int) -> str:
    from datetime import datetime, timezone

    def fmt(ns):
        return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

    return f"{fmt(a)} .. {fmt(b)} UTC"


def _build(lines, symbol: str, files: list[str]) -> Session:
    current: dict[int, int] = {}  # order_id -> instance
    by_client: dict[str, int] = {}  # the exchange's client order id -> instance (first seen on its events)
    orders: list[OrderInstance] = []
    requests: list[Request] = []
    pending: dict[int, list[Request]] = {}  # instance -> requests still waiting for their answer
    fills: list[Fill] = []
    orphans = 0
    for where, rec in lines:
        event, ts, oid = rec["event"], rec["local_ts"], rec["order_id"]
        if event == "request":
            action = rec.get("action")
            if action not in ACTIONS:
                raise _fail(where, f"key 'action': unknown value {action!r} (accepted: {', '.join(ACTIONS)})")
            if action == "submit":
                side = _choice(rec, "side", where, SIDES)
                inst = len(orders)
                orders.append(OrderInstance(oid, side, _number(rec, "price", where), _number(rec, "qty", where), ts,
                                            where=where))
                current[oid] = inst
                req = Request(ts, action, inst, side, _choice(rec, "tif", where, TIFS),
                              _choice(rec, "type", where, TYPES), orders[inst].price, orders[inst].qty, where=where)
            else:
                if oid not in current:
                    orphans += 1
                    continue
                req = Request(ts, action, current[oid], price=float(rec.get("price") or 0.0),
                              qty=float(rec.get("qty") or 0.0), where=where)
                if action == "modify":
                    req.price, req.qty = _number(rec, "price", where), _number(rec, "qty", where)
            requests.append(req)
            pending.setdefault(req.inst, []).append(req)
            continue
        # A bot may submit an order id again before the report of the previous order's last fill arrived: the
        # client order id tells the instances apart.
        cid = rec.get("client_id")
        inst = by_client.get(cid) if cid else None
        if inst is None:
            inst = current.get(oid)
            if inst is None:
                orphans += 1  # an order placed before the journal starts (adopted, or an earlier session)
                continue
            if cid:
                by_client[cid] = inst
        order = orders[inst]
        order.end_ts = ts
        order.status = str(rec.get("status") or order.status)
        waiting = pending.get(inst, [])
        if event == "rejection":
            action = rec.get("action", "submit")
            for req in waiting:
                if req.action == action or (action == "change" and req.action != "submit"):
                    req.refused, req.resp_ts = True, ts
                    code = rec.get("code")
                    req.code = code if isinstance(code, int) and not isinstance(code, bool) else None
                    waiting.remove(req)
                    break
            continue
        exch_ts = rec.get("exch_ts")
        if not isinstance(exch_ts, int) or isinstance(exch_ts, bool) or exch_ts <= 0:
            raise _fail(where, f"key 'exch_ts': expected the exchange's time (ns > 0), got {exch_ts!r}")
        for req in waiting:
            if event in ANSWERS[req.action]:
                req.exch_ts, req.resp_ts = exch_ts, ts
                waiting.remove(req)
                break
        if event == "fill":
            fills.append(Fill(inst, exch_ts, ts, _number(rec, "fill_price", where), _number(rec, "fill_qty", where),
                              bool(rec.get("maker")), float(rec.get("fee") or 0.0)))
    if not requests:
        raise DataError(f"{', '.join(files)}: no request lines for {symbol}: nothing to replay")
    session = Session(symbol, requests, orders, fills, files, lines[0][1]["local_ts"], lines[-1][1]["local_ts"])
    if orphans:
        session.warnings.append(f"{orphans} journal line(s) of orders submitted before the journal starts "
                                "(adopted or earlier orders) are not replayed")
    return session


def load_latency_log(paths) -> np.ndarray:
    """The bot's order-latency log(s) (OrderLatencyLogger JSONL, or an .npz from latency_log_to_npz) as
    order_latency_dtype rows sorted by req_ts."""
    from ..types import order_latency_dtype

    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    parts = []
    for path in paths:
        if path.suffix == ".npz":
            try:
                with np.load(path) as npz:
                    parts.append(np.asarray(npz["data"]).astype(order_latency_dtype))
            except FileNotFoundError:
                raise DataError(f"{path}: no such latency file") from None
            except (OSError, ValueError, KeyError) as exc:
                raise DataError(f"{path}: not a latency .npz ({exc})") from None
            continue
        rows = []
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError(f"{path}: no such latency file") from None
        for lineno, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
                rows.append((int(rec["req_ts"]), int(rec["exch_ts"]), int(rec["resp_ts"]), 0))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}:{lineno}: malformed latency record ({exc})") from None
        parts.append(np.array(rows, dtype=order_latency_dtype))
    arr = np.concatenate(parts) if parts else np.zeros(0, order_latency_dtype)
    if not len(arr):
        raise DataError(f"{', '.join(map(str, paths))}: no latency records")
    return arr[np.argsort(arr["req_ts"], kind="stable")]


@dataclass
class Feed:
    """The recorded market as the backtest reads it, plus what is known to be missing from it."""

    data: np.ndarray
    path: str
    symbol: str | None
    start_ts: int  # local time span of the rows, on the recording machine's clock (the journal's)
    end_ts: int
    gaps: list[dict]  # {"start_ns", "end_ns", "kind", "detail"} on that clock; end_ns None: to the end
    local_shift: int = 0  # ns the converter added to the rows' local_ts (local clock behind the exchange)
    notes: list[str] = field(default_factory=list)


def load_feed(path) -> Feed:
    """A collector file (`.gz` or plain raw feed; converted here with gap_policy='resync') or an already converted
    `.npz` / `.npy`. Depth gaps found by the converter and the collector's sidecar gaps are kept as intervals."""
    from ..data.utils import binancefutures

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such feed file")
    gaps: list[dict] = []
    notes: list[str] = []
    symbol = None
    shift = 0
    if path.suffix in (".npz", ".npy"):
        try:
            data = np.load(path) if path.suffix == ".npy" else np.load(path)["data"]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{path}: not a converted feed ({exc})") from None
    else:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data, report = binancefutures.convert(str(path), gap_policy="resync", return_report=True)
        data = np.array(data)
        notes += [str(w.message) for w in caught]
        if len(report.symbols) == 1:
            symbol = report.symbols[0].lower()
        elif len(report.symbols) > 1:
            raise DataError(f"{path}: the feed mixes symbols {report.symbols}: record one symbol per file")
        if report.min_latency_ns is not None and report.min_latency_ns < 0:
            shift = -int(report.min_latency_ns)
        for g in report.gaps:
            gaps.append({"start_ns": int(g.start_local_ts), "end_ns": None if g.end_local_ts is None
                         else int(g.end_local_ts), "kind": f"depth ({g.kind})", "detail": f"line {g.start_line}"})
    sidecar = Path(str(path) + ".json")
    if sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{sidecar}: unreadable collector sidecar ({exc})") from None
        symbol = symbol or (str(meta.get("symbol", "")).lower() or None)
        for g in meta.get("gaps", []):
            if g.get("kind") == "ws_reconnect":
                gaps.append({"start_ns": int(g["start_ns"]), "end_ns": g.get("end_ns"), "kind": "ws_reconnect",
                             "detail": f"stream {g.get('stream', '')}".strip()})
    if len(data) == 0:
        raise DataError(f"{path}: the feed holds no events")
    data, refined = refine_ms(data)
    if refined:
        notes.append(f"exchange times refined within their millisecond by the local receive times "
                     f"({refined} rows)")
    local = data["local_ts"]
    return Feed(data, str(path), symbol, int(local.min()) - shift, int(local.max()) - shift,
                sorted(gaps, key=lambda g: g["start_ns"]), shift, notes)


MS = 1_000_000


def _within_ms(ms: np.ndarray, late: np.ndarray) -> np.ndarray:
    """A time in millisecond `ms` ordered by `late` (ns after the millisecond's start that the event arrived, less
    the smallest delay of its kind): the fraction late / (late + 1 ms) of the millisecond. Arrivals more than a
    millisecond late keep their order instead of all landing on its last nanosecond."""
    late = np.maximum(late, 0).astype(np.float64)
    return ms + np.minimum((MS * late / (late + MS)).astype(np.int64), MS - 1)


def refine_ms(data: np.ndarray) -> tuple[np.ndarray, int]:
    """Binance stamps events in milliseconds, so an order and a trade of the same millisecond cannot be ordered by
    their exchange times. Within its millisecond (never out of it), the exchange times are ordered as the events
    arrived: by receive time less the smallest receive delay seen (`_within_ms`), which the millisecond left
    undecided. Returns (data, rows changed); data with sub-millisecond exchange times is returned as it is."""
    from ..types import EXCH_EVENT

    exch_rows = np.flatnonzero((data["ev"] & EXCH_EVENT) != 0)
    ts = data["exch_ts"][exch_rows]
    if not len(ts) or np.any(ts % MS):
        return data, 0
    late = data["local_ts"][exch_rows] - ts
    est = _within_ms(ts, late - late.min())
    est = np.maximum.accumulate(est)  # the exchange side reads its rows in order
    out = data.copy()
    out["exch_ts"][exch_rows] = est
    return out, int(np.count_nonzero(est != ts))


def refine_answers(rows: np.ndarray) -> np.ndarray:
    """refine_ms for (req_ts, exch_ts, resp_ts[, estimated]) latency rows: each answer's exchange time within its
    millisecond from when the answer arrived (rows without an exchange time, or an estimated one, stay as they
    are)."""
    rows = rows.copy()
    ok = rows[:, 1] > 0
    if rows.shape[1] > 3:
        ok &= rows[:, 3] == 0
    if not ok.any() or np.any(rows[ok, 1] % MS):
        return rows
    late = rows[ok, 2] - rows[ok, 1]
    rows[ok, 1] = _within_ms(rows[ok, 1], late - late.min())
    return rows


def check_session_feed(session: Session, feed: Feed, margin_ns: int = 0) -> None:
    """The journal must be of the feed's symbol and lie within the feed's time span (local clock)."""
    if feed.symbol is not None and feed.symbol != session.symbol:
        raise DataError(f"{session.files[0]}: the journal is of {session.symbol.upper()}, the feed {feed.path} of "
                        f"{feed.symbol.upper()}")
    start = session.requests[0].ts
    end = max(session.end_ts, session.requests[-1].ts)
    if end < feed.start_ts or start > feed.end_ts:
        raise DataError(f"{session.files[0]}: the journal ({_span(start, end)}) does not overlap the feed {feed.path} "
                        f"({_span(feed.start_ts, feed.end_ts)}): another period")
    if start < feed.start_ts - margin_ns:
        session.warnings.append(f"the journal starts before the feed ({_span(start, feed.start_ts)} uncovered): "
                                "orders of that interval are excluded")
        feed.gaps.insert(0, {"start_ns": start, "end_ns": feed.start_ts, "kind": "before the feed", "detail": ""})
    if end > feed.end_ts + margin_ns:
        session.warnings.append(f"the journal ends after the feed ({_span(feed.end_ts, end)} uncovered): "
                                "orders of that interval are excluded")
        feed.gaps.append({"start_ns": feed.end_ts, "end_ns": end, "kind": "after the feed", "detail": ""})
