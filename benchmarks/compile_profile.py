"""Where the engine's first compile goes: every numba compile with its own (exclusive) CPU time.

    .venv/bin/python benchmarks/compile_profile.py [--top N]

Runs a fresh interpreter with an empty NUMBA_CACHE_DIR that imports `hftbacktest.backtest.bot` and compiles the
engine's cached entry point and everything it calls (`kernels.entry.entry_point()`), with a `numba:compile` event listener. Prints total CPU and
wall time (helper process off, so everything compiles here), the number of compiled functions and the top N by exclusive CPU time (a function's time minus the
compiles nested in it). The entry point itself is a `cfunc`, not a dispatcher: its share is the remainder.
A diagnostic for docs/architecture.md "Compile time"; the comparison with the reference is in replay.py.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import json, time
from numba.core import event

rows, stack = [], []

class Listener(event.Listener):
    def on_start(self, ev):
        stack.append([ev.data.get("dispatcher"), time.process_time(), 0.0])

    def on_end(self, ev):
        disp, t0, nested = stack.pop()
        total = time.process_time() - t0
        if stack:
            stack[-1][2] += total
        f = getattr(disp, "py_func", None)
        name = f"{f.__module__}.{f.__qualname__}" if f is not None else "?"
        rows.append((total - nested, name))

event.register("numba:compile", Listener())
w0, c0 = time.perf_counter(), time.process_time()
import hftbacktest.backtest.bot  # noqa: F401  (registers the proxy types the cached wrappers box)
from hftbacktest.kernels import entry
entry.entry_point()  # compiles the engine
print(json.dumps({"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0, "rows": rows}))
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        # the whole engine in this one process: no cold-compile helper (kernels/warmup.py)
        env = {**__import__("os").environ, "NUMBA_CACHE_DIR": cache, "HFTBACKTEST_PARALLEL_COMPILE": "0"}
        out = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD], env=env, capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 1
    res = json.loads(out.stdout.strip().splitlines()[-1])
    rows = sorted(res["rows"], reverse=True)
    dispatched = sum(t for t, _ in rows)
    print(f"engine first compile: {res['cpu']:.1f} s CPU, {res['wall']:.1f} s wall, {len(rows)} numba compiles")
    print(f"  entry point (cfunc) and imports: {res['cpu'] - dispatched:.1f} s CPU; compiled kernels: {dispatched:.1f} s")
    for t, name in rows[: args.top]:
        print(f"  {t:6.2f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
