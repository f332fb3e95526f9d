"""Stats parity: every metric of `hftbacktest.stats` against hftbacktest 2.4.4 on the same record (1e-9 relative).

    .venv/bin/python benchmarks/parity_stats.py            # record from the reference engine on the btcusdt sample
    .venv/bin/python benchmarks/parity_stats.py --record R.npz
    .venv/bin/python benchmarks/parity_stats.py --golden     # reference values for tests/parity/test_stats_golden.py

Without --record, the reference (in .venv-ref) converts ../shared/data/binance-usdm/btcusdt_20240808.gz (or reuses
benchmarks/_work/stats/btcusdt_20240808.npz), runs the documentation's market-making example with its Recorder (one record
every 10 ms) and saves benchmarks/_work/stats/stats_record.npz. Then this same file runs with `--emit` under each venv (the
import name `hftbacktest` resolves to the reference in .venv-ref and to this package in .venv), and the two JSON
outputs are compared metric by metric.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work" / "stats"  # own folder: other benchmarks rebuild _work
REF_PY = ROOT / ".venv-ref" / "bin" / "python"
OUR_PY = ROOT / ".venv" / "bin" / "python"
SAMPLE = ROOT.parent / "shared" / "data" / "binance-usdm" / "btcusdt_20240808.gz"
REL_TOL = 1e-9

# (record class, contract size, resample, split, book_size, running totals present?)
CASES = [
    (kind, cs, freq, part, book, totals)
    for kind, cs in (("linear", 1.0), ("inverse", 100.0))
    for freq in (None, "100ms", "1s", "10s", "1m")
    for part in (None, "monthly", "daily")
    for book in (None, 10_000.0)
    for totals in (True, False)
]
_TOTALS = ("num_trades", "trading_volume", "trading_value")


def emit(record_path: str) -> None:
    """Runs every case with whichever `hftbacktest` this interpreter imports; prints JSON."""
    import warnings

    import numpy as np
    from hftbacktest import stats as st

    all_metrics = [
        st.SR, st.Sortino, st.Ret, st.AnnualRet, st.MaxDrawdown, st.ReturnOverMDD, st.ReturnOverTrade,
        st.NumberOfTrades, st.DailyNumberOfTrades, st.TradingVolume, st.DailyTradingVolume, st.TradingValue,
        st.DailyTradingValue, st.MaxPositionValue, st.MeanPositionValue, st.MedianPositionValue,
    ]
    extra = [st.SR("SR365", trading_days_per_year=365), st.AnnualRet("AR365", trading_days_per_year=365)]
    full = np.load(record_path)["0"]
    # Without the running totals both libraries estimate trades/volume/value from position changes.
    positions_only = full[[n for n in full.dtype.names if n not in _TOTALS]]
    out = {}
    warnings.simplefilter("ignore")
    for kind, cs, freq, part, book, totals in CASES:
        data = full if totals else positions_only
        metrics = all_metrics + extra + ([st.MaxLeverage] if book else [])
        kwargs = {"book_size": book} if book else {}
        for label, chosen in (("all", metrics), ("default", None)):
            key = f"{kind} cs={cs} resample={freq} split={part} book={book} totals={totals} metrics={label}"
            try:
                result = _fresh(st, kind, cs, freq, part, data).stats(chosen, **kwargs)
            except Exception as exc:  # the reference cannot compute some degenerate splits
                out[key] = f"raised {type(exc).__name__}: {exc}"
                continue
            out[key] = [{k: (v.isoformat() if hasattr(v, "isoformat") else float(v)) for k, v in row.items()}
                        for row in result.splits]
    print(json.dumps(out))


GOLDEN_TEST = ROOT / "tests" / "parity" / "test_stats_golden.py"


def emit_golden() -> None:
    """Runs the golden test's cases with this interpreter's `hftbacktest.stats` (meant for the reference venv)."""
    import ast
    import math
    import pprint
    import warnings

    import numpy as np
    from hftbacktest import stats as st

    tree = ast.parse(GOLDEN_TEST.read_text())
    wanted = {"build_record", "run_case", "ALL", "CASES"}
    body = [node for node in tree.body
            if (isinstance(node, ast.FunctionDef) and node.name in wanted)
            or (isinstance(node, ast.Assign) and {getattr(t, "id", "") for t in node.targets} & wanted)]
    namespace = {"np": np, "math": math}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(GOLDEN_TEST), "exec"), namespace)
    warnings.simplefilter("ignore")
    golden = {name: namespace["run_case"](st, name) for name in namespace["CASES"]}
    print("GOLDEN = " + pprint.pformat(golden, width=116, sort_dicts=False))


def _fresh(st, kind, cs, freq, part, data):
    rec = (st.LinearAssetRecord if kind == "linear" else st.InverseAssetRecord)(data).contract_size(cs).resample(freq)
    return getattr(rec, part)() if part else rec


_MAKE_RECORD = r"""
import sys, numpy as np
from numba import njit
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, Recorder, GTX, LIMIT

@njit
def market_making_algo(hbt, recorder):
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    lot_size = hbt.depth(asset_no).lot_size
    while hbt.elapse(10_000_000) == 0:
        hbt.clear_inactive_orders(asset_no)
        depth = hbt.depth(asset_no)
        mid_price = (depth.best_bid + depth.best_ask) / 2.0
        position = hbt.position(asset_no)
        half_spread = 0.0005 * mid_price
        reservation_price = mid_price - 0.001 * position
        new_bid_tick = min(np.round((reservation_price - half_spread) / tick_size), depth.best_bid_tick)
        new_ask_tick = max(np.round((reservation_price + half_spread) / tick_size), depth.best_ask_tick)
        order_qty = np.round(100 / mid_price / lot_size) * lot_size
        hbt.submit_buy_order(asset_no, new_bid_tick, new_bid_tick * tick_size, order_qty, GTX, LIMIT, False)
        hbt.submit_sell_order(asset_no, new_ask_tick, new_ask_tick * tick_size, order_qty, GTX, LIMIT, False)
        recorder.record(hbt)
    return True

data, out = sys.argv[1], sys.argv[2]
asset = (BacktestAsset().data([data]).linear_asset(1.0).constant_order_latency(1_000_000, 1_000_000)
         .power_prob_queue_model(2.0).no_partial_fill_exchange().trading_value_fee_model(-0.00005, 0.0007)
         .tick_size(0.1).lot_size(0.001))
hbt = HashMapMarketDepthBacktest([asset])
recorder = Recorder(1, 1_000_000)
market_making_algo(hbt, recorder.recorder)
hbt.close()
recorder.to_npz(out)
print(len(recorder.get(0)), "records; position", recorder.get(0)["position"][-1],
      "num_trades", recorder.get(0)["num_trades"][-1])
"""

_CONVERT = r"""
import sys
from hftbacktest.data.utils import binancefutures
binancefutures.convert(sys.argv[1], output_filename=sys.argv[2], combined_stream=True)
"""


def make_reference_record() -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    events = WORK / "btcusdt_20240808.npz"
    if not events.exists():
        subprocess.run([REF_PY, "-c", _CONVERT, SAMPLE, events], check=True)
    record = WORK / "stats_record.npz"
    subprocess.run([REF_PY, "-c", _MAKE_RECORD, events, record], check=True)
    return record


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b), 1e-300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", help="recorder .npz (key '0'); default: make one with the reference engine")
    parser.add_argument("--golden", action="store_true", help="print golden values for the stats parity test")
    parser.add_argument("--emit", help=argparse.SUPPRESS)
    parser.add_argument("--emit-golden", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emit:
        emit(args.emit)
        return 0
    if args.emit_golden:
        emit_golden()
        return 0
    if args.golden:
        return subprocess.run([REF_PY, __file__, "--emit-golden"]).returncode
    record = Path(args.record) if args.record else make_reference_record()
    results = {}
    for name, py in (("reference", REF_PY), ("ours", OUR_PY)):
        proc = subprocess.run([py, __file__, "--emit", record], check=True, capture_output=True, text=True)
        results[name] = json.loads(proc.stdout)
    ref, ours = results["reference"], results["ours"]
    checked = mismatched = 0
    ref_errors: dict[str, int] = {}
    for case, ref_rows in ref.items():
        our_rows = ours.get(case)
        if isinstance(ref_rows, str):
            # Degenerate splits (e.g. a day holding one sample): the reference raises, we return NaN metrics.
            ref_errors[ref_rows] = ref_errors.get(ref_rows, 0) + 1
            if isinstance(our_rows, str):
                mismatched += 1
                print(f"MISMATCH {case}: both raised; ours {our_rows}")
            continue
        if our_rows is None or len(our_rows) != len(ref_rows):
            print(f"MISMATCH {case}: split count {len(ref_rows)} vs {None if our_rows is None else len(our_rows)}")
            mismatched += 1
            continue
        for i, (r, o) in enumerate(zip(ref_rows, our_rows)):
            if list(r) != list(o):
                print(f"MISMATCH {case} row {i}: metric names {list(r)} vs {list(o)}")
                mismatched += 1
            for key in r:
                checked += 1
                if key in o and not _same(r[key], o[key]):
                    mismatched += 1
                    print(f"MISMATCH {case} row {i} {key}: reference {r[key]!r} ours {o[key]!r}")
    for message, count in ref_errors.items():
        print(f"{count} cases where the reference {message} (one-sample split); ours returns NaN metrics there")
    print(f"record {record}: {len(ref)} cases, {checked} values compared, {mismatched} mismatches "
          f"(tolerance {REL_TOL:g} relative)")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
