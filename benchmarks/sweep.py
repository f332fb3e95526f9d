"""Sweep speed: 64 configurations of examples/gridtrading.py on the local backend (1 and 2 workers) and on Ray.

    .venv/bin/python benchmarks/sweep.py                  # btcusdt sample if present (converted once), else synthetic
    .venv/bin/python benchmarks/sweep.py --synthetic 5    # a 5-minute synthetic feed instead
    .venv/bin/python benchmarks/sweep.py --configs 16     # fewer configurations (first N of the grid)
    .venv/bin/python benchmarks/sweep.py --step-ms 10     # more strategy work per run (a 10 ms step)

Every sweep runs once as a warm-up (2 configurations, so the strategy is in numba's cache for this process, the
local workers and Ray's workers), then timed:
* local backend, 1 worker and 2 workers: wall seconds, the speed-up, and CPU seconds (this process + workers): on
  a busy Linux box each session gets a fair share of the CPUs (autogroup scheduling), so a second worker adds no
  wall-clock speed when other sessions keep the cores busy; check the load averages printed with the figures;
* Ray, a local cluster started by the sweep (`--backend ray`, 2 CPUs), with and without its start-up;
* per-task overhead in a fresh process: interpreter + package import, data load, first run (numba cache hit for the
  engine and the strategy) vs the same run again in that process.
The results of the three sweeps are checked equal (all columns but the run time). Prints one JSON object.
Generated files go to benchmarks/_work/sweep/ (git-ignored).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "binance-usdm" / "btcusdt_20240808.gz"
WORK = ROOT / "benchmarks" / "_work" / "sweep"

SWEEP = """
strategy = "{strategy}:gridtrading"
[[asset]]
name = "BTCUSDT"
data = ["{data}"]
tick_size = 0.1
lot_size = 0.001
latency = {{ model = "constant", entry = 2_000_000, response = 2_000_000 }}
queue = {{ model = "power_prob", n = 2.0 }}
fee = {{ model = "trading_value", maker = -0.00005, taker = 0.0007 }}
[params]
max_steps = 1_000_000_000
step_ns = {step_ns}
order_qty = 0.001
max_position = 0.05
[grid]
grid_num = [2, 5, 10, 20]
grid_interval_ticks = [1, 5, 10, 20]
half_spread_ticks = [1, 5, 10, 20]
"""

OVERHEAD = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import hftbacktest.backtest.bot, hftbacktest.sweep as sw
    t_import = time.perf_counter() - t0
    spec = sw.load_sweep(sys.argv[1])[0]
    t0 = time.perf_counter()
    rows = {f: sw.load_array(f) for f in sw.run_files(spec)}
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    sw.run_one(spec)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    sw.run_one(spec)
    t_again = time.perf_counter() - t0
    print(json.dumps({"import_s": t_import, "data_load_s": t_data, "first_run_s": t_first, "same_run_again_s": t_again}))
""")


def feed(synthetic_minutes: float | None) -> Path:
    from hftbacktest.data.utils import binancefutures

    WORK.mkdir(parents=True, exist_ok=True)
    if synthetic_minutes is None and SAMPLE.exists():
        out = WORK / "btcusdt_20240808.npz"
        source = SAMPLE
    else:
        from hftbacktest.data import synthetic

        minutes = synthetic_minutes or 5.0
        out = WORK / f"synthetic_{minutes:g}min.npz"
        source = WORK / f"synthetic_{minutes:g}min.gz"
        if not source.exists():
            synthetic.generate(str(source), minutes=minutes, seed=1)
    if not out.exists():
        with contextlib.redirect_stdout(io.StringIO()):
            binancefutures.convert(str(source), output_filename=str(out))
    return out


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the local workers, once their pool is shut down)."""
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(fn, report=None, key=None):
    t0, c0 = time.perf_counter(), cpu_seconds()
    result = fn()
    wall = time.perf_counter() - t0
    if report is not None:
        report[f"{key}_cpu_s"] = cpu_seconds() - c0
    return wall, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", type=float, default=None, metavar="MINUTES")
    ap.add_argument("--configs", type=int, default=64)
    ap.add_argument("--step-ms", type=int, default=100, help="the strategy's step (default 100, the example's)")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()

    # a local Ray on loopback, reporting nothing (read when Ray is imported)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from polars.testing import assert_frame_equal

    from hftbacktest.sweep import load_sweep, run_sweep

    data = feed(args.synthetic)
    config = WORK / "sweep.toml"
    config.write_text(SWEEP.format(strategy=ROOT / "examples" / "gridtrading.py", data=data,
                                   step_ns=args.step_ms * 1_000_000))
    runs = load_sweep(config)[: args.configs]
    report = {"data": str(data.name), "configurations": len(runs), "step_ms": args.step_ms, "cpus": os.cpu_count(),
              "load_average_at_start": os.getloadavg()}

    run_sweep(runs[:2], workers=2, progress=False)  # warm-up: the strategy compiled and cached
    t1, one = timed(lambda: run_sweep(runs, workers=1, progress=False), report, "local_1_worker")
    t2, two = timed(lambda: run_sweep(runs, workers=2, progress=False), report, "local_2_workers")
    report["local_1_worker_s"] = t1
    report["local_2_workers_s"] = t2
    report["local_speedup"] = t1 / t2
    report["mean_run_s"] = float(one["elapsed_s"].mean())
    assert_frame_equal(one.drop("elapsed_s"), two.drop("elapsed_s"), check_exact=True)

    if not args.no_ray:
        import ray

        t_start, _ = timed(lambda: (ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False),
                                    ray.shutdown()))
        run_sweep(runs[:2], workers=2, backend="ray", progress=False)  # warm-up of the shipped strategy's cache
        tr, on_ray = timed(lambda: run_sweep(runs, workers=2, backend="ray", progress=False))
        report["ray_local_cluster_s"] = tr
        report["ray_cluster_start_s"] = t_start
        report["ray_without_start_s"] = tr - t_start
        report["ray_vs_local_2_workers"] = (tr - t_start) / t2
        assert_frame_equal(on_ray.drop("elapsed_s"), two.drop("elapsed_s"), check_exact=True)

    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", OVERHEAD, str(config)], capture_output=True, text=True, check=True)
    overhead = json.loads(out.stdout.strip().splitlines()[-1])
    overhead["process_s"] = time.perf_counter() - t0
    overhead["cache_hit_s"] = overhead["first_run_s"] - overhead["same_run_again_s"]
    report["per_task_overhead"] = overhead
    report["load_average_at_end"] = os.getloadavg()
    report["results_equal"] = True
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
