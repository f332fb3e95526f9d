"""Converter speed: ours vs the reference hftbacktest 2.4.4 (in .venv-ref), measured side by side.

    .venv/bin/python benchmarks/convert.py [--repeat 3] [--files btcusdt ethusdt] [--opts '' t]
    .venv/bin/python benchmarks/convert.py --fresh [--synthetic 60] [--opts '' m t mt]
    .venv/bin/python benchmarks/convert.py --memory 4 16   # peak RSS, ours only, synthetic feeds

Each side converts every (file, opt) once to warm up (numba compile/caches), then `--repeat` timed runs, in
`--procs` fresh processes; the best run counts. Prints a table of wall-clock seconds and rows/s for both, the wall ratio
and the ratio of CPU seconds (all threads), which is the fairer figure on a busy machine.

--fresh: what a user's one `convert` call costs. Each timed run is a new interpreter with a warm numba cache (an
untimed process fills it first) that imports the converter and converts once; `spawn->done` is the wall time
from starting the interpreter to the call's return, `call` the call alone (both best of --procs). --synthetic N
adds an N-minute synthetic feed (hftbacktest.data.synthetic, seed 1, kept in benchmarks/_work/) to the files.

--memory K1 K2 ...: generates a 10-minute synthetic feed (hftbacktest.data.synthetic), concatenates it K times
(multi-member gzip) and converts each size in a fresh process with an .npz output, printing the peak RSS next
to the output size: peak RSS stays about flat because tables past a block spill to temporary files.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "binance-usdm"
REF_PY = ROOT / ".venv-ref" / "bin" / "python"

WORKER = textwrap.dedent("""
    import contextlib, io, json, sys, time
    from hftbacktest.data.utils import binancefutures
    path, opt, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        rows = len(binancefutures.convert(path, opt=opt))
    best = cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            binancefutures.convert(path, opt=opt)
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    print(json.dumps({"rows": rows, "seconds": best, "cpu": cpu}))
""")


FRESH_WORKER = textwrap.dedent("""
    import contextlib, io, json, sys, time, warnings
    warnings.simplefilter("ignore")
    t0 = time.time()
    from hftbacktest.data.utils import binancefutures
    t1 = time.time()
    with contextlib.redirect_stdout(io.StringIO()):
        rows = len(binancefutures.convert(sys.argv[1], opt=sys.argv[2]))
    t2 = time.time()
    print(json.dumps({"rows": rows, "t_start": t0, "import": t1 - t0, "call": t2 - t1, "t_done": t2}))
""")


def run_fresh(python: Path, path: Path, opt: str, procs: int) -> dict:
    """One untimed process (fills the numba cache), then `procs` fresh processes; best of each figure."""
    subprocess.run([str(python), "-c", FRESH_WORKER, str(path), opt], check=True, capture_output=True, cwd="/")
    runs = []
    for _ in range(procs):
        spawned = time.time()
        out = subprocess.run([str(python), "-c", FRESH_WORKER, str(path), opt], check=True, capture_output=True,
                             text=True, cwd="/")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["total"] = r["t_done"] - spawned
        runs.append(r)
    return {"rows": runs[0]["rows"], **{k: min(r[k] for r in runs) for k in ("total", "call", "import")}}


def synthetic_feed(minutes: float) -> Path:
    path = ROOT / "benchmarks" / "_work" / f"synthetic_{minutes:g}min.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-c", "import sys; from hftbacktest.data.synthetic import generate; "
                        "generate(sys.argv[1], minutes=float(sys.argv[2]), seed=1)", str(path), str(minutes)],
                       check=True)
    return path


def fresh(paths: list[Path], opts: list[str], procs: int) -> int:
    print(f"{'file':22} {'opt':4} {'rows':>10} | {'ref s->done':>11} {'ours s->done':>12} {'ratio':>6} | "
          f"{'ref call':>8} {'ours call':>9} {'ratio':>6} | {'ours import':>11} {'ours rows/s':>11}")
    ratios = []
    for path in paths:
        for opt in opts:
            ref = run_fresh(REF_PY, path, opt, procs)
            ours = run_fresh(Path(sys.executable), path, opt, procs)
            ratios.append(ref["total"] / ours["total"])
            print(f"{path.name:22} {opt!r:4} {ours['rows']:>10,} | {ref['total']:11.3f} {ours['total']:12.3f} "
                  f"{ratios[-1]:5.1f}x | {ref['call']:8.3f} {ours['call']:9.3f} {ref['call'] / ours['call']:5.1f}x | "
                  f"{ours['import']:11.3f} {ours['rows'] / ours['call']:11,.0f}", flush=True)
    print(f"spawn->done ratio (ref / ours) min {min(ratios):.1f}x, mean {sum(ratios) / len(ratios):.1f}x")
    return 0


def run(python: Path, path: Path, opt: str, repeat: int, procs: int) -> dict:
    """Best of `procs` processes (a process can be unlucky for its whole life on a shared machine)."""
    results = []
    for _ in range(procs):
        out = subprocess.run([str(python), "-c", WORKER, str(path), opt, str(repeat)], check=True,
                             capture_output=True, text=True, cwd="/")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"rows": results[0]["rows"], "seconds": min(r["seconds"] for r in results),
            "cpu": min(r["cpu"] for r in results)}


MEMORY_WORKER = textwrap.dedent("""
    import contextlib, io, json, os, resource, sys, time, warnings
    warnings.simplefilter("ignore")
    from hftbacktest.data.utils import binancefutures
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        data = binancefutures.convert(sys.argv[1], output_filename=sys.argv[2])
    print(json.dumps({"rows": len(data), "seconds": time.perf_counter() - t, "spilled": hasattr(data, "_mmap"),
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def memory(copies: list[int]) -> int:
    import tempfile

    ours_py = Path(sys.executable)
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "feed10.gz"
        subprocess.run([str(ours_py), "-c", "import sys; from hftbacktest.data.synthetic import generate; "
                        "generate(sys.argv[1], minutes=10, seed=1)", str(one)], check=True)
        print(f"{'input':>14} {'text MB':>8} {'rows':>10} {'output MB':>10} {'peak RSS MB':>12} {'seconds':>8}  path")
        for k in copies:
            path = Path(tmp) / f"feed10x{k}.gz"
            path.write_bytes(one.read_bytes() * k)
            out = subprocess.run([str(ours_py), "-c", MEMORY_WORKER, str(path), str(Path(tmp) / "out.npz")],
                                 check=True, capture_output=True, text=True, cwd="/")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            text_mb = _text_mb(path)
            print(f"{f'10 min x {k}':>14} {text_mb:8.0f} {r['rows']:>10,} {r['rows'] * 64 / 2**20:10.0f} "
                  f"{r['peak_mb']:12.0f} {r['seconds']:8.1f}  {'spilled to disk' if r['spilled'] else 'in memory'}")
            path.unlink()
    return 0


def _text_mb(path: Path) -> float:
    import zlib

    total, dec = 0, zlib.decompressobj(31)
    with open(path, "rb") as f:
        while raw := f.read(1 << 20):
            while raw:
                if dec.eof:
                    dec = zlib.decompressobj(31)
                total += len(dec.decompress(raw))
                raw = dec.unused_data
    return total / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per process")
    ap.add_argument("--procs", type=int, default=2, help="processes per side and case (best counts)")
    ap.add_argument("--files", nargs="*", default=["btcusdt", "ethusdt"])
    ap.add_argument("--opts", nargs="+", default=["", "t"])
    ap.add_argument("--memory", nargs="+", type=int, metavar="K", help="peak-RSS mode: synthetic 10 min x K")
    ap.add_argument("--fresh", action="store_true", help="one call per fresh process (warm numba cache)")
    ap.add_argument("--synthetic", type=float, metavar="MINUTES", help="--fresh: also an N-minute synthetic feed")
    args = ap.parse_args()
    if args.memory:
        return memory(args.memory)
    if not REF_PY.exists():
        print(f"reference venv not found at {REF_PY}", file=sys.stderr)
        return 2
    if args.fresh:
        paths = [DATA / f"{name}_20240808.gz" for name in args.files]
        return fresh(paths + ([synthetic_feed(args.synthetic)] if args.synthetic else []), args.opts, args.procs)
    ours_py = Path(sys.executable)
    print(f"{'file':9} {'opt':4} {'rows':>9} | {'ref wall s':>10} {'ours wall s':>11} {'wall ratio':>10} | "
          f"{'ref cpu s':>9} {'ours cpu s':>10} {'cpu ratio':>9} | {'ours rows/s':>11}")
    ratios, cpu_ratios = [], []
    for name in args.files:
        path = DATA / f"{name}_20240808.gz"
        for opt in args.opts:
            ref = run(REF_PY, path, opt, args.repeat, args.procs)
            ours = run(ours_py, path, opt, args.repeat, args.procs)
            ratio = ref["seconds"] / ours["seconds"]
            cpu_ratio = ref["cpu"] / ours["cpu"]
            ratios.append(ratio)
            cpu_ratios.append(cpu_ratio)
            print(f"{name:9} {opt!r:4} {ours['rows']:>9,} | {ref['seconds']:10.3f} {ours['seconds']:11.3f} "
                  f"{ratio:9.1f}x | {ref['cpu']:9.3f} {ours['cpu']:10.3f} {cpu_ratio:8.1f}x | "
                  f"{ours['rows'] / ours['seconds']:11,.0f}", flush=True)
    print(f"wall ratio min {min(ratios):.1f}x mean {sum(ratios) / len(ratios):.1f}x; "
          f"cpu ratio min {min(cpu_ratios):.1f}x mean {sum(cpu_ratios) / len(cpu_ratios):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
