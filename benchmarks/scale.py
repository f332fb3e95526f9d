"""Multi-file data lists: memory stays flat and time grows linearly with the number of events.

    .venv/bin/python benchmarks/scale.py [--days 30] [--rows 200000] [--steps 1,2,5,10,20,30] [--no-ref]

Writes `--days` synthetic days (a random-walk book: depth updates on both sides plus trades, `--rows` events a day)
as compressed `.npz` files (what `convert` writes) into benchmarks/_work/scale/, then, for every step k, backtests
the first k files as one data list in a fresh process per package (the docs example's asset config,
`elapse(100 ms)` until the data ends, no orders) and prints one line per step: files, events, seconds and ns/event,
peak RSS, for this package and for hftbacktest 2.4.4, with the ratios ours/reference; both must take the same
number of steps. Ends with a least-squares line (time against events) per package and the load average.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import _ref

DAY_NS = 86_400 * 10**9

CHILD = """
import json, resource, sys, time
from numba import njit
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

@njit
def replay(hbt):
    n = 0
    while hbt.elapse(100_000_000) == 0:
        n += 1
    return n

def build(paths):
    asset = (BacktestAsset().data(paths).linear_asset(1.0).constant_order_latency(1_000_000, 1_000_000)
             .power_prob_queue_model(2.0).no_partial_fill_exchange().trading_value_fee_model(-0.00005, 0.0007)
             .tick_size(0.1).lot_size(0.001))
    return HashMapMarketDepthBacktest([asset])

paths = sys.argv[1:]
hbt = build(paths[:1]); replay(hbt); hbt.close()  # compile / load the cache outside the measurement
t0 = time.perf_counter()
hbt = build(paths)
steps = replay(hbt)
seconds = time.perf_counter() - t0
hbt.close()
print(json.dumps({"seconds": seconds, "steps": steps,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))
"""


def day(k: int, rows: int) -> np.ndarray:
    """One synthetic day: 90 % depth updates a few ticks from a random-walk mid, 10 % trades at the touch."""
    from hftbacktest.types import (BUY_EVENT, DEPTH_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, TRADE_EVENT,
                                   event_dtype)

    rng = np.random.default_rng(1000 + k)
    out = np.zeros(rows, event_dtype)
    ts = k * DAY_NS + np.sort(rng.integers(0, DAY_NS, rows))
    mid = 600_000 + np.cumsum(rng.integers(-1, 2, rows))  # ticks of 0.1
    buy = rng.random(rows) < 0.5
    trade = rng.random(rows) < 0.1
    offset = rng.integers(1, 20, rows)
    tick = np.where(buy, mid - offset, mid + offset)
    tick = np.where(trade, np.where(buy, mid + 1, mid - 1), tick)
    side = np.where(buy, BUY_EVENT, SELL_EVENT)
    out["ev"] = EXCH_EVENT | LOCAL_EVENT | side | np.where(trade, TRADE_EVENT, DEPTH_EVENT)
    out["exch_ts"] = ts
    out["local_ts"] = ts + 2_000_000
    out["px"] = tick * 0.1
    out["qty"] = np.where(rng.random(rows) < 0.2, 0.0, np.round(rng.random(rows) * 5, 3) + 0.001)
    out["qty"][trade] = np.round(rng.random(int(trade.sum())), 3) + 0.001
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--steps", default="1,2,5,10,20,30")
    ap.add_argument("--no-ref", action="store_true", help="this package only")
    ap.add_argument("--ours")
    ap.add_argument("--ref")
    args = ap.parse_args(argv)
    folder = _ref.WORK / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(args.days):
        path = folder / f"day{k:02d}_{args.rows}.npz"
        if not path.exists():
            tmp = folder / f".tmp_day{k:02d}_{args.rows}.npz"
            np.savez_compressed(tmp, data=day(k, args.rows))
            tmp.replace(path)
        paths.append(str(path))
    sides = ("ours",) if args.no_ref else ("ours", "ref")
    py = _ref.interpreters(args.ours, args.ref)
    load_before = os.getloadavg()
    head = f"{'files':>5} {'events':>11}"
    for side in sides:
        head += f" {side + ' s':>8} {'ns/ev':>6} {'RSS MB':>6}"
    if len(sides) == 2:
        head += f" {'time o/r':>8} {'RSS o/r':>7}"
    print(head, flush=True)
    points: dict[str, list[tuple[int, float, float]]] = {side: [] for side in sides}
    same = True
    for k in [int(s) for s in args.steps.split(",") if int(s) <= args.days]:
        events = k * args.rows
        res = {side: _ref.run_snippet(py[side], CHILD, *paths[:k], timeout=3600).lines[-1] for side in sides}
        line = f"{k:>5} {events:>11,}"
        for side in sides:
            r = res[side]
            points[side].append((events, r["seconds"], r["peak_rss_mb"]))
            line += f" {r['seconds']:>8.2f} {r['seconds'] / events * 1e9:>6.0f} {r['peak_rss_mb']:>6.0f}"
        if len(sides) == 2:
            o, r = res["ours"], res["ref"]
            line += f" {o['seconds'] / r['seconds']:>8.2f} {o['peak_rss_mb'] / r['peak_rss_mb']:>7.2f}"
            if o["steps"] != r["steps"]:
                same = False
                line += f"  STEPS DIFFER ({o['steps']} vs {r['steps']})"
        print(line, flush=True)
    for side, pts in points.items():
        if len(pts) >= 2:
            xs, ys, rss = (np.array(v) for v in zip(*pts))
            slope, intercept = np.polyfit(xs, ys, 1)
            worst = max(abs(y - (intercept + slope * x)) / y for x, y in zip(xs, ys))
            print(f"{side}: least-squares line {intercept:.3f} s + {slope * 1e9:.1f} ns/event (worst point "
                  f"{worst:.0%} off it); peak RSS {rss.min():.0f}..{rss.max():.0f} MB")
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} (1 min), {os.cpu_count()} cores")
    if not same:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
