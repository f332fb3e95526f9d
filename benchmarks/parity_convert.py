"""Byte-identity of our Binance converter with the reference hftbacktest 2.4.4 (in .venv-ref).

    .venv/bin/python benchmarks/parity_convert.py [--synthetic-minutes 3]

Converts both sample files x opts '', 'm', 't', 'mt' (plus a clean synthetic feed) with the reference in its own
venv and with ours, then compares dtype and array bytes. Prints a table and exits 1 on any difference.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "binance-usdm"
REF_PY = ROOT / ".venv-ref" / "bin" / "python"
OPTS = ("", "m", "t", "mt")

REF_WORKER = textwrap.dedent("""
    import contextlib, io, sys
    import numpy as np
    from hftbacktest.data.utils import binancefutures
    src, out_dir = sys.argv[1], sys.argv[2]
    for opt in sys.argv[3:]:
        opt = opt.strip("'")
        with contextlib.redirect_stdout(io.StringIO()):
            a = binancefutures.convert(src, opt=opt)
        np.save(f"{out_dir}/ref_{opt or 'none'}.npy", a)
""")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic-minutes", type=float, default=3.0, help="0 to skip the synthetic feed")
    args = ap.parse_args()
    if not REF_PY.exists():
        print(f"reference venv not found at {REF_PY}", file=sys.stderr)
        return 2
    from hftbacktest.data.synthetic import generate
    from hftbacktest.data.utils import binancefutures
    from hftbacktest.types import event_dtype

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [DATA / "btcusdt_20240808.gz", DATA / "ethusdt_20240808.gz"]
        if args.synthetic_minutes > 0:
            syn = Path(tmp) / "synthetic_btcusdt.gz"
            generate(str(syn), minutes=args.synthetic_minutes, seed=1)
            inputs.append(syn)
        print(f"{'input':28} {'opt':4} {'rows':>9} {'identical':>9}  sha256 (first 16)")
        for src in inputs:
            out_dir = Path(tmp) / src.stem
            out_dir.mkdir()
            subprocess.run([str(REF_PY), "-c", REF_WORKER, str(src), str(out_dir), *[f"'{o}'" for o in OPTS]],
                           check=True, cwd="/")
            for opt in OPTS:
                ref = np.load(out_dir / f"ref_{opt or 'none'}.npy")
                with contextlib.redirect_stdout(io.StringIO()):
                    ours = binancefutures.convert(str(src), opt=opt, mark_price_time="T")  # as the reference
                same = ours.dtype == event_dtype == ref.dtype and ours.tobytes() == ref.tobytes()
                failures += not same
                print(f"{src.name:28} {opt!r:4} {len(ours):>9,} {'yes' if same else 'NO':>9}  "
                      f"{hashlib.sha256(ours.tobytes()).hexdigest()[:16]}"
                      + ("" if same else f"  (reference has {len(ref):,} rows)"))
    print("all identical" if not failures else f"{failures} difference(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
