"""Fill parity: run the same strategy scripts under this package and under hftbacktest 2.4.4 and compare.

    .venv/bin/python benchmarks/parity.py [--quick] [--only NAME ...] [--json OUT] [--no-trace]
    .venv/bin/python benchmarks/parity.py --golden     (numbers for tests/parity/test_backtest_golden.py)

For every configuration of the matrix below, each strategy script in benchmarks/strategies runs in a fresh
interpreter of each venv (all configurations of one script share one process per venv, so each package compiles
once) and prints the final per-asset state values, the return codes it saw and the final timestamp. The table
shows ours vs ref for each field; floats match when equal to 1e-9 relative (1e-12 absolute, for sums that should be
0), ints, return-code counts and timestamps must be equal. Exit status 1 on any mismatch or failed run.
For each mismatching configuration both sides are re-run with a state trace (a row whenever num_trades changes)
and the first diverging row is written to benchmarks/_work/parity_findings.md.
Data: benchmarks/_work (run prepare_data.py first); `--quick` uses the first 150 000 rows of each sample.
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import math
import pprint
import sys
import time

import _ref

FIELDS = ("position", "balance", "fee", "num_trades", "trading_volume", "trading_value")
REL_TOL = 1e-9
ABS_TOL = 1e-12
# price bands well around what each sample trades at, for ROIVectorMarketDepth (tick 0.1 / 0.01)
ROI = {"btcusdt": (55_000.0, 70_000.0), "ethusdt": (2_400.0, 3_000.0)}
SPECS = {"btcusdt": {"tick_size": 0.1, "lot_size": 0.001}, "ethusdt": {"tick_size": 0.01, "lot_size": 0.001}}


def _asset(sym: str, data: list[str], **over) -> dict:
    """The issue's example configuration for one symbol, with overrides."""
    base = {
        "data": data, "asset_type": "linear", "contract_size": 1.0,
        "latency": {"kind": "intp", "files": [str(_ref.latency_file())], "offset": 0},
        "queue": {"kind": "power_prob", "n": 2.0}, "exchange": "no_partial_fill",
        "fee": {"kind": "trading_value", "maker": -0.00005, "taker": 0.0007}, **SPECS[sym],
    }
    base.update(over)
    return base


CONST_1MS = {"kind": "constant", "entry": 1_000_000, "response": 1_000_000}


def matrix(rows: int | None, converter: str = "ref") -> list[tuple[str, str, dict]]:
    """(strategy script, config name, run) for every parity configuration."""
    def d(sym):
        return [str(_ref.converted(sym, converter, rows))]

    btc = lambda **o: _asset("btcusdt", d("btcusdt"), **o)  # noqa: E731
    eth = lambda **o: _asset("ethusdt", d("ethusdt"), **o)  # noqa: E731
    roi = lambda sym: {"roi_lb": ROI[sym][0], "roi_ub": ROI[sym][1]}  # noqa: E731
    snap_rows = rows or 150_000
    stem = f"btcusdt_{_ref.DAY}_{converter}"
    ex: list[tuple[str, list[dict], str]] = [
        ("const-latency", [btc(latency=CONST_1MS)], "hashmap"),
        ("intp-latency", [btc()], "hashmap"),
        ("intp-latency-offset", [btc(latency={"kind": "intp", "files": [str(_ref.latency_file())],
                                              "offset": 500_000})], "hashmap"),
        ("queue-risk_adverse", [btc(queue={"kind": "risk_adverse"})], "hashmap"),
    ]
    for kind in ("power_prob", "power_prob2", "power_prob3"):
        for n in (2.0, 3.0):
            if (kind, n) != ("power_prob", 2.0):  # that one is intp-latency
                ex.append((f"queue-{kind}-{n:g}", [btc(queue={"kind": kind, "n": n})], "hashmap"))
    ex += [
        ("queue-log_prob", [btc(queue={"kind": "log_prob"})], "hashmap"),
        ("queue-log_prob2", [btc(queue={"kind": "log_prob2"})], "hashmap"),
    ]
    # the example quotes 5 bp away, so only price sweeps fill it: the grid (quoting at the touch) is what tells
    # queue models and latencies apart
    gr = [(name, assets, depth) for name, assets, depth in ex]
    ex += [
        ("partial-fill-refcompat", [btc(exchange="partial_fill", reference_compatible=True)], "hashmap"),
        ("inverse-cs100", [btc(asset_type="inverse", contract_size=100.0)], "hashmap"),
        ("fee-trading-qty", [btc(fee={"kind": "trading_qty", "maker": -0.5, "taker": 2.0})], "hashmap"),
        ("fee-flat-per-trade", [btc(fee={"kind": "flat_per_trade", "maker": -0.01, "taker": 0.05})], "hashmap"),
        ("roivector", [btc(**roi("btcusdt"))], "roivector"),
        ("two-assets", [btc(), eth(latency=CONST_1MS, queue={"kind": "log_prob2"})], "hashmap"),
        ("initial-snapshot", [_asset("btcusdt", [str(_ref.WORK / f"{stem}_rest{snap_rows}.npz")],
                                     initial_snapshot=str(_ref.WORK / f"{stem}_snapshot{snap_rows}.npz"))], "hashmap"),
    ]
    grid_eth = dict(latency=CONST_1MS, queue={"kind": "log_prob"})
    gr += [
        ("two-assets", [btc(), eth(**grid_eth)], "hashmap"),
        ("partial-fill-refcompat", [btc(exchange="partial_fill", reference_compatible=True),
                                    eth(exchange="partial_fill", reference_compatible=True, **grid_eth)], "hashmap"),
        ("roivector", [btc(**roi("btcusdt"), queue={"kind": "power_prob3", "n": 3.0}),
                       eth(**roi("ethusdt"), **grid_eth)], "roivector"),
        ("inverse-risk_adverse", [btc(asset_type="inverse", contract_size=100.0, queue={"kind": "risk_adverse"})],
         "hashmap"),
    ]
    out = [("example", f"example/{name}", {"name": f"example/{name}", "depth": depth, "assets": assets})
           for name, assets, depth in ex]
    out += [("grid", f"grid/{name}", {"name": f"grid/{name}", "depth": depth, "assets": assets})
            for name, assets, depth in gr]
    return out


def close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return False
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


def run_side(python, script: str, runs: list[dict], label: str) -> dict[str, dict]:
    path = _ref.WORK / f"parity_runs_{script}.json"
    path.write_text(json.dumps(runs))
    t0 = time.perf_counter()
    try:
        res = _ref.run_json(python, [str(_ref.STRATEGIES / f"{script}.py"), str(path)], timeout=3600)
    except _ref.ChildFailed as exc:
        print(f"  {label:4} {script}: FAILED\n{exc}", file=sys.stderr)
        return {}
    print(f"  {label:4} {script}: {len(res.lines)} runs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return {line["name"]: line for line in res.lines}


def compare(name: str, ours: dict | None, ref: dict | None) -> tuple[bool, list[tuple]]:
    """(matched, table rows) for one configuration."""
    rows = []
    if not ours or not ref or "error" in ours or "error" in ref:
        err = lambda r: "missing" if not r else r.get("error", "ok")  # noqa: E731
        rows.append((name, "-", "run", err(ours), err(ref), False))
        return False, rows
    ok = True
    for a, (o, r) in enumerate(zip(ours["assets"], ref["assets"])):
        for f in FIELDS:
            m = close(o[f], r[f])
            ok &= m
            rows.append((name, str(a), f, o[f], r[f], m))
    for key in ("current_timestamp", "codes", "steps"):
        if key in ref or key in ours:
            m = ours.get(key) == ref.get(key)
            ok &= m
            rows.append((name, "*", key, ours.get(key), ref.get(key), m))
    return ok, rows


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.10g}"
    if isinstance(v, dict):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def print_table(rows: list[tuple]) -> None:
    print(f"{'config':34} {'asset':5} {'field':17} {'ours':>22} {'ref':>22}  match")
    for name, asset, field, o, r, m in rows:
        if field in ("codes",) and m:
            o = r = "(equal)"
        print(f"{name:34} {asset:5} {field:17} {fmt(o):>22} {fmt(r):>22}  {'yes' if m else 'NO'}")


def first_divergence(ours: list, ref: list) -> str:
    for i, (o, r) in enumerate(zip(ours, ref)):
        if o[:2] != r[:2] or not all(close(x, y) for x, y in zip(o[2:], r[2:])):
            prev = f"{ref[i - 1][0]}" if i else "the start"
            return (f"first differing trace row #{i} (state after a change in num_trades; last equal row at {prev}):\n"
                    f"    ours: ts={o[0]} asset={o[1]} {dict(zip(FIELDS, o[2:]))}\n"
                    f"    ref:  ts={r[0]} asset={r[1]} {dict(zip(FIELDS, r[2:]))}")
    if len(ours) != len(ref):
        longer, which = (ours, "ours") if len(ours) > len(ref) else (ref, "ref")
        extra = longer[min(len(ours), len(ref))]
        return f"traces equal for {min(len(ours), len(ref))} rows; {which} has more, next: {extra}"
    return "traces identical (the difference is after the last trade, or in codes/timestamp only)"


def write_findings(findings: list[str], quick: bool) -> None:
    path = _ref.WORK / "parity_findings.md"
    head = ["# Parity findings (benchmarks/parity.py)", "",
            f"data: {'first 150000 rows' if quick else 'full'} samples converted by the reference converter; "
            "trace = state after every engine step in which num_trades changed.", ""]
    path.write_text("\n".join(head + findings) + "\n")
    print(f"findings written to {path}", file=sys.stderr)


def golden(py: dict) -> int:
    """Print the reference's results for the golden runs (to paste into tests/parity/test_backtest_golden.py)."""
    import numpy as np

    sys.path.insert(0, str(_ref.STRATEGIES))
    import golden_runs

    data = _ref.converted("btcusdt", "ref", golden_runs.GOLDEN_ROWS)
    _ref.require(data)
    latency = _ref.WORK / "golden_latency.npz"
    np.savez(latency, data=golden_runs.golden_latency_for(np.load(data)["data"]))
    pairs = golden_runs.golden_runs(str(data), str(latency))
    results = {"ref": {}, "ours": {}}
    for script in ("example", "grid"):
        runs = [run for s, run in pairs if s == script]
        for side in ("ref", "ours"):
            results[side].update(run_side(py[side], script, runs, side))
    keep = ("assets", "current_timestamp", "codes", "steps")
    golden_values = {run["name"]: {k: v for k, v in results["ref"].get(run["name"], {}).items() if k in keep}
                     for _, run in pairs}
    print("GOLDEN = " + pprint.pformat(golden_values, width=116, sort_dicts=False))
    failed = [n for _, run in pairs for n in [run["name"]]
              if not compare(n, results["ours"].get(n), results["ref"].get(n))[0]]
    print(f"ours matches the reference on {len(pairs) - len(failed)}/{len(pairs)} golden runs"
          + (f"; not: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="first 150 000 rows of each sample only")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run configs whose name contains NAME or matches it as a glob (repeatable)")
    ap.add_argument("--json", metavar="OUT", help="write every result of both sides to OUT")
    ap.add_argument("--converter", choices=("ref", "ours"), default="ref",
                    help="run on the samples as converted by this converter (prepare_data.py --converter ...)")
    ap.add_argument("--no-trace", action="store_true", help="do not re-run mismatches with a state trace")
    ap.add_argument("--ours", metavar="PYTHON", help="interpreter for this package (default .venv/bin/python)")
    ap.add_argument("--ref", metavar="PYTHON", help="interpreter for the reference (default .venv-ref/bin/python)")
    ap.add_argument("--golden", action="store_true",
                    help="print the reference's numbers for the golden tests' runs (and check ours against them)")
    args = ap.parse_args(argv)
    if args.golden:
        return golden(_ref.interpreters(args.ours, args.ref))

    rows_limit = 150_000 if args.quick else None
    configs = matrix(rows_limit, args.converter)
    if args.only:
        configs = [c for c in configs if any(p in c[1] or fnmatch.fnmatch(c[1], p) for p in args.only)]
        if not configs:
            sys.exit(f"no configuration matches {args.only}; names: " + ", ".join(n for _, n, _ in matrix(None)))
    needed = {_ref.latency_file()} | {_ref.converted(s, args.converter, rows_limit) for s in _ref.SYMBOLS}
    _ref.require(*needed)
    py = _ref.interpreters(args.ours, args.ref)

    results: dict[str, dict[str, dict]] = {"ours": {}, "ref": {}}
    for script in ("example", "grid"):
        runs = [run for s, _, run in configs if s == script]
        if runs:
            for side in ("ref", "ours"):
                results[side].update(run_side(py[side], script, runs, side))

    all_rows, failed = [], []
    for _, name, _ in configs:
        ok, rows = compare(name, results["ours"].get(name), results["ref"].get(name))
        all_rows += rows
        if not ok:
            failed.append(name)
    print_table(all_rows)
    print()
    print(f"{'config':34} {'ours run_s':>11} {'ref run_s':>10}   (first run in a process includes compilation)")
    for _, name, _ in configs:
        o, r = results["ours"].get(name, {}), results["ref"].get(name, {})
        print(f"{name:34} {o.get('run_s', float('nan')):11.3f} {r.get('run_s', float('nan')):10.3f}")
    print(f"\n{len(configs) - len(failed)}/{len(configs)} configurations match"
          + (f"; mismatches: {', '.join(failed)}" if failed else ""))

    if failed and not args.no_trace:
        findings = []
        for script in ("example", "grid"):
            runs = [dict(copy.deepcopy(run), trace=True) for s, name, run in configs if s == script and name in failed]
            if not runs:
                continue
            traced = {side: run_side(py[side], script, runs, side) for side in ("ref", "ours")}
            for run in runs:
                name = run["name"]
                o, r = traced["ours"].get(name, {}), traced["ref"].get(name, {})
                if "trace" not in o or "trace" not in r:
                    state = lambda x: "traced" if "trace" in x else x.get("error", "no result")  # noqa: E731
                    findings.append(f"## {name}\n\nrun failed: ours={state(o)} ref={state(r)}\n")
                    continue
                findings.append(f"## {name}\n\n{first_divergence(o['trace'], r['trace'])}\n")
                findings.append("config: `" + json.dumps({k: v for k, v in run.items() if k != 'trace'}) + "`\n")
        write_findings(findings, args.quick)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"configs": [n for _, n, _ in configs], "failed": failed, "results": results}, fh, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
