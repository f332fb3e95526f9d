"""Replay speed, start-up and memory: this package vs hftbacktest 2.4.4, measured in the same run.

    .venv/bin/python benchmarks/replay.py [--format npy|npz|both] [--repeat N] [--json OUT]

Workload: the docs example (constant 1 ms order latency both ways, power_prob_queue_model(2.0), no partial fill,
maker -0.5 bp / taker 7 bp) on the btcusdt sample repeated in time to ~10 M events
(benchmarks/_work/btcusdt_20240808_replay.{npy,npz}, made by prepare_data.py). Each figure is a fresh process
of benchmarks/strategies/replay_child.py under each venv:
  warm          second call in one process (fresh bot each time; the strategy call alone is timed) -> events/s
  second proc   wall time from spawning a new interpreter to the return of its first `elapse` (imports, build,
                numba cache load), median of --repeat runs, after the warm process filled the cache
  first compile our package with an empty NUMBA_CACHE_DIR: spawn -> the whole example done on 150 000 rows
  peak RSS      ru_maxrss of the warm process (two builds and runs over the full file)
The final states must be equal (floats to 1e-9 relative, as in parity.py).
Targets (issue 3): warm <= 0.7x ref, second process <= 1.0 s, first compile <= 15 s, peak RSS <= 0.5x ref.
Numba caches of both sides live in benchmarks/_work/numba_cache/ (wiped by --cold).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile

import numpy as np

import _ref

CHILD = str(_ref.STRATEGIES / "replay_child.py")
TARGETS = {"warm": 0.7, "second": 1.0, "compile": 15.0, "rss": 0.5}


def child(python, mode: str, data, cache_dir) -> tuple[dict, float]:
    """Run one measured child; return its JSON and its spawn time."""
    res = _ref.run_json(python, [CHILD, mode, str(data)], env={"NUMBA_CACHE_DIR": str(cache_dir), "CI": "1"},
                        cwd=_ref.STRATEGIES, timeout=3600)
    return res.lines[-1], res.spawned_at


def measure(side: str, python, data, quick_data, repeat: int, cache_root) -> dict:
    cache = cache_root / side
    cache.mkdir(parents=True, exist_ok=True)
    print(f"  {side}: warm run on {data.name} ...", file=sys.stderr, flush=True)
    warm, _ = child(python, "warm", data, cache)
    print(f"  {side}: warm {warm['warm_s']:.3f} s (first run {warm['first_run_s']:.3f} s), "
          f"peak RSS {warm['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    seconds = []
    for _ in range(repeat):
        first, spawned = child(python, "first-event", data, cache)
        seconds.append(first["t_first_event"] - spawned)
        print(f"  {side}: second process {seconds[-1]:.3f} s", file=sys.stderr, flush=True)
    out = {"warm": warm, "second_process_s": statistics.median(seconds), "second_process_all_s": seconds,
           "second_process_build_s": first["t_first_event"] - first["t_built"], "first_event": first}
    with tempfile.TemporaryDirectory(prefix="numba-empty-") as empty:
        print(f"  {side}: first-ever compile (empty cache) ...", file=sys.stderr, flush=True)
        comp, spawned = child(python, "compile", quick_data, empty)
        out["compile_s"] = comp["t_done"] - spawned
        print(f"  {side}: first compile {out['compile_s']:.3f} s", file=sys.stderr, flush=True)
        out["compile"] = comp
    return out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(fmt: str, events: int, ours: dict, ref: dict) -> list[str]:
    ow, rw = ours["warm"], ref["warm"]
    lines = [f"replay of {events:,} events from .{fmt} (ours | ref | ours/ref | target)"]
    same = ow["state"].keys() == rw["state"].keys() and all(
        math.isclose(ow["state"][k], rw["state"][k], rel_tol=1e-9, abs_tol=1e-12) for k in rw["state"])
    lines.append(f"  final state equal: {same}  ours={ow['state']}  ref={rw['state']}")
    r_warm = ow["warm_s"] / rw["warm_s"]
    lines.append(f"  warm run          {ow['warm_s']:8.3f} s | {rw['warm_s']:8.3f} s | {r_warm:6.2f}x | "
                 f"<= {TARGETS['warm']}x {verdict(r_warm <= TARGETS['warm'])}")
    lines.append(f"  events/s          {events / ow['warm_s'] / 1e6:8.2f} M | {events / rw['warm_s'] / 1e6:8.2f} M |")
    lines.append(f"  first run (+jit)  {ow['first_run_s']:8.3f} s | {rw['first_run_s']:8.3f} s |")
    lines.append(f"  build bot         {ow['build_s']:8.3f} s | {rw['build_s']:8.3f} s |")
    so, sr = ours["second_process_s"], ref["second_process_s"]
    lines.append(f"  second process    {so:8.3f} s | {sr:8.3f} s | {so / sr:6.2f}x | "
                 f"<= {TARGETS['second']} s {verdict(so <= TARGETS['second'])}")
    co, cr = ours["compile_s"], ref["compile_s"]
    lines.append(f"  first compile     {co:8.3f} s | {cr:8.3f} s | {co / cr:6.2f}x | "
                 f"<= {TARGETS['compile']} s {verdict(co <= TARGETS['compile'])}")
    mo, mr = ow["peak_rss_mb"], rw["peak_rss_mb"]
    lines.append(f"  peak RSS (warm)   {mo:8.0f} MB | {mr:7.0f} MB | {mo / mr:6.2f}x | "
                 f"<= {TARGETS['rss']}x {verdict(mo / mr <= TARGETS['rss'])}")
    lines.append(f"    at exit: anon {ow['rss_anon_mb']:.0f} / file {ow['rss_file_mb']:.0f} MB | "
                 f"anon {rw['rss_anon_mb']:.0f} / file {rw['rss_file_mb']:.0f} MB")
    fo, fr = ours["first_event"], ref["first_event"]
    lines.append(f"  second-process RSS {fo['peak_rss_mb']:7.0f} MB | {fr['peak_rss_mb']:7.0f} MB |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--format", choices=("npy", "npz", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=3, help="second-process runs per side (median reported)")
    ap.add_argument("--cold", action="store_true", help="wipe the benchmark's numba caches first")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--ours", metavar="PYTHON")
    ap.add_argument("--ref", metavar="PYTHON")
    args = ap.parse_args(argv)

    formats = ("npy", "npz") if args.format == "both" else (args.format,)
    quick = _ref.converted("btcusdt", "ref", 150_000)
    _ref.require(quick, *(_ref.replay_file(f) for f in formats))
    py = _ref.interpreters(args.ours, args.ref)
    cache_root = _ref.WORK / "numba_cache"
    if args.cold:
        shutil.rmtree(cache_root, ignore_errors=True)
    results, failed = {}, False
    for fmt in formats:
        data = _ref.replay_file(fmt)
        npy = _ref.replay_file("npy")  # same rows as the .npz; cheap to count
        events = len(np.load(npy, mmap_mode="r")) if npy.exists() else len(np.load(data)["data"])
        res = {side: measure(side, py[side], data, quick, args.repeat, cache_root) for side in ("ref", "ours")}
        results[fmt] = {"events": events, **res}
        lines = report(fmt, events, res["ours"], res["ref"])
        failed |= any("FAIL" in ln for ln in lines) or "final state equal: False" in lines[1]
        print("\n".join(lines), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
