"""Converter speed: ours vs the reference hftbacktest 2.4.4 (in .venv-ref), measured side by side.

    .venv/bin/python benchmarks/convert.py [--repeat 3] [--files btcusdt ethusdt] [--opts '' t]
    .venv/bin/python benchmarks/convert.py --memory 4 16   # peak RSS, ours only, synthetic feeds

Each side converts every (file, opt) once to warm up (numba compile/caches), then `--repeat` timed runs, in
`--procs` fresh processes; the best run counts. Prints a table of wall-clock seconds and rows/s for both, the wall ratio
and the ratio of CPU seconds (all threads), which is the fairer figure on a busy machine.

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
    ap.add_argument("--files", nargs="+", default=["btcusdt", "ethusdt"])
    ap.add_argument("--opts", nargs="+", default=["", "t"])
    ap.add_argument("--memory", nargs="+", type=int, metavar="K", help="peak-RSS mode: synthetic 10 min x K")
    args = ap.parse_args()
    if args.memory:
        return memory(args.memory)
    if not REF_PY.exists():
        print(f"reference venv not found at {REF_PY}", file=sys.stderr)
        return 2
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
