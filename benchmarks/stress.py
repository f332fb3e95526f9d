"""Crash hunt: many short backtests in parallel processes, from cold and warm caches, with concurrent compiles and
cache purges, faulthandler on.

    .venv/bin/python benchmarks/stress.py [--runs 200] [--jobs 3] [--purge-every 5] [--boundscheck] [--nrt]
                                          [--json OUT]

Strategies (synthetic data from hftbacktest.data.synthetic, so no sample files are needed):
  obi   order-book-imbalance market maker on ROIVectorMarketDepthBacktest: reads depth.bid_depth/ask_depth every
        100 ms step between roi_lb and roi_ub, a 3-level grid with cancels, intp_order_latency, an
        initial_snapshot, a Recorder;
  grid  grid trader on HashMapMarketDepthBacktest (GTX grid re-placed around the mid, IOC taker orders);
  glft  GLFT-style quotes from the last trades' intensity and the position (modify instead of cancel/submit).
Every strategy also calls a small cached helper with several argument types in a run-dependent order, as user
code compiled by several processes at once does (e.g. a sweep): the helper's results are checked too.

Runs share one NUMBA_CACHE_DIR. Every --purge-every runs a purger deletes a random half of the cache files (what
a stale-cache purge or an upgrade does to processes still starting), and now and then a run starts on its own
empty cache while others run (a cold compile next to warm loads). A run fails if it dies on a signal, exits
non-zero, or its result differs from the first result of the same strategy (wrong machine code loaded).
With --boundscheck every run uses NUMBA_BOUNDSCHECK=1 (its own cache); with --nrt each run reports numba's NRT
allocation balance (allocations - frees) once the bot, its views and the recorder are garbage; a run without
working counters counts as an error.
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from numba import njit

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "stress"
STRATEGIES = ("obi", "grid", "glft")  # plus "mix" in the bursts (--bursts)


# --- data -------------------------------------------------------------------------------------------------------


def prepare(work: Path = WORK) -> dict:
    """Synthetic feed (4 min) -> event array; the first 20 s become the initial snapshot; a latency table."""
    from hftbacktest.data.synthetic import generate
    from hftbacktest.data.utils import binancefutures
    from hftbacktest.data.utils.snapshot import create_last_snapshot
    from hftbacktest.types import order_latency_dtype

    work.mkdir(parents=True, exist_ok=True)
    paths = {k: work / f"{k}.npz" for k in ("data", "snapshot", "latency")}
    if all(p.exists() for p in paths.values()):
        return {k: str(v) for k, v in paths.items()}
    raw = work / "feed.gz"
    generate(str(raw), minutes=4.0, seed=11)
    events = binancefutures.convert(str(raw))
    cut = events["local_ts"][0] + 20_000_000_000
    head, tail = events[events["local_ts"] < cut], events[events["local_ts"] >= cut]
    snapshot = create_last_snapshot([head], 0.1, 0.001)
    rng = np.random.default_rng(3)
    t = np.arange(cut - 1_000_000_000, events["local_ts"][-1] + 2_000_000_000, 100_000_000, dtype=np.int64)
    lat = np.zeros(t.shape[0], order_latency_dtype)
    lat["req_ts"] = t
    lat["exch_ts"] = t + 1_500_000 + rng.exponential(1_000_000, t.shape[0]).astype(np.int64)
    lat["resp_ts"] = lat["exch_ts"] + 1_500_000 + rng.exponential(1_000_000, t.shape[0]).astype(np.int64)
    np.savez_compressed(paths["data"], data=tail)
    np.savez_compressed(paths["snapshot"], data=snapshot)
    np.savez_compressed(paths["latency"], data=lat)
    raw.unlink()
    return {k: str(v) for k, v in paths.items()}


# --- strategies -------------------------------------------------------------------------------------------------


@njit(cache=True)
def _mix(x, k):
    """A user helper compiled for several argument types (float64/int64/float32 arrays, int/float scalars)."""
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i] * k
    return acc


def _mix_check(order: int) -> float:
    """Call _mix with every signature in an order that depends on the run; the sum has one right value."""
    calls = [(np.arange(5, dtype=np.float64), 2), (np.arange(5, dtype=np.int64), 3),
             (np.arange(5, dtype=np.float32), 4), (np.arange(5, dtype=np.float64), 0.5),
             (np.arange(5, dtype=np.int32), 5)]
    rot = order % len(calls)
    total = 0.0
    for x, k in calls[rot:] + calls[:rot]:
        total += _mix(x, k)  # exact integers: the sum does not depend on the order
    return total


@njit(cache=True)
def obi_mm(hbt, recorder, steps):
    from_tick = 0
    tick = hbt.depth(0).tick_size
    lb = hbt.depth(0).roi_lb_tick
    ub = hbt.depth(0).roi_ub_tick
    depth = hbt.depth(0)  # held across elapse: must stay valid
    signal = 0.0
    n = 0
    while n < steps and hbt.elapse(100_000_000) == 0:
        n += 1
        hbt.clear_inactive_orders(0)
        bb = depth.best_bid_tick
        ba = depth.best_ask_tick
        if bb < lb or ba > ub or bb >= ba:
            continue
        bid_depth = depth.bid_depth
        ask_depth = depth.ask_depth
        lo = max(bb - 50, lb)
        hi = min(ba + 50, ub)
        sb = 0.0
        for t in range(lo, bb + 1):
            sb += bid_depth[t - lb]
        sa = 0.0
        for t in range(ba, hi + 1):
            sa += ask_depth[t - lb]
        if sb + sa > 0:
            signal = (sb - sa) / (sb + sa)
        mid_tick = (bb + ba) / 2.0
        pos = hbt.position(0)
        skew = signal * 2.0 - pos * 50.0
        orders = hbt.orders(0)
        values = orders.values()
        while values.has_next():
            o = values.get()
            if o.cancellable:
                target = o.side * 1  # keep orders within 3 ticks of their target
                dist = abs(o.price_tick - (mid_tick + skew - target * (2 + (o.order_id % 3))))
                if dist > 3:
                    hbt.cancel(0, o.order_id, False)
        for k in range(3):
            bid_t = np.floor(mid_tick + skew) - 2 - k
            ask_t = np.ceil(mid_tick + skew) + 2 + k
            bid_id = np.uint64(1_000_000 + int(bid_t) * 3 + k % 3)
            ask_id = np.uint64(2_000_000_000 + int(ask_t) * 3 + k % 3)
            if bid_t < bb + 1 and bid_id not in orders and pos < 0.05:
                hbt.submit_buy_order(0, bid_id, bid_t * tick, 0.001, 1, 0, False)
            if ask_t > ba - 1 and ask_id not in orders and pos > -0.05:
                hbt.submit_sell_order(0, ask_id, ask_t * tick, 0.001, 1, 0, False)
        recorder.record(hbt)
        from_tick += 1
    return n


@njit(cache=True)
def grid_mm(hbt, steps):
    tick = hbt.depth(0).tick_size
    n = 0
    next_id = 1
    while n < steps and hbt.elapse(100_000_000) == 0:
        n += 1
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        bb = depth.best_bid_tick
        ba = depth.best_ask_tick
        if bb == -9223372036854775808 or ba == 9223372036854775807:
            continue
        mid = (bb + ba) // 2
        orders = hbt.orders(0)
        values = orders.values()
        while values.has_next():
            o = values.get()
            if o.cancellable and abs(o.price_tick - mid) > 12:
                hbt.cancel(0, o.order_id, False)
        for k in range(1, 6):
            b = (mid - 2 * k) // 2 * 2
            a = (mid + 2 * k + 1) // 2 * 2
            if np.uint64(b) not in orders and b < ba:
                hbt.submit_buy_order(0, np.uint64(b), b * tick, 0.002, 1, 0, False)
            if np.uint64(a) not in orders and a > bb:
                hbt.submit_sell_order(0, np.uint64(a), a * tick, 0.002, 1, 0, False)
        if n % 37 == 0:
            pos = hbt.position(0)
            if pos > 0.004:
                hbt.submit_sell_order(0, np.uint64(10_000_000 + next_id), bb * tick, 0.002, 3, 0, True)
            elif pos < -0.004:
                hbt.submit_buy_order(0, np.uint64(10_000_000 + next_id), ba * tick, 0.002, 3, 0, True)
            next_id += 1
    return n


@njit(cache=True)
def glft_mm(hbt, steps):
    tick = hbt.depth(0).tick_size
    n = 0
    arrivals = 0.0
    while n < steps and hbt.elapse(100_000_000) == 0:
        n += 1
        trades = hbt.last_trades(0)
        arrivals = 0.95 * arrivals + 0.05 * trades.shape[0]
        hbt.clear_last_trades(0)
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        bb = depth.best_bid_tick
        ba = depth.best_ask_tick
        if bb == -9223372036854775808 or ba == 9223372036854775807:
            continue
        pos = hbt.position(0) / 0.001
        half = 1.0 + 2.0 / (1.0 + arrivals)
        skew = 0.3 * pos
        bid_t = min(np.floor((bb + ba) / 2.0 - half - skew), bb)
        ask_t = max(np.ceil((bb + ba) / 2.0 + half - skew), ba)
        orders = hbt.orders(0)
        for oid, px, buy in ((np.uint64(1), bid_t, True), (np.uint64(2), ask_t, False)):
            o = orders.get(oid)
            if o is None:
                if buy:
                    hbt.submit_buy_order(0, oid, px * tick, 0.001, 1, 0, False)
                else:
                    hbt.submit_sell_order(0, oid, px * tick, 0.001, 1, 0, False)
            elif o.cancellable and o.price_tick != px:
                hbt.modify(0, oid, px * tick, 0.001, False)
    return n


def _run(strategy: str, order: int, steps: int, paths: dict) -> dict:
    """Build, run and summarise one backtest; every object it made is unreachable once it returns."""
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest
    from hftbacktest.recorder import Recorder

    mix = _mix_check(order)
    asset = (BacktestAsset().data([paths["data"]]).tick_size(0.1).lot_size(0.001).linear_asset(1.0)
             .power_prob_queue_model(2.0).no_partial_fill_exchange().trading_value_fee_model(-0.00005, 0.0007))
    if strategy == "obi":
        asset = (asset.roi_lb(55_000.0).roi_ub(67_000.0).initial_snapshot(paths["snapshot"])
                 .intp_order_latency([paths["latency"]]))
        hbt = ROIVectorMarketDepthBacktest([asset])
        rec = Recorder(1, 5_000)
        n = obi_mm(hbt, rec.recorder, steps)
        extra = float(np.nansum(rec.get(0)["price"]))
    else:
        asset = asset.constant_order_latency(2_000_000, 2_000_000)
        hbt = HashMapMarketDepthBacktest([asset])
        n = (grid_mm if strategy == "grid" else glft_mm)(hbt, steps)
        extra = 0.0
    sv = hbt.state_values(0)
    out = {"steps": int(n), "position": round(float(sv.position), 9), "balance": round(float(sv.balance), 6),
           "trades": int(sv.num_trades), "extra": round(extra, 3), "mix": mix}
    hbt.close()
    return out


def child(strategy: str, order: int, steps: int) -> dict:
    """One run: build, run, report the final state (and NRT balance when NUMBA_NRT_STATS=1)."""
    faulthandler.enable()
    if strategy == "mix":  # a burst run: only the multi-signature helper, in a process that imported the package
        import hftbacktest.kernels  # noqa: F401

        return {"mix": _mix_check(order)}
    import gc

    from numba.core.registry import cpu_target
    from numba.core.runtime import rtsys

    paths = prepare()
    stats = os.environ.get("NUMBA_NRT_STATS") == "1"
    if stats:
        # numba switches the counters on when its runtime initialises, lazily at the first compile: a process
        # that only loads cached code never gets there and reading the counters raises
        rtsys.initialize(cpu_target.target_context)
        before = rtsys.get_allocation_stats()
    out = _run(strategy, order, steps, paths)
    if stats:
        gc.collect()  # the bot, its views and the recorder are garbage now: every meminfo they held must be freed
        after = rtsys.get_allocation_stats()
        out["nrt_leak"] = (after.alloc - before.alloc) - (after.free - before.free)
        out["nrt_allocs"] = after.alloc - before.alloc
    return out


# --- driver -----------------------------------------------------------------------------------------------------


def _purge(cache: Path, rng: random.Random) -> int:
    files = [p for p in cache.rglob("*") if p.suffix in (".nbi", ".nbc")]
    victims = rng.sample(files, len(files) // 2) if files else []
    for p in victims:
        p.unlink(missing_ok=True)
    return len(victims)


def _one(k: int, strategy: str, cache: Path, env: dict, steps: int) -> dict:
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(Path(__file__)), "--child", strategy, str(k), str(steps)],
                          env={**env, "NUMBA_CACHE_DIR": str(cache)}, capture_output=True, text=True, timeout=1800)
    res = {"k": k, "strategy": strategy, "rc": proc.returncode, "wall": round(time.time() - t0, 2),
           "cold": cache.name.startswith("cold")}
    if proc.returncode == 0:
        res["result"] = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
        res["stderr"] = proc.stderr[-4000:]
    print(f"run {k} {strategy}{' cold' if res['cold'] else ''}: rc={proc.returncode} {res['wall']} s", file=sys.stderr,
          flush=True)
    return res


def _burst(b: int, cache: Path, env: dict, jobs: int) -> list[dict]:
    """Purge the helper's cache, then start `jobs` processes at once, each compiling its signatures in another
    order (what a sweep's workers do on their first start)."""
    for p in cache.rglob("*_mix*"):
        p.unlink(missing_ok=True)
    procs = [subprocess.Popen([sys.executable, str(Path(__file__)), "--child", "mix", str(b * jobs + j), "0"],
                              env={**env, "NUMBA_CACHE_DIR": str(cache)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for j in range(jobs)]
    out = []
    for j, proc in enumerate(procs):
        stdout, stderr = proc.communicate(timeout=600)
        res = {"k": f"burst{b}.{j}", "strategy": "mix", "rc": proc.returncode, "wall": 0.0, "cold": False}
        if proc.returncode == 0:
            res["result"] = json.loads(stdout.strip().splitlines()[-1])
        else:
            res["stderr"] = stderr[-4000:]
        out.append(res)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=3, metavar=("STRATEGY", "ORDER", "STEPS"), help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1500, help="100 ms steps per run (default 1500 = 2.5 min)")
    ap.add_argument("--purge-every", type=int, default=5, help="purge half the shared cache every N runs (0: never)")
    ap.add_argument("--cold-every", type=int, default=25, help="every N-th run starts on its own empty cache")
    ap.add_argument("--bursts", type=int, default=0, help="then N bursts of --jobs simultaneous starts of the "
                    "multi-signature helper on a purged cache")
    ap.add_argument("--boundscheck", action="store_true")
    ap.add_argument("--nrt", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return 0

    prepare()
    rng = random.Random(args.seed)
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    if args.boundscheck:
        env["NUMBA_BOUNDSCHECK"] = "1"
    if args.nrt:
        env["NUMBA_NRT_STATS"] = "1"
    tmp = Path(tempfile.mkdtemp(prefix="hftbt-stress-"))
    shared = tmp / "shared"
    reference: dict[str, dict] = {}
    results = []
    purged = 0
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = []
        for k in range(args.runs):
            if args.purge_every and k and k % args.purge_every == 0:
                purged += _purge(shared, rng) if shared.exists() else 0
            cache = tmp / f"cold{k}" if args.cold_every and k % args.cold_every == args.cold_every - 1 else shared
            futures.append(pool.submit(_one, k, STRATEGIES[k % len(STRATEGIES)], cache, env, args.steps))
            if len(futures) >= args.jobs:  # keep the purges interleaved with running processes
                futures[-args.jobs].result()
        results = [f.result() for f in futures]
    for b in range(args.bursts):
        results += _burst(b, shared, env, args.jobs)
    crashes = [r for r in results if r["rc"] < 0]
    errors = [r for r in results if r["rc"] > 0]
    mismatches = []
    leaks = []
    for r in results:
        if r["rc"] != 0:
            continue
        expected = {"mix": {"mix": 145.0}}.get(r["strategy"], r["result"])
        ref = reference.setdefault(r["strategy"], {k: v for k, v in expected.items() if not k.startswith("nrt_")})
        got = {k: v for k, v in r["result"].items() if not k.startswith("nrt_")}
        if got != ref:
            mismatches.append({"k": r["k"], "strategy": r["strategy"], "got": got, "expected": ref})
        if args.nrt and r["strategy"] != "mix" and not r["result"].get("nrt_allocs"):
            errors.append({**r, "rc": 1, "stderr": "NRT statistics missing or zero: the leak check did not run"})
        if r["result"].get("nrt_leak"):
            leaks.append({"k": r["k"], "leak": r["result"]["nrt_leak"]})
    walls = sorted(r["wall"] for r in results if r["strategy"] != "mix")
    summary = {"runs": len(results), "crashes": len(crashes), "errors": len(errors), "mismatches": len(mismatches),
               "nrt_leaks": len(leaks), "cold_runs": sum(r["cold"] for r in results), "purged_files": purged,
               "bursts": args.bursts, "boundscheck": args.boundscheck,
               "wall_median": walls[len(walls) // 2] if walls else 0.0,
               "reference": reference}
    for r in crashes + errors:
        print(f"run {r['k']} ({r['strategy']}) rc={r['rc']}:\n{r['stderr']}", file=sys.stderr)
    for m in mismatches[:10]:
        print(f"mismatch: {m}", file=sys.stderr)
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": results, "mismatches": mismatches,
                                               "leaks": leaks}, indent=1))
    return 1 if crashes or errors or mismatches or leaks else 0


if __name__ == "__main__":
    sys.exit(main())
