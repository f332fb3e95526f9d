"""Order replay: the journal's requests go into a backtest of the recorded feed at their recorded times, each with
its own recorded latency, and the backtest's fills are matched with the live fills order by order.

The backtest is driven through its public API from Python (the engine loop is compiled; each call processes every
event up to the next request or order response), so no strategy needs compiling for a replay.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..types import BUY, FILLED, NEW, NONE, PARTIALLY_FILLED
from .session import Feed, Fill, Session, refine_answers

# queue model names as the emulator, paper mode and calibrate take them -> the backtest TOML's table
_QUEUE_TABLE = {"risk_averse": "risk_adverse", "risk_adverse": "risk_adverse", "power_prob": "power_prob",
                "power_prob2": "power_prob2", "power_prob3": "power_prob3", "log_prob": "log_prob",
                "log_prob2": "log_prob2"}
ORDER_RESPONSE = 3
END_OF_DATA = 1


def queue_table(spec: str) -> dict:
    """'power_prob:2' -> {"model": "power_prob", "n": 2.0} (the backtest config's queue table)."""
    from ..kernels.core import QUEUE_MODELS, parse_queue

    name = str(spec).strip().partition(":")[0]
    if name not in _QUEUE_TABLE:
        import difflib

        close = difflib.get_close_matches(name, list(QUEUE_MODELS), n=1)
        raise ConfigError(f"unknown queue model {name!r}" + (f", did you mean {close[0]!r}?" if close else "")
                          + f" (accepted: {', '.join(QUEUE_MODELS)}, with :N for the power_prob models)")
    parse_queue("risk_averse" if name == "risk_adverse" else spec)  # ConfigError names a missing / bad n
    table = {"model": _QUEUE_TABLE[name]}
    if ":" in str(spec):
        table["n"] = float(str(spec).partition(":")[2])
    return table


def queue_name(table: dict) -> str:
    name = "risk_averse" if table["model"] == "risk_adverse" else table["model"]
    return f"{name}:{table['n']:g}" if "n" in table else name


def expand_queue_specs(specs) -> list[str]:
    """['risk_averse', 'power_prob:1,2,3'] -> ['risk_averse', 'power_prob:1', 'power_prob:2', 'power_prob:3'],
    each checked (ConfigError for an unknown name or a bad parameter)."""
    out = []
    for spec in specs:
        name, sep, args = str(spec).strip().partition(":")
        for arg in (args.split(",") if sep else [""]):
            one = f"{name}:{arg.strip()}" if sep else name
            out.append(queue_name(queue_table(one)))
    if not out:
        raise ConfigError("no queue model given")
    return list(dict.fromkeys(out))


def load_config(config, asset: int = 0) -> tuple[dict, str, str]:
    """(the [[asset]] table, depth kind, source name) from a backtest TOML (`hftbacktest backtest`'s format; its
    `data` may be left out: the feed replaces it) or from an [[asset]]-like dict."""
    from ..backtest.cli import check_asset, read_toml

    if isinstance(config, dict) and "asset" not in config:
        spec, depth, source = dict(config), "hashmap", "<config>"
    else:
        cfg = config if isinstance(config, dict) else read_toml(config)
        source = "<config>" if isinstance(config, dict) else str(config)
        assets = cfg.get("asset")
        if not isinstance(assets, list) or not assets:
            raise ConfigError(f"{source}: asset: missing (needs at least one [[asset]] table)")
        if not 0 <= asset < len(assets):
            raise ConfigError(f"{source}: asset {asset} out of range: the file has {len(assets)} [[asset]] table(s)")
        spec, depth = dict(assets[asset]), cfg.get("depth", "hashmap")
    spec.setdefault("data", "<feed>")
    check_asset(spec, f"asset[{asset}]", source, depth)
    return spec, depth, source


@dataclass
class Replay:
    """What one order replay produced."""

    fills: list[Fill]  # the backtest's, inst = journal instance
    samples: np.ndarray  # (ts, mid, position, balance, fee) every sample interval and at the end
    codes: dict[str, int]  # request outcomes in the backtest: "sent", "not_open" (order already done), ...
    queue: str
    elapsed_s: float


def replay(session: Session, feed: Feed, spec: dict, depth: str = "hashmap", queue: str | None = None,
           sample_ns: int = 1_000_000_000) -> Replay:
    """Runs the journal's requests through a backtest of `feed` configured by `spec` (queue model `queue` if
    given), each request at its recorded local time with its recorded latency."""
    import time

    t0 = time.perf_counter()
    hbt, name = backtest_of(feed, spec, depth, queue, session.latency_rows())
    try:
        fills, samples, codes = _drive(hbt, session, feed.local_shift, sample_ns)
    finally:
        hbt.close()
    return Replay(fills, samples, codes, name, time.perf_counter() - t0)


def backtest_of(feed: Feed, spec: dict, depth: str, queue: str | None, latency: np.ndarray):
    """(a backtest of the feed configured by `spec`, the queue model's name), with the recorded order latencies
    `latency` (req_ts, exch_ts, resp_ts[, pad] rows on the journal's clock) as its latency model."""
    from ..backtest.bot import HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest
    from ..backtest.cli import build_asset

    shift = feed.local_shift
    rows = np.zeros((len(latency), 4), np.int64)
    rows[:, :3] = refine_answers(np.asarray(latency, dtype=np.int64))[:, :3]
    answered = rows[:, 1] > 0
    rows[:, 0] += shift
    # never before the (shifted) request: a negative entry latency would be a rejection in the backtest
    rows[answered, 1] = np.maximum(rows[answered, 1], rows[answered, 0])
    rows[:, 2] = np.maximum(rows[:, 2] + shift, np.maximum(rows[:, 1], rows[:, 0]))
    spec = dict(spec)
    if queue is not None:
        spec["queue"] = queue_table(queue)
    spec["data"] = "<feed>"
    spec["latency"] = {"model": "intp", "files": ["<latency>"]}
    spec.pop("initial_snapshot", None)
    base = Path(".")
    asset = build_asset(spec, base, "asset[0]", None, depth,
                        files={str(base / "<feed>"): feed.data, str(base / "<latency>"): rows})
    make = ROIVectorMarketDepthBacktest if depth == "roi" else HashMapMarketDepthBacktest
    return make([asset]), queue_name(spec.get("queue", {"model": "log_prob2"}))


def _drive(hbt, session: Session, shift: int, sample_ns: int):
    """Steps the backtest from request to request; after every order response it reads the orders it has open
    and turns each decrease of an order's open quantity into a fill."""
    sv = hbt.state_values(0)
    depth = hbt.depth(0)
    leaves: dict[int, float] = {}  # backtest order id (instance + 1) -> open quantity last seen
    fills: list[Fill] = []
    samples: list[tuple] = []
    codes = {"sent": 0, "not_open": 0, "in_flight": 0, "refused": 0, "refused_live": 0}
    if hbt.elapse(0) == END_OF_DATA:
        raise DataError("the feed ends before the backtest starts")
    next_sample = (hbt.current_timestamp // sample_ns + 1) * sample_ns

    def poll():
        orders = hbt.orders(0)
        for oid, last in list(leaves.items()):
            o = orders.get(oid)
            if o is None:
                del leaves[oid]
                continue
            left, status = float(o.leaves_qty), int(o.status)
            if left < last - 1e-12 and status in (FILLED, PARTIALLY_FILLED):
                fills.append(Fill(oid - 1, int(o.exch_timestamp), hbt.current_timestamp, float(o.exec_price),
                                  last - left, bool(o.maker)))
            leaves[oid] = left
            if status not in (NEW, PARTIALLY_FILLED) and int(o.req) == NONE:
                del leaves[oid]  # done: filled, cancelled or expired, and no request of ours in flight

    def sample(ts):
        bid, ask = depth.best_bid, depth.best_ask
        mid = (bid + ask) / 2.0 if np.isfinite(bid) and np.isfinite(ask) else np.nan
        samples.append((ts, mid, float(sv.position), float(sv.balance), float(sv.fee)))

    def advance(target):
        nonlocal next_sample
        while True:
            now = hbt.current_timestamp
            stop = min(target, next_sample)
            if now >= stop:
                if now >= next_sample:
                    sample(next_sample)
                    next_sample += sample_ns
                    continue
                return True
            rc = hbt.wait_next_feed(True, stop - now)
            if rc == ORDER_RESPONSE:
                poll()
            elif rc == END_OF_DATA:
                return False

    ok = True
    for req in session.requests:
        if ok:
            ok = advance(req.ts + shift)
        if not ok:
            break
        oid = req.inst + 1
        if not req.replayed:
            codes["refused_live"] += 1
            continue
        if req.action == "submit":
            submit = hbt.submit_buy_order if req.side == BUY else hbt.submit_sell_order
            rc = submit(0, oid, req.price, req.qty, req.tif, req.order_type, False)
            if rc == 0:
                leaves[oid] = req.qty
        elif oid not in leaves:
            rc = 12  # done in the backtest (filled, cancelled, expired): nothing to cancel or modify
        elif req.action == "cancel":
            rc = hbt.cancel(0, oid, False)
        else:
            rc = hbt.modify(0, oid, req.price, req.qty, False)
            if rc == 0:
                leaves[oid] = float(hbt.orders(0).get(oid).leaves_qty)
        codes["sent" if rc == 0 else "in_flight" if rc == 11 else "not_open" if rc == 12 else "refused"] += 1
    if ok:  # let answers and fills of the last requests arrive (the session's end, plus a second)
        advance(max(session.end_ts, session.requests[-1].ts) + shift + 1_000_000_000)
    sample(hbt.current_timestamp)
    poll()
    arr = np.array(samples, dtype=np.float64).reshape(-1, 5)
    arr[:, 0] -= shift  # back to the journal's clock
    for f in fills:
        f.local_ts -= shift
    return fills, arr, codes


# --- comparison ------------------------------------------------------------------------------------------------------

def _aggregate(fills: list[Fill], tick: float, window_ns: int) -> dict[int, list[list]]:
    """Per instance: [exch_ts, price tick, qty, local_ts] with the fills at one price within `window_ns` of the
    first of them merged into one execution: one aggressor sweeping the queue reaches an order as one or several
    partial fills, and how it splits depends on the exact queue position, not on the model's decision."""
    out: dict[int, list[list]] = {}
    for f in sorted(fills, key=lambda f: (f.inst, f.exch_ts)):
        tick_no = int(round(f.price / tick))
        rows = out.setdefault(f.inst, [])
        if rows and rows[-1][1] == tick_no and f.exch_ts - rows[-1][0] <= window_ns:
            rows[-1][2] += f.qty
        else:
            rows.append([f.exch_ts, tick_no, f.qty, f.local_ts])
    return out


def excluded_instances(session: Session, gaps: list[dict]) -> set[int]:
    """Orders whose life (submit .. last event, or the session's end) meets a feed gap."""
    out = set()
    for i, o in enumerate(session.orders):
        end = o.end_ts if o.end_ts is not None else session.end_ts
        for g in gaps:
            g_end = g["end_ns"] if g["end_ns"] is not None else np.iinfo(np.int64).max
            if o.submit_ts <= g_end and end >= g["start_ns"]:
                out.add(i)
                break
    return out


def compare(session: Session, bt_fills: list[Fill], tick: float, lot: float, window_ns: int,
            excluded: set[int]) -> tuple[dict[str, Any], list[dict]]:
    """Matches live and backtest executions order by order: same price tick and quantity (in lots), exchange times
    at most `window_ns` apart, earliest first (an execution: an order's fills at one price within the window).
    Returns (figures, one row per pair or unmatched execution)."""
    if session.fills and all(f.exch_ts % 1_000_000 == 0 for f in session.fills):
        # live times are the exchange's milliseconds: the backtest's (refined within them) on the same grid
        bt_fills = [replace(f, exch_ts=f.exch_ts - f.exch_ts % 1_000_000) for f in bt_fills]
    live = _aggregate(session.fills, tick, window_ns)
    bt = _aggregate(bt_fills, tick, window_ns)
    rows: list[dict] = []
    n = {"live": 0, "backtest": 0, "matched": 0, "live_qty": 0.0, "common_qty": 0.0}
    first_dt = []
    for inst in sorted(set(live) | set(bt)):
        o = session.orders[inst]
        base = {"inst": inst, "order_id": o.order_id, "side": "BUY" if o.side == BUY else "SELL",
                "excluded": inst in excluded}
        lv, bv = live.get(inst, []), bt.get(inst, [])
        used = [False] * len(bv)
        for lf in lv:
            hit = None
            for j, bf in enumerate(bv):
                if not used[j] and bf[1] == lf[1] and round(bf[2] / lot) == round(lf[2] / lot) \
                        and abs(bf[0] - lf[0]) <= window_ns:
                    hit = j
                    break
            row = dict(base, live_ts=lf[0], live_price=lf[1] * tick, live_qty=lf[2],
                       bt_ts=None, bt_price=None, bt_qty=None, status="live_only", dt_ms=None)
            if hit is not None:
                used[hit] = True
                bf = bv[hit]
                row.update(bt_ts=bf[0], bt_price=bf[1] * tick, bt_qty=bf[2], status="matched",
                           dt_ms=(bf[0] - lf[0]) / 1e6)
            rows.append(row)
        for j, bf in enumerate(bv):
            if not used[j]:
                rows.append(dict(base, live_ts=None, live_price=None, live_qty=None, bt_ts=bf[0],
                                 bt_price=bf[1] * tick, bt_qty=bf[2], status="backtest_only", dt_ms=None))
        if inst in excluded:
            continue
        n["live"] += len(lv)
        n["backtest"] += len(bv)
        n["matched"] += sum(used)
        live_qty, bt_qty = sum(f[2] for f in lv), sum(f[2] for f in bv)
        n["live_qty"] += live_qty
        n["common_qty"] += min(live_qty, bt_qty)
        if lv and bv:
            first_dt.append(abs(bv[0][0] - lv[0][0]) / 1e6)
    rows.sort(key=lambda r: (r["live_ts"] if r["live_ts"] is not None else r["bt_ts"], r["inst"]))
    figures = {
        "live_fills": n["live"],
        "backtest_fills": n["backtest"],
        "matched_fills": n["matched"],
        "live_only": n["live"] - n["matched"],
        "backtest_only": n["backtest"] - n["matched"],
        "agreement": n["matched"] / n["live"] if n["live"] else (1.0 if not n["backtest"] else 0.0),
        "qty_agreement": n["common_qty"] / n["live_qty"] if n["live_qty"] else None,
        "fill_count_error": abs(n["backtest"] - n["live"]) / n["live"] if n["live"] else float(n["backtest"]),
        "first_fill_error_ms": float(np.median(first_dt)) if first_dt else None,
        "orders_filled_in_both": len(first_dt),
    }
    return figures, rows
