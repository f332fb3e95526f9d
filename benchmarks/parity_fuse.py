"""Differential check of FuseMarketDepth against hftbacktest 2.4.4 on random L1/L2 streams.

    .venv/bin/python benchmarks/parity_fuse.py [--cases 200]

Random depth/BBO/clear/snapshot rows (seeded) go through ours and the reference (in .venv-ref); prints how many
cases give byte-identical fused arrays and the first differing case.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REF_PY = ROOT / ".venv-ref" / "bin" / "python"

WORKER = textwrap.dedent("""
    import sys, numpy as np
    from hftbacktest.data import FuseMarketDepth
    cases = np.load(sys.argv[1], allow_pickle=True)
    out = []
    for a, adds in cases:
        f = FuseMarketDepth(0.1, 0.001)
        try:
            for i in range(len(a)):
                f.process_event(a, i, bool(adds[i]))
            out.append(f.fused_events.copy())
        except ValueError:
            out.append(None)
        f.close()
    np.save(sys.argv[2], np.array(out, dtype=object), allow_pickle=True)
""")


def make_case(rng, event_dtype):
    from hftbacktest.types import (BUY_EVENT, DEPTH_BBO_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT,
                                   EXCH_EVENT, LOCAL_EVENT, SELL_EVENT)
    n = int(rng.integers(3, 25))
    a = np.zeros(n, event_dtype)
    kinds = rng.choice([DEPTH_EVENT, DEPTH_BBO_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT], n,
                       p=[0.55, 0.35, 0.04, 0.06])
    side = np.where(rng.random(n) < 0.5, BUY_EVENT, SELL_EVENT)
    a["ev"] = EXCH_EVENT | LOCAL_EVENT | side | kinds
    a["exch_ts"] = rng.integers(0, 20, n)
    a["local_ts"] = a["exch_ts"] + rng.integers(0, 5, n)
    mid = np.where(side == BUY_EVENT, 999, 1001)
    a["px"] = np.round((mid + rng.integers(-4, 5, n)) * 0.1, 1)
    a["qty"] = np.where(rng.random(n) < 0.25, 0.0, np.round(rng.random(n) * 3, 3))
    return a, rng.random(n) < 0.9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=200)
    args = ap.parse_args()
    from hftbacktest.data import FuseMarketDepth
    from hftbacktest.types import event_dtype

    rng = np.random.default_rng(1)
    cases = [make_case(rng, event_dtype) for _ in range(args.cases)]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "cases.npy", Path(tmp) / "ref.npy"
        np.save(src, np.array(cases, dtype=object), allow_pickle=True)
        subprocess.run([str(REF_PY), "-c", WORKER, str(src), str(dst)], check=True, cwd="/")
        ref = np.load(dst, allow_pickle=True)
    same, first_bad = 0, None
    for k, ((a, adds), r) in enumerate(zip(cases, ref)):
        f = FuseMarketDepth(0.1, 0.001)
        try:
            for i in range(len(a)):
                f.process_event(a, i, bool(adds[i]))
            ours = f.fused_events
        except ValueError:
            ours = None
        ok = (ours is None and r is None) or (ours is not None and r is not None and ours.tobytes() == r.tobytes())
        same += ok
        if not ok and first_bad is None:
            first_bad = (k, a, adds, ours, r)
    print(f"{same}/{len(cases)} random cases byte-identical")
    if first_bad:
        k, a, adds, ours, r = first_bad
        print(f"first difference: case {k}\ninput:\n{a[['ev', 'exch_ts', 'local_ts', 'px', 'qty']]}\nadds {adds}")
        print(f"ours:\n{None if ours is None else ours[['ev', 'exch_ts', 'local_ts', 'px', 'qty']]}")
        print(f"reference:\n{None if r is None else r[['ev', 'exch_ts', 'local_ts', 'px', 'qty']]}")
    return 0 if same == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
