"""Converter speed: ours vs the reference hftbacktest 2.4.4 (in .venv-ref), measured side by side.

    .venv/bin/python benchmarks/convert.py [--repeat 3] [--files btcusdt ethusdt] [--opts '' t]

Each side converts every (file, opt) once to warm up (numba compile/caches), then `--repeat` timed runs in
its own process; the best run counts. Prints wall-clock rows/s for both and the ratio, plus the ratio of CPU
seconds (all threads), which is the fairer figure on a busy machine.
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


def run(python: Path, path: Path, opt: str, repeat: int) -> dict:
    out = subprocess.run([str(python), "-c", WORKER, str(path), opt, str(repeat)], check=True,
                         capture_output=True, text=True, cwd="/")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--files", nargs="+", default=["btcusdt", "ethusdt"])
    ap.add_argument("--opts", nargs="+", default=["", "t"])
    args = ap.parse_args()
    if not REF_PY.exists():
        print(f"reference venv not found at {REF_PY}", file=sys.stderr)
        return 2
    ours_py = Path(sys.executable)
    print(f"{'file':10} {'opt':4} {'rows':>9} {'ref s':>7} {'ours s':>7} {'ref rows/s':>12} {'ours rows/s':>12} "
          f"{'ratio':>6} {'cpu ratio':>9}")
    ratios, cpu_ratios = [], []
    for name in args.files:
        path = DATA / f"{name}_20240808.gz"
        for opt in args.opts:
            ref = run(REF_PY, path, opt, args.repeat)
            ours = run(ours_py, path, opt, args.repeat)
            ratio = ref["seconds"] / ours["seconds"]
            cpu_ratio = ref["cpu"] / ours["cpu"]
            ratios.append(ratio)
            cpu_ratios.append(cpu_ratio)
            print(f"{name:10} {opt!r:4} {ours['rows']:>9,} {ref['seconds']:7.3f} {ours['seconds']:7.3f} "
                  f"{ref['rows'] / ref['seconds']:12,.0f} {ours['rows'] / ours['seconds']:12,.0f} {ratio:5.1f}x "
                  f"{cpu_ratio:8.1f}x")
    print(f"wall ratio min {min(ratios):.1f}x mean {sum(ratios) / len(ratios):.1f}x; "
          f"cpu ratio min {min(cpu_ratios):.1f}x mean {sum(cpu_ratios) / len(cpu_ratios):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
