"""Where the time per event goes: CPU time of matrix cells under this package and under cut-down engines.

    .venv/bin/python benchmarks/profile.py [--runs 8] [--only GLOB ...] [--variants full,no-local-depth,...]

numba has no profiler and this box has no hardware counters, so the engine is measured by difference. Each
variant is a copy of src/ with one step of the event loop (kernels/loop.py) left out, run in its own process with
its own numba cache:
  full              the package as it is
  no-local-depth    local rows advance the cursor but do not update the local book
  no-exch-depth     exchange rows advance the cursor but do not reach the exchange (no book, no queue, no fills)
  no-depth          both: what is left is the loop itself (slot choice, cursors, chunk switches, row checks)
Only the `full` figures are results; a cut-down engine's strategy sees a different market. The cells are those
of benchmarks/matrix.py plus cut-down strategies of requote12 (`requote0`: the same strategy with no ladder rungs,
i.e. its book reads, order iteration and clear_inactive_orders without any order; `requote1`, `requote4`).
Per cell: the fastest CPU time of the strategy call (this thread) over --runs runs after a compiling one, in ns
per data row. Differences between lines split a cell: data path = no-depth + local book + exchange; wake-ups =
split-wake-10ms - split-data-path; the strategy's own loop = requote0 - split-wake-10ms; orders = requote12 -
requote0. CPU time still grows when another process shares the core, so compare figures of one run only.
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import _ref
import matrix

LOOP = Path("hftbacktest") / "kernels" / "loop.py"
LOCAL_STEP = "            lp.process_data(s, s.data_l, s.pos_l)\n"
EXCH_STEP = "            rc = xp.process_data(s, np.int64(r.ev), r.exch_ts, r.px, r.qty)\n"
VARIANTS = {
    "full": (),
    "no-local-depth": ((LOCAL_STEP, "            pass\n"),),
    "no-exch-depth": ((EXCH_STEP, "            rc = OK\n"),),
    "no-depth": ((LOCAL_STEP, "            pass\n"), (EXCH_STEP, "            rc = OK\n")),
}

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import _common, breakdown, example, grid, shapes
runs, n = json.loads(open(sys.argv[2]).read()), int(sys.argv[3])
scripts = {"example": example, "grid": grid, "shapes": shapes, "breakdown": breakdown}
for run in runs:
    algo = scripts[run.pop("script")]
    cpu = []
    for _ in range(1 + n):
        hbt = _common.build_bot(run)
        t0 = time.thread_time()
        algo.run(hbt, run)
        cpu.append(time.thread_time() - t0)
        hbt.close()
    print(json.dumps({"name": run["name"], "cpu_s": min(cpu[1:])}), flush=True)
"""


def runs_of(only: list[str]) -> list[dict]:
    out = []
    for script, name, run in matrix.cells(None):
        out.append({**run, "script": script})
        if name == "requote12":
            for levels in (0, 1, 4):
                cut = copy.deepcopy(run)
                cut.update(name=f"requote{levels}", script=script)
                cut["params"]["levels"] = levels
                out.append(cut)
    return [r for r in out if not only or any(fnmatch.fnmatch(r["name"], g) for g in only)]


def variant_src(name: str, into: Path) -> Path:
    src = into / name / "src"
    shutil.copytree(_ref.REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    path = src / LOOP
    text = path.read_text()
    for old, new in VARIANTS[name]:
        if text.count(old) != 1:
            raise SystemExit(f"profile.py: {LOOP} changed; update the variant {name!r}")
        text = text.replace(old, new)
    path.write_text(text)
    return src


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=8, help="timed runs per cell after the compiling one")
    ap.add_argument("--only", action="append", default=[], help="cell name glob (repeatable)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    args = ap.parse_args(argv)
    runs = runs_of(args.only)
    variants = [v for v in args.variants.split(",") if v]
    rows = {r["name"]: matrix.events(r) for r in runs}
    py = _ref.our_python()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores; CPU ns per event, fastest of "
          f"{args.runs}", flush=True)
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="hftbt-profile-") as tmp:
        work = Path(tmp)
        (work / "runs.json").write_text(json.dumps(runs))
        for v in variants:
            src = variant_src(v, work)
            print(f"  {v} ...", file=sys.stderr, flush=True)
            res = _ref.run_json(py, ["-c", CHILD, str(_ref.STRATEGIES), str(work / "runs.json"), str(args.runs)],
                                env={"PYTHONPATH": str(src), "NUMBA_CACHE_DIR": str(work / v / "cache")},
                                timeout=7200)
            for line in res.lines:
                table.setdefault(line["name"], {})[v] = line["cpu_s"]
    print(f"{'cell':24} {'events':>10} " + " ".join(f"{v:>15}" for v in variants))
    for name, by in table.items():
        print(f"{name:24} {rows[name]:>10,} " + " ".join(f"{by[v] / rows[name] * 1e9:15.1f}" for v in variants))
    print(f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
