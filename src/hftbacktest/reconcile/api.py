"""`reconcile` and `calibrate`: does the backtest reproduce a live session's fills, and which queue model does best."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .. import _atomic
from ..errors import ConfigError
from ..types import BUY
from .replay import compare, excluded_instances, expand_queue_specs, load_config, replay
from .session import Feed, Session, _span, check_session_feed, load_feed, load_journals, load_latency_log

DEFAULT_WINDOW_MS = 1000.0


@dataclass
class Inputs:
    """A session, its feed and the backtest config, loaded and checked once (calibrate replays them many times)."""

    session: Session
    feed: Feed
    spec: dict
    depth: str
    config: str
    latency_log: np.ndarray | None = None
    excluded: set[int] = field(default_factory=set)


def load(journal, feed, config, latency=None, *, symbol: str | None = None, asset: int = 0) -> Inputs:
    """Reads and checks journals, feed, config (and the bot's latency log); see session.py for the errors."""
    spec, depth, source = load_config(config, asset)
    session = load_journals(journal, symbol)
    fd = feed if isinstance(feed, Feed) else load_feed(feed)
    check_session_feed(session, fd)
    log = load_latency_log(latency) if latency is not None else None
    inputs = Inputs(session, fd, spec, depth, source, log)
    inputs.excluded = excluded_instances(session, fd.gaps)
    return inputs


@dataclass
class Reconciliation:
    """The outcome of one order replay; frames are polars DataFrames (timestamps in ns)."""

    summary: dict[str, Any]
    fills: pl.DataFrame  # one row per matched pair, live-only or backtest-only fill
    orders: pl.DataFrame  # one row per order instance
    paths: pl.DataFrame  # ts, mid, position and PnL live vs backtest
    latency: pl.DataFrame  # source, entry_ms, response_ms
    excluded: pl.DataFrame  # feed gaps: start_ns, end_ns, kind, detail

    def write_json(self, path) -> Path:
        path = Path(path)
        _atomic.atomic_write_bytes(path, json.dumps(self.summary, indent=2, default=_jsonable).encode() + b"\n")
        return path

    def write_csv(self, path) -> Path:
        """The fill table (machine-readable, one row per fill pair)."""
        path = Path(path)
        with _atomic.atomic_path(path) as tmp:
            self.fills.write_csv(tmp)
        return path

    def write_html(self, path, charts: str = "plotly") -> Path:
        from .html import render

        path = Path(path)
        _atomic.atomic_write_bytes(path, render(self, charts=charts).encode("utf-8"))
        return path


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return str(v)


def reconcile(journal, feed, config, latency=None, *, queue: str | None = None, window_ms: float = DEFAULT_WINDOW_MS,
              symbol: str | None = None, asset: int = 0, inputs: Inputs | None = None,
              sample_ms: float = 1000.0) -> Reconciliation:
    """Order replay of a live (or paper) session: the journal's requests into a backtest of the recorded feed at
    their recorded times and latencies, fills compared order by order (same price and quantity, exchange times
    within `window_ms`). `queue` overrides the config's queue model ('power_prob:2', ...)."""
    if not (np.isfinite(window_ms) and window_ms >= 0):
        raise ConfigError(f"window_ms must be a number >= 0, got {window_ms!r}")
    inp = inputs or load(journal, feed, config, latency, symbol=symbol, asset=asset)
    run = replay(inp.session, inp.feed, inp.spec, inp.depth, queue, int(sample_ms * 1e6))
    tick, lot = float(inp.spec["tick_size"]), float(inp.spec["lot_size"])
    figures, rows = compare(inp.session, run.fills, tick, lot, int(window_ms * 1e6), inp.excluded)
    fills = pl.DataFrame(rows, schema=_FILL_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_FILL_SCHEMA)
    orders = _orders_frame(inp, run.fills)
    paths = _paths_frame(inp, run)
    lat = _latency_frame(inp)
    excluded = _excluded_frame(inp.feed.gaps)
    s = inp.session
    last = paths.tail(1).to_dicts()[0] if len(paths) else {}
    summary = {
        "mode": "order replay",
        "symbol": s.symbol,
        "journals": s.files,
        "feed": inp.feed.path,
        "config": inp.config,
        "queue": run.queue,
        "exchange": inp.spec.get("exchange", "no_partial_fill"),
        "window_ms": window_ms,
        "session": _span(s.start_ts, s.end_ts),
        "session_start_ns": s.start_ts,
        "session_end_ns": s.end_ts,
        **figures,
        "requests": len(s.requests),
        "orders": len(s.orders),
        "orders_excluded": len(inp.excluded),
        "backtest_requests": run.codes,
        "live_position": last.get("live_position"),
        "backtest_position": last.get("bt_position"),
        "live_pnl": last.get("live_pnl"),
        "backtest_pnl": last.get("bt_pnl"),
        "excluded_intervals": [dict(g, span=_span(g["start_ns"], g["end_ns"] or inp.feed.end_ts))
                               for g in inp.feed.gaps],
        "latency_ms": _latency_medians(lat),
        "feed_local_shift_ns": inp.feed.local_shift,
        "warnings": s.warnings + inp.feed.notes,
        "replay_seconds": round(run.elapsed_s, 3),
    }
    return Reconciliation(summary, fills, orders, paths, lat, excluded)


_FILL_SCHEMA = {"inst": pl.Int64, "order_id": pl.UInt64, "side": pl.Utf8, "excluded": pl.Boolean,
                "live_ts": pl.Int64, "live_price": pl.Float64, "live_qty": pl.Float64, "bt_ts": pl.Int64,
                "bt_price": pl.Float64, "bt_qty": pl.Float64, "status": pl.Utf8, "dt_ms": pl.Float64}


_GAP_SCHEMA = {"start_ns": pl.Int64, "end_ns": pl.Int64, "kind": pl.Utf8, "detail": pl.Utf8}


def _excluded_frame(gaps: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(gaps, schema=_GAP_SCHEMA) if gaps else pl.DataFrame(schema=_GAP_SCHEMA)


def _orders_frame(inp: Inputs, bt_fills) -> pl.DataFrame:
    s = inp.session
    n = len(s.orders)
    live_qty, bt_qty = np.zeros(n), np.zeros(n)
    live_first, bt_first = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    for fills, qty, first in ((s.fills, live_qty, live_first), (bt_fills, bt_qty, bt_first)):
        for f in fills:
            qty[f.inst] += f.qty
            if first[f.inst] < 0 or f.exch_ts < first[f.inst]:
                first[f.inst] = f.exch_ts
    return pl.DataFrame({
        "inst": np.arange(n, dtype=np.int64),
        "order_id": np.array([o.order_id for o in s.orders], dtype=np.uint64),
        "side": ["BUY" if o.side == BUY else "SELL" for o in s.orders],
        "price": [o.price for o in s.orders],
        "qty": [o.qty for o in s.orders],
        "submit_ts": np.array([o.submit_ts for o in s.orders], dtype=np.int64),
        "live_status": [o.status for o in s.orders],
        "live_filled": live_qty,
        "bt_filled": bt_qty,
        "live_first_fill_ts": live_first,
        "bt_first_fill_ts": bt_first,
        "excluded": [i in inp.excluded for i in range(n)],
    }).with_columns(pl.col("live_first_fill_ts", "bt_first_fill_ts").replace(-1, None))


def _paths_frame(inp: Inputs, run) -> pl.DataFrame:
    """Position and PnL (cash + position at the backtest's mid, fees included) live and in the backtest."""
    cs = float(inp.spec.get("contract_size", 1.0))
    smp = run.samples
    ts = smp[:, 0].astype(np.int64)
    mid = smp[:, 1]
    fills = sorted(inp.session.fills, key=lambda f: f.local_ts)
    f_ts = np.array([f.local_ts for f in fills], dtype=np.int64)
    signed = np.array([f.qty * (1 if inp.session.orders[f.inst].side == BUY else -1) for f in fills])
    cash = np.array([-q * f.price * cs - f.fee for q, f in zip(signed, fills)])
    idx = np.searchsorted(f_ts, ts, side="right")
    pos_c = np.concatenate([[0.0], np.cumsum(signed)])
    cash_c = np.concatenate([[0.0], np.cumsum(cash)])
    live_pos = pos_c[idx]
    live_pnl = cash_c[idx] + live_pos * mid * cs
    bt_pnl = smp[:, 3] + smp[:, 2] * mid * cs - smp[:, 4]
    return pl.DataFrame({"ts": ts, "mid": mid, "live_position": live_pos, "bt_position": smp[:, 2],
                         "live_pnl": live_pnl, "bt_pnl": bt_pnl})


def _latency_frame(inp: Inputs) -> pl.DataFrame:
    """Order latencies live (the journal's request -> answer, and the bot's log when given) and the backtest
    config's model (what a plain backtest of the strategy would assume)."""
    parts = []
    rows = [(r.ts, r.exch_ts, r.resp_ts) for r in inp.session.requests if r.exch_ts > 0 and not r.refused]
    if rows:
        a = np.array(rows, dtype=np.int64)
        parts.append(("live (journal)", (a[:, 1] - a[:, 0]) / 1e6, (a[:, 2] - a[:, 1]) / 1e6))
    if inp.latency_log is not None:
        log = inp.latency_log[inp.latency_log["exch_ts"] > 0]
        parts.append(("live (latency log)", (log["exch_ts"] - log["req_ts"]) / 1e6,
                      (log["resp_ts"] - log["exch_ts"]) / 1e6))
    model = inp.spec.get("latency", {"model": "constant", "entry": 0, "response": 0})
    if model["model"] == "constant":
        parts.append(("backtest model", np.array([model["entry"] / 1e6]), np.array([model["response"] / 1e6])))
    else:
        from ..backtest.asset import _load_latency

        base = Path(inp.config).parent if inp.config != "<config>" else Path(".")
        files = model["files"] if isinstance(model["files"], list) else [model["files"]]
        tab = _load_latency([str(base / f) for f in files], int(model.get("offset", 0)), inp.config)
        ok = tab[tab[:, 1] > 0]
        parts.append(("backtest model", (ok[:, 1] - ok[:, 0]) / 1e6, (ok[:, 2] - ok[:, 1]) / 1e6))
    frames = [pl.DataFrame({"source": [name] * len(e), "entry_ms": e.astype(float), "response_ms": r.astype(float)})
              for name, e, r in parts]
    return pl.concat(frames)


def _latency_medians(lat: pl.DataFrame) -> dict:
    out = {}
    for (source,), g in lat.group_by("source", maintain_order=True):
        out[source] = {"entry_median": g["entry_ms"].median(), "response_median": g["response_ms"].median(),
                       "samples": len(g)}
    return out


def strategy_replay(journal, feed, config, latency, strategy, *, queue: str | None = None, symbol: str | None = None,
                    asset: int = 0, inputs: Inputs | None = None, record_ms: float = 100.0) -> Reconciliation:
    """Strategy replay: `strategy` (an @njit function taking (hbt) or (hbt, recorder), or FILE.py:FUNC) re-runs on
    the recorded feed from the session's start, with the bot's order-latency log as its latency model; its fills,
    volume, position and PnL are compared with the live session's. Order ids of a strategy's own choosing cannot
    be paired with the live ones, so the comparison is of totals and paths (order replay compares order by order)."""
    import time

    from ..backtest.cli import load_strategy, num_params
    from ..recorder import Recorder
    from .replay import backtest_of

    inp = inputs or load(journal, feed, config, latency, symbol=symbol, asset=asset)
    if inp.latency_log is None:
        raise ConfigError("strategy replay needs the bot's order-latency log (latency=..., CLI --latency)")
    fn = load_strategy(strategy) if isinstance(strategy, str) else strategy
    n_params = num_params(fn)
    if n_params not in (1, 2):
        raise ConfigError(f"strategy {strategy!r} must take (hbt) or (hbt, recorder), it takes {n_params} arguments")
    log = inp.latency_log
    table = np.stack([log["req_ts"], log["exch_ts"], log["resp_ts"]], axis=1).astype(np.int64)
    hbt, qname = backtest_of(inp.feed, inp.spec, inp.depth, queue, table)
    s = inp.session
    shift = inp.feed.local_shift
    t0 = time.perf_counter()
    try:
        hbt.elapse(0)
        start = s.start_ts + shift
        if hbt.current_timestamp < start:
            hbt.elapse(start - hbt.current_timestamp)  # the bot started here: the same book, no earlier orders
        if n_params == 2:
            rec = Recorder(1, 100_000, grow=True)
            fn(hbt, rec.recorder)
            rows = rec.get(0)
        else:
            fn(hbt)
            rows = np.zeros(0)
        sv = hbt.state_values(0)
        bt_fills, bt_volume, bt_position = int(sv.num_trades), float(sv.trading_volume), float(sv.position)
    finally:
        hbt.close()
    elapsed = time.perf_counter() - t0
    live = [f for f in s.fills]
    cs = float(inp.spec.get("contract_size", 1.0))
    sides = {i: (1.0 if o.side == BUY else -1.0) for i, o in enumerate(s.orders)}
    live_position = sum(f.qty * sides[f.inst] for f in live)
    paths = pl.DataFrame(schema={"ts": pl.Int64, "mid": pl.Float64, "live_position": pl.Float64,
                                 "bt_position": pl.Float64, "live_pnl": pl.Float64, "bt_pnl": pl.Float64})
    if len(rows):
        ts = rows["timestamp"].astype(np.int64) - shift
        f_ts = np.array(sorted(f.local_ts for f in live), dtype=np.int64)
        order = sorted(live, key=lambda f: f.local_ts)
        signed = np.array([f.qty * sides[f.inst] for f in order])
        cash = np.array([-q * f.price * cs - f.fee for q, f in zip(signed, order)])
        idx = np.searchsorted(f_ts, ts, side="right")
        pos_c = np.concatenate([[0.0], np.cumsum(signed)])
        cash_c = np.concatenate([[0.0], np.cumsum(cash)])
        mid = rows["price"]
        paths = pl.DataFrame({"ts": ts, "mid": mid, "live_position": pos_c[idx], "bt_position": rows["position"],
                              "live_pnl": cash_c[idx] + pos_c[idx] * mid * cs,
                              "bt_pnl": rows["balance"] + rows["position"] * mid * cs - rows["fee"]})
    last = paths.tail(1).to_dicts()[0] if len(paths) else {}
    diff = (paths["bt_position"] - paths["live_position"]).abs() if len(paths) else None
    summary = {
        "mode": "strategy replay", "symbol": s.symbol, "journals": s.files, "feed": inp.feed.path,
        "config": inp.config, "queue": qname, "exchange": inp.spec.get("exchange", "no_partial_fill"),
        "window_ms": None, "session": _span(s.start_ts, s.end_ts), "requests": len(s.requests),
        "live_submits": sum(r.action == "submit" for r in s.requests), "live_fills": len(live),
        "backtest_fills": bt_fills, "fill_count_error": abs(bt_fills - len(live)) / len(live) if live else None,
        "live_volume": sum(f.qty for f in live), "backtest_volume": bt_volume,
        "live_position": live_position, "backtest_position": bt_position,
        "live_pnl": last.get("live_pnl"), "backtest_pnl": last.get("bt_pnl"),
        "position_mean_abs_diff": None if diff is None else float(diff.mean()),
        "position_same_share": None if diff is None else float((diff < 1e-9).mean()),
        "orders": len(s.orders), "orders_excluded": len(inp.excluded), "backtest_requests": {},
        "excluded_intervals": [dict(g, span=_span(g["start_ns"], g["end_ns"] or inp.feed.end_ts))
                               for g in inp.feed.gaps],
        "latency_ms": _latency_medians(_latency_frame(inp)), "feed_local_shift_ns": shift,
        "warnings": s.warnings + inp.feed.notes, "replay_seconds": round(elapsed, 3),
    }
    return Reconciliation(summary, pl.DataFrame(schema=_FILL_SCHEMA), _orders_frame(inp, []), paths,
                          _latency_frame(inp), _excluded_frame(inp.feed.gaps))


def calibrate(journal, feed, config, queues, latency=None, *, window_ms: float = DEFAULT_WINDOW_MS,
              symbol: str | None = None, asset: int = 0, inputs: Inputs | None = None) -> pl.DataFrame:
    """Order replay under each candidate queue model ('risk_averse', 'power_prob:1,2,3', ...), ranked: highest
    fill agreement first, then the smaller fill-count error, then the smaller first-fill time error."""
    candidates = expand_queue_specs(queues)
    inp = inputs or load(journal, feed, config, latency, symbol=symbol, asset=asset)
    rows = []
    for q in candidates:
        res = reconcile(None, None, None, queue=q, window_ms=window_ms, inputs=inp)
        s = res.summary
        rows.append({"queue": q, "agreement": s["agreement"], "qty_agreement": s["qty_agreement"],
                     "live_fills": s["live_fills"], "backtest_fills": s["backtest_fills"],
                     "matched_fills": s["matched_fills"], "live_only": s["live_only"],
                     "backtest_only": s["backtest_only"], "fill_count_error": s["fill_count_error"],
                     "first_fill_error_ms": s["first_fill_error_ms"], "backtest_pnl": s["backtest_pnl"],
                     "live_pnl": s["live_pnl"]})
    table = pl.DataFrame(rows, schema_overrides={"qty_agreement": pl.Float64, "first_fill_error_ms": pl.Float64})
    table = table.with_columns(pl.col("first_fill_error_ms").fill_null(float("inf")).alias("_ttf")) \
        .sort(["agreement", "fill_count_error", "_ttf"], descending=[True, False, False], maintain_order=True) \
        .drop("_ttf")
    return table.with_row_index("rank", offset=1)


def write_table(table: pl.DataFrame, path) -> Path:
    """A calibration table as CSV, written atomically."""
    path = Path(path)
    with _atomic.atomic_path(path) as tmp:
        table.write_csv(tmp)
    return path


__all__ = ["Inputs", "Reconciliation", "calibrate", "load", "reconcile", "strategy_replay", "write_table"]
