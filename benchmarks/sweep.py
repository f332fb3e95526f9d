"""Sweep speed: configurations of examples/gridtrading.py on the local backend (1 and 2 workers) and on Ray.

    .venv/bin/python benchmarks/sweep.py                  # 64 configurations, btcusdt sample (converted once)
    .venv/bin/python benchmarks/sweep.py --configs 8      # fewer configurations (first N of the grid): a quick check
    .venv/bin/python benchmarks/sweep.py --step-ms 1      # more strategy work per run (a 1 ms step, not 100 ms)
    .venv/bin/python benchmarks/sweep.py --synthetic 5    # a 5-minute synthetic feed instead of the sample

Every backend first runs a warm-up sweep (2 configurations: the strategy in numba's cache for this process, the
local backend's fork server, Ray's workers), then the timed sweep:
* local backend, 1 worker and 2 workers: wall seconds, the speed-up, and CPU seconds (this process apart, and every
  process below it: local workers, Ray's processes; read from /proc), and the speed-up they imply when both CPUs
  are free for the sweep (`local_speedup_from_cpu_s`: 2 x CPU s of 1 worker / CPU s of 2 workers; an estimate,
  for a box other sessions keep busy);
* Ray, a local cluster started by the sweep (`--backend ray`, 2 CPUs), with and without its start-up, and when
  its first result arrived (`ray_first_result_s`);
* the whole grid only: `hftbacktest sweep` as a user runs it, each in a fresh process (interpreter, imports, the
  local backend's fork server or Ray's start included): local 2 workers vs Ray (`cli_ray_vs_local`);
* per-task overhead in a fresh process: interpreter + package import, data load, first run (numba cache hit for the
  engine and the strategy) vs the same run again in that process; and for each sweep the wall time per run not
  spent in the strategy (`overhead_per_run_s` = (wall x workers - sum of run times) / runs).
Each phase prints its time, when its first result arrived, its CPU seconds and the load averages before and after
it on stderr: on a shared box (other sessions keeping the cores busy, Linux's fair share per session) a second
worker cannot show its speed-up, so compare wall figures only when the 1-minute load before and after is well
below the CPU count.
The results of the three sweeps are checked equal (all columns but the run time). Prints one JSON object on stdout.
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


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:  # gone
        pass
    return out


def _cpu_of(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class TreeCPU:
    """CPU seconds of this process and of every process below it: local workers (also those a fork server forks,
    which are not this process's children), Ray's processes. Linux: the process tree is read from /proc every
    `every` s and each process counts with the last CPU time seen (one that ends between two reads loses at most
    that much); elsewhere this process and its finished children (getrusage)."""

    def __init__(self, every: float = 0.05):
        import threading

        self.every, self.seen, self.stop, self.own = every, {}, threading.Event(), 0.0
        self.proc = os.path.exists(f"/proc/{os.getpid()}/task")
        if self.proc:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()

    def _sample(self) -> None:
        me = os.getpid()
        while not self.stop.wait(self.every):
            todo = _children(me)
            while todo:
                pid = todo.pop()
                cpu = _cpu_of(pid)
                if cpu is not None:
                    self.seen[pid] = cpu
                    todo += _children(pid)
            self.own = time.thread_time()  # this sampler's CPU, not counted as this process's

    def __call__(self) -> tuple[float, float]:
        """(this process but the sampler, the processes below it)."""
        import resource

        me = resource.getrusage(resource.RUSAGE_SELF)
        if not self.proc:
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime
        return me.ru_utime + me.ru_stime - self.own, sum(self.seen.values())


class Phases:
    """Timed phases: wall and CPU seconds (this process, the processes below it), the load averages before and
    after each, printed as they finish."""

    def __init__(self, report: dict):
        import hftbacktest.sweep as sweep_module

        self.report = report
        self.t0 = time.perf_counter()
        self.cpu = TreeCPU()
        self.first: list[float] = []  # when the phase's first result arrived
        advance = sweep_module._Runner._advance

        def first_result(runner, rows):
            if not self.first:
                self.first.append(time.perf_counter())
            return advance(runner, rows)

        sweep_module._Runner._advance = first_result

    def __call__(self, name: str, fn):
        load0, t0, (d0, w0) = os.getloadavg(), time.perf_counter(), self.cpu()
        self.first.clear()
        result = fn()
        first = self.first[0] - t0 if self.first else None
        time.sleep(2 * self.cpu.every)  # the last read of processes that ended with the phase
        wall, (d1, w1), load1 = time.perf_counter() - t0 - 2 * self.cpu.every, self.cpu(), os.getloadavg()
        driver, others = d1 - d0, w1 - w0
        self.report.setdefault("phases", {})[name] = {
            "wall_s": round(wall, 3), "cpu_s": round(driver + others, 3), "driver_cpu_s": round(driver, 3),
            "first_result_s": None if first is None else round(first, 3), "load_before": load0, "load_after": load1}
        print(f"[{time.perf_counter() - self.t0:7.1f} s] {name}: {wall:.2f} s wall"
              + ("" if first is None else f" (first result {first:.2f} s)")
              + f", {driver + others:.2f} s CPU ({driver:.2f} s this process); load {' '.join(f'{x:.2f}' for x in load0)} -> "
              f"{' '.join(f'{x:.2f}' for x in load1)}", file=sys.stderr, flush=True)
        return wall, result


def overhead_per_run(table, wall: float, workers: int) -> float:
    return (wall * workers - float(table["elapsed_s"].sum())) / len(table)


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

    report: dict = {"cpus": os.cpu_count()}
    phase = Phases(report)
    _, data = phase("prepare data", lambda: feed(args.synthetic))
    config = WORK / "sweep.toml"
    config.write_text(SWEEP.format(strategy=ROOT / "examples" / "gridtrading.py", data=data,
                                   step_ns=args.step_ms * 1_000_000))
    runs = load_sweep(config)[: args.configs]
    report.update({"data": str(data.name), "configurations": len(runs), "step_ms": args.step_ms})

    phase("warm-up local", lambda: run_sweep(runs[:2], workers=2, progress=False))
    t1, one = phase("local 1 worker", lambda: run_sweep(runs, workers=1, progress=False))
    t2, two = phase("local 2 workers", lambda: run_sweep(runs, workers=2, progress=False))
    report["local_1_worker_s"] = t1
    report["local_2_workers_s"] = t2
    report["local_speedup"] = t1 / t2
    # the speed-up when both CPUs are free for this sweep (a busy box shares them): wall = CPU seconds / workers
    cpu = {k: report["phases"][k]["cpu_s"] for k in ("local 1 worker", "local 2 workers")}
    report["local_speedup_from_cpu_s"] = 2 * cpu["local 1 worker"] / cpu["local 2 workers"]
    report["mean_run_s"] = float(one["elapsed_s"].mean())
    report["overhead_per_run_s"] = {"local_1_worker": overhead_per_run(one, t1, 1),
                                    "local_2_workers": overhead_per_run(two, t2, 2)}
    assert_frame_equal(one.drop("elapsed_s"), two.drop("elapsed_s"), check_exact=True)

    if not args.no_ray:
        import ray

        t_start, _ = phase("ray start + stop", lambda: (ray.init(num_cpus=2, include_dashboard=False,
                                                                 log_to_driver=False), ray.shutdown()))
        # warm-up of the shipped strategy's cache on Ray's workers
        phase("warm-up ray", lambda: run_sweep(runs[:2], workers=2, backend="ray", progress=False))
        tr, on_ray = phase("ray local cluster, 2 CPUs", lambda: run_sweep(runs, workers=2, backend="ray",
                                                                           progress=False))
        report["ray_local_cluster_s"] = tr
        report["ray_cluster_start_s"] = t_start
        report["ray_first_result_s"] = report["phases"]["ray local cluster, 2 CPUs"]["first_result_s"]
        report["local_2_workers_first_result_s"] = report["phases"]["local 2 workers"]["first_result_s"]
        report["ray_without_start_s"] = tr - t_start
        report["ray_vs_local_2_workers"] = tr / t2
        report["ray_without_start_vs_local_2_workers"] = (tr - t_start) / t2
        report["overhead_per_run_s"]["ray_without_start"] = overhead_per_run(on_ray, tr - t_start, 2)
        assert_frame_equal(on_ray.drop("elapsed_s"), two.drop("elapsed_s"), check_exact=True)

    if len(runs) == len(load_sweep(config)):  # the whole grid: also as a user runs it, one fresh process each
        def cli(*extra):
            cmd = [sys.executable, "-c", "from hftbacktest.cli import main; raise SystemExit(main())", "sweep", str(config), "--workers", "2", *extra]
            return lambda: subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "CI": "1"})

        report["cli_local_2_workers_s"], _ = phase("hftbacktest sweep, fresh process, local 2 workers", cli())
        if not args.no_ray:
            report["cli_ray_s"], _ = phase("hftbacktest sweep, fresh process, ray local cluster", cli("--backend", "ray"))
            report["cli_ray_vs_local"] = report["cli_ray_s"] / report["cli_local_2_workers_s"]

    def fresh_process():
        out = subprocess.run([sys.executable, "-c", OVERHEAD, str(config)], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    t_process, overhead = phase("per-task overhead, fresh process", fresh_process)
    overhead["process_s"] = t_process
    overhead["cache_hit_s"] = overhead["first_run_s"] - overhead["same_run_again_s"]
    report["per_task_overhead"] = overhead
    report["results_equal"] = True
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
