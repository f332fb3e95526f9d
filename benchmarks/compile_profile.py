"""Where the engine's first compile goes: every numba compile with its own (exclusive) CPU time.

    .venv/bin/python benchmarks/compile_profile.py [--top N] [--converter]

Runs a fresh interpreter with an empty NUMBA_CACHE_DIR that imports `hftbacktest.backtest.bot` and compiles the
engine's cached entry point and everything it calls (`kernels.entry.entry_point()`), with a `numba:compile` event listener.
`--converter`: instead, the converter's first call (a 2-minute synthetic feed, combined stream, `.npz` output). Prints total CPU and
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
import sys
if sys.argv[1:]:
    import contextlib, io
    from hftbacktest.data.utils import binancefutures
    with contextlib.redirect_stdout(io.StringIO()):
        binancefutures.convert(sys.argv[1], output_filename=sys.argv[2])
else:
    import hftbacktest.backtest.bot  # noqa: F401  (registers the proxy types the cached wrappers box)
    from hftbacktest.kernels import entry
    entry.entry_point()  # compiles the engine
print(json.dumps({"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0, "rows": rows}))
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--converter", action="store_true", help="profile the converter's first call instead")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        # the whole engine in this one process: no cold-compile helper (kernels/warmup.py)
        env = {**__import__("os").environ, "NUMBA_CACHE_DIR": cache, "HFTBACKTEST_PARALLEL_COMPILE": "0"}
        extra = []
        if args.converter:  # the feed is generated before the timed child (pure Python: nothing to compile)
            from hftbacktest.data.synthetic import generate

            extra = [str(Path(cache) / "feed.gz"), str(Path(cache) / "feed.npz")]
            generate(extra[0], minutes=2.0, seed=1)
        out = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD, *extra], env=env, capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 1
    res = json.loads(out.stdout.strip().splitlines()[-1])
    rows = sorted(res["rows"], reverse=True)
    dispatched = sum(t for t, _ in rows)
    what = "converter" if args.converter else "engine"
    print(f"{what} first compile: {res['cpu']:.1f} s CPU, {res['wall']:.1f} s wall, {len(rows)} numba compiles")
    rest = "conversion and imports" if args.converter else "entry point (cfunc) and imports"
    print(f"  {rest}: {res['cpu'] - dispatched:.1f} s CPU; compiled kernels: {dispatched:.1f} s")
    for t, name in rows[: args.top]:
        print(f"  {t:6.2f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
