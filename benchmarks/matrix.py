"""Warm engine time in the configurations users write: this package vs hftbacktest 2.4.4, in the same run.

    .venv/bin/python benchmarks/matrix.py [--repeat 3] [--rounds 1] [--quick] [--only GLOB ...] [--json OUT]

Cells (btcusdt sample, constant 1 ms latency, power_prob(2), no partial fill, maker -0.5 bp / taker 7 bp unless the
name says otherwise; strategies in benchmarks/strategies, shapes.py documents its shapes):
  example            the docs example, elapse(10 ms), one quote a side 5 bp away
  grid-api           grid.py: 3 levels a side at the touch, modify/cancel/IOC/FOK/MARKET, wait_next_feed + elapse
  requote12          shapes requote: 12 GTX quotes a side 5 ticks apart from the touch, elapse(10 ms); every
                     touch move re-sends the whole ladder (order-table heavy)
  roi-scan           ROIVector depth; each step sums bid_qty_at_tick / ask_qty_at_tick over 5 000 ticks a side
  wait-feed          wait_next_feed(True, 1 s) loop, re-quote on every touch change
  last-trades        elapse(10 ms), reads and clears last_trades each step (capacity 10 000)
  requote12-intp     requote12 with the synthetic intp_order_latency table
  requote12-partial  requote12 on the partial-fill exchange (reference_compatible), 0.013 BTC quotes
  requote12-<queue>  requote12 with log_prob, log_prob2, power_prob3(3)
  requote12-2assets  btcusdt + ethusdt;   requote12-8assets: 4 x btcusdt + 4 x ethusdt
  split-*            breakdown.py: no strategy at all (the data path, one wake-up), wake-ups every 10 ms only,
                     the requote12 ladder placed once and left resting; differences between cells say where the
                     time per event goes
Each strategy script runs in one fresh process per package with every cell repeated 1 + --repeat times; the first
run compiles (the reference's strategies cannot be cached), the figure is the fastest of the others (the strategy
call only, `run_s`; `b+r o/r` is the same ratio for bot build + strategy call, since this package reads and checks
the first 262 144 rows of a file while building the bot and the reference loads its data during the run). Final
states, steps and timestamps of both packages must be equal (as in parity.py).
Prints the load average before and after: the ratios are only as good as the box is quiet. On a shared box use
--rounds N: the pair of processes runs N times, the side going first alternating, and each figure is the fastest
over all rounds, so a burst of load from elsewhere hits both sides alike. `cpu o/r` is the same ratio for the CPU
time of the strategy call (every thread of the process: both packages read data in background threads).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from pathlib import Path

import numpy as np

import _ref
import parity

REQUOTE = {"shape": "requote", "levels": 12, "spacing": 5, "step": 10_000_000}
# an odd quote size (0.013 BTC): a resting order filled by exactly its leaves_qty stays behind at the reference's
# exchange and stops its replay with code 14 at the next touch (reference bug #312, kept by reference_compatible)
PARTIAL = {**REQUOTE, "notional": 790.0, "max_notional": 20_000.0}
ONE_WAKE_UP = 10**15  # longer than any sample: elapse returns once, at the end of the data


def cells(rows: int | None) -> list[tuple[str, str, dict]]:
    """(script, cell name, run) for every cell."""
    def asset(sym: str, **over) -> dict:
        return parity._asset(sym, [str(_ref.converted(sym, "ref", rows))], **{"latency": parity.CONST_1MS, **over})

    btc = lambda **o: asset("btcusdt", **o)  # noqa: E731
    eth = lambda **o: asset("ethusdt", **o)  # noqa: E731
    intp = {"kind": "intp", "files": [str(_ref.latency_file())], "offset": 0}
    out = [
        ("example", "example", [btc()], "hashmap", {}),
        ("grid", "grid-api", [btc()], "hashmap", {}),
        ("shapes", "requote12", [btc()], "hashmap", REQUOTE),
        ("shapes", "roi-scan", [btc(roi_lb=parity.ROI["btcusdt"][0], roi_ub=parity.ROI["btcusdt"][1])], "roivector",
         {"shape": "roi_scan", "window": 5_000}),
        ("shapes", "wait-feed", [btc()], "hashmap", {"shape": "wait_feed"}),
        ("shapes", "last-trades", [btc(last_trades_capacity=10_000)], "hashmap", {"shape": "trades"}),
        ("shapes", "requote12-intp", [btc(latency=intp)], "hashmap", REQUOTE),
        ("shapes", "requote12-partial", [btc(exchange="partial_fill", reference_compatible=True)], "hashmap",
         PARTIAL),
        ("shapes", "requote12-log_prob", [btc(queue={"kind": "log_prob"})], "hashmap", REQUOTE),
        ("shapes", "requote12-log_prob2", [btc(queue={"kind": "log_prob2"})], "hashmap", REQUOTE),
        ("shapes", "requote12-power_prob3", [btc(queue={"kind": "power_prob3", "n": 3.0})], "hashmap", REQUOTE),
        ("shapes", "requote12-2assets", [btc(), eth()], "hashmap", REQUOTE),
        ("shapes", "requote12-8assets", [btc(), eth()] * 4, "hashmap", REQUOTE),
        # cut-down strategies that split the cells above (time per event: data path, wake-ups, resting orders)
        ("breakdown", "split-data-path", [btc()], "hashmap", {"shape": "idle", "step": ONE_WAKE_UP}),
        ("breakdown", "split-wake-10ms", [btc()], "hashmap", {"shape": "idle", "step": 10_000_000}),
        ("breakdown", "split-static12", [btc()], "hashmap", {**REQUOTE, "shape": "static"}),
        ("breakdown", "split-8assets-data-path", [btc(), eth()] * 4, "hashmap",
         {"shape": "idle", "step": ONE_WAKE_UP}),
    ]
    return [(script, name, {"name": name, "depth": depth, "assets": assets, "params": params})
            for script, name, assets, depth, params in out]


def events(run: dict) -> int:
    n = 0
    for a in run["assets"]:
        for path in a["data"]:
            with np.load(path) as npz:
                n += npz["data"].shape[0]
    return n


def run_side(python, script: str, runs: list[dict], repeat: int, side: str) -> dict[str, list[dict]]:
    """Every run of `runs` 1 + repeat times in one process; name -> its results in order."""
    path = _ref.WORK / f"matrix_runs_{script}.json"
    path.write_text(json.dumps([r for r in runs for _ in range(1 + repeat)]))
    res = _ref.run_json(python, [str(_ref.STRATEGIES / f"{script}.py"), str(path)], timeout=7200,
                        env={"NUMBA_CACHE_DIR": str(_ref.WORK / "numba_cache" / side)})
    out: dict[str, list[dict]] = {}
    for line in res.lines:
        out.setdefault(line["name"], []).append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per cell after the compiling one")
    ap.add_argument("--rounds", type=int, default=1, help="process pairs per script, alternating which side starts")
    ap.add_argument("--quick", action="store_true", help="first 150 000 rows of each sample")
    ap.add_argument("--only", action="append", default=[], help="cell name glob (repeatable)")
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--ours")
    ap.add_argument("--ref")
    args = ap.parse_args(argv)
    py = _ref.interpreters(args.ours, args.ref)
    rows = 150_000 if args.quick else None
    todo = [c for c in cells(rows) if not args.only or any(fnmatch.fnmatch(c[1], g) for g in args.only)]
    _ref.require(*{_ref.latency_file(), *(p for _, _, r in todo for a in r["assets"] for p in map(Path, a["data"]))})
    load_before = os.getloadavg()
    results: dict[str, dict[str, list[dict]]] = {"ours": {}, "ref": {}}
    for script in dict.fromkeys(s for s, _, _ in todo):
        runs = [r for s, _, r in todo if s == script]
        for k in range(max(args.rounds, 1)):
            for side in ("ours", "ref") if k % 2 == 0 else ("ref", "ours"):
                print(f"  {side}: {script} x {len(runs)} cells, round {k + 1} ...", file=sys.stderr, flush=True)
                for name, lines in run_side(py[side], script, runs, args.repeat, side).items():
                    # the first run of every round compiles the strategy: keep it first, drop the others
                    have = results[side].setdefault(name, [])
                    have.extend(lines if not have else lines[1:])
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} (1 min), "
          f"{os.cpu_count()} cores; warm = fastest of {args.repeat} runs after the compiling one")
    print(f"{'cell':24} {'events':>10} {'ours s':>8} {'ref s':>8} {'ours/ref':>8} {'ours ns/ev':>10} "
          f"{'ref ns/ev':>9} {'b+r o/r':>7} {'cpu o/r':>7}  state")
    table, all_equal = [], True
    for _, name, run in todo:
        o, r = results["ours"].get(name, []), results["ref"].get(name, [])
        timed_o = [x["run_s"] for x in o[1:] if "run_s" in x]
        timed_r = [x["run_s"] for x in r[1:] if "run_s" in x]
        same = bool(o and r) and all(parity.compare(name, x, r[0])[0] for x in o) and \
            all(parity.compare(name, x, r[0])[0] for x in r)
        all_equal &= same
        n = events(run)
        if not timed_o or not timed_r:
            print(f"{name:24} {n:>10,} {'failed':>8}")
            table.append({"cell": name, "events": n, "error": True})
            continue
        to, tr = min(timed_o), min(timed_r)
        bro = min(x["build_s"] + x["run_s"] for x in o[1:] if "run_s" in x)
        brr = min(x["build_s"] + x["run_s"] for x in r[1:] if "run_s" in x)
        co = min(x["cpu_s"] for x in o[1:] if "run_s" in x)
        cr = min(x["cpu_s"] for x in r[1:] if "run_s" in x)
        print(f"{name:24} {n:>10,} {to:8.3f} {tr:8.3f} {to / tr:8.2f} {to / n * 1e9:10.1f} {tr / n * 1e9:9.1f} "
              f"{bro / brr:7.2f} {co / cr:7.2f}  {'equal' if same else 'DIFFERENT'}")
        table.append({"cell": name, "events": n, "ours_s": timed_o, "ref_s": timed_r, "ratio": to / tr,
                      "build_run_ratio": bro / brr, "cpu_ratio": co / cr, "state_equal": same,
                      "steps": o[0].get("steps")})
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as fh:
            json.dump({"load_before": load_before, "load_after": load_after, "cells": table}, fh, indent=1)
        os.replace(tmp, args.json)
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
