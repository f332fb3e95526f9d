"""Golden figures for the backtest engine: the docs example and the grid strategy of benchmarks/strategies on the
first 150 000 rows (~2 minutes) of the btcusdt sample, against hftbacktest 2.4.4.

How GOLDEN was obtained: `.venv/bin/python benchmarks/prepare_data.py` (converts
../shared/data/binance-usdm/btcusdt_20240808.gz with the REFERENCE `binancefutures.convert` in .venv-ref and keeps
the first 150 000 rows), then `.venv/bin/python benchmarks/parity.py --golden`, which runs
benchmarks/strategies/{example,grid}.py under .venv-ref (hftbacktest 2.4.4, numba 0.68.1) with the runs defined in
benchmarks/strategies/golden_runs.py (order latency: its `formula_latency`, no RNG) and prints the GOLDEN dict
below, pasted verbatim. Here the same runs execute in-process on our engine, with the sample converted by OUR
converter (its output is byte-identical to the reference converter's).
"""
from __future__ import annotations

import functools
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.parity

STRATEGIES = Path(__file__).resolve().parents[2] / "benchmarks" / "strategies"

GOLDEN = {'golden/example-issue-config': {'assets': [{'position': 0.1340000000000001,
                                             'balance': -8276.886399999998,
                                             'fee': -0.6240849199999998,
                                             'num_trades': 101,
                                             'trading_volume': 0.20200000000000015,
                                             'trading_value': 12481.698400000007}],
                                 'current_timestamp': 1723161371268000000},
 'golden/grid-powerprob3-const': {'assets': [{'position': -0.018000000000000002,
                                              'balance': 1107.5114,
                                              'fee': 4.307537289999998,
                                              'num_trades': 473,
                                              'trading_volume': 0.9460000000000007,
                                              'trading_value': 58461.0562}],
                                  'current_timestamp': 1723161371224266928,
                                  'codes': {'feed': {'0': 2414, '1': 1, '2': 2211, '3': 203},
                                            'order': {'0': 1200, '11': 86, '12': 48},
                                            'wait_order_response': {'0': 36}},
                                  'steps': 4828},
 'golden/grid-roivector-partial-refcompat-intp': {'assets': [{'position': 0.018000000000000002,
                                                              'balance': -1113.8922000000002,
                                                              'fee': 1.44649539,
                                                              'num_trades': 141,
                                                              'trading_volume': 0.2820000000000002,
                                                              'trading_value': 17431.474200000004}],
                                                  'current_timestamp': 1723161293512886325,
                                                  'codes': {'feed': {'0': 788, '2': 731, '3': 58, '14': 1},
                                                            'order': {'0': 354, '11': 26, '12': 15},
                                                            'wait_order_response': {'0': 11}},
                                                  'steps': 1577}}


@functools.cache
def _load(name: str):
    """Import a benchmarks/strategies script under a private name (they import their sibling `_common`)."""
    if str(STRATEGIES) not in sys.path:
        sys.path.insert(0, str(STRATEGIES))
    spec = importlib.util.spec_from_file_location(f"_golden_strategy_{name}", STRATEGIES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden_runs(sample_data_dir, tmp_path_factory):
    from hftbacktest.data.utils.binancefutures import convert

    runs_module = _load("golden_runs")
    data = convert(str(sample_data_dir / "btcusdt_20240808.gz"))[: runs_module.GOLDEN_ROWS]
    work = tmp_path_factory.mktemp("golden")
    np.savez(work / "btcusdt_first.npz", data=data)
    np.savez(work / "latency.npz", data=runs_module.golden_latency_for(data))
    pairs = runs_module.golden_runs(str(work / "btcusdt_first.npz"), str(work / "latency.npz"))
    return {run["name"]: (script, run) for script, run in pairs}


def _same(ours, ref) -> bool:
    if isinstance(ref, float):
        return math.isclose(ours, ref, rel_tol=1e-9, abs_tol=1e-12)
    return ours == ref


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_state_matches_reference(golden_runs, name):
    script, run = golden_runs[name]
    strategy = _load(script)
    common = sys.modules["_common"]
    hbt = common.build_bot(run)
    extra = strategy.run(hbt, run)
    got = {"assets": [common.state_of(hbt, a) for a in range(len(run["assets"]))],
           "current_timestamp": int(hbt.current_timestamp), **extra}
    hbt.close()
    want = GOLDEN[name]
    for key in ("current_timestamp", "codes", "steps"):
        if key in want:
            assert got[key] == want[key], f"{name}: {key}"
    for a, (ours, ref) in enumerate(zip(got["assets"], want["assets"])):
        diff = {f: (ours[f], ref[f]) for f in ref if not _same(ours[f], ref[f])}
        assert not diff, f"{name} asset {a}: (ours, reference) differ: {diff}"
