"""The runs behind tests/parity/test_backtest_golden.py, shared with `benchmarks/parity.py --golden`, which prints
the reference's numbers for them. Imports numpy only.

Data: the first GOLDEN_ROWS rows of btcusdt_20240808 (~2 minutes) converted by
`hftbacktest.data.utils.binancefutures.convert`; order latency: `formula_latency` (no RNG, so any numpy version
writes the same file).
"""
import numpy as np

GOLDEN_ROWS = 150_000
BTC = {"tick_size": 0.1, "lot_size": 0.001, "asset_type": "linear", "contract_size": 1.0,
       "fee": {"kind": "trading_value", "maker": -0.00005, "taker": 0.0007}}
CONST_1MS = {"kind": "constant", "entry": 1_000_000, "response": 1_000_000}


def formula_latency(start_ns: int, end_ns: int) -> np.ndarray:
    """intp_order_latency rows every 50 ms over [start, end]: entry 1.5-4.5 ms, response 1-3 ms, varying with a
    fixed integer pattern; every 97th row is an exchange rejection (exch_ts = 0)."""
    n = (end_ns - start_ns) // 50_000_000 + 2
    i = np.arange(n, dtype=np.int64)
    lat = np.zeros(n, dtype=[("req_ts", "i8"), ("exch_ts", "i8"), ("resp_ts", "i8"), ("_padding", "i8")])
    lat["req_ts"] = start_ns + i * 50_000_000
    entry = 1_500_000 + (i * 7919 % 3001) * 1_000
    resp = 1_000_000 + (i * 104_729 % 2003) * 1_000
    lat["exch_ts"] = lat["req_ts"] + entry
    lat["resp_ts"] = lat["exch_ts"] + resp
    lat["exch_ts"][i % 97 == 50] = 0
    return lat


def golden_runs(data: str, latency: str) -> list:
    """(strategy script, run) pairs; `data` = the truncated btcusdt npz, `latency` = formula_latency's npz."""
    intp = {"kind": "intp", "files": [latency], "offset": 0}
    return [
        ("example", {"name": "golden/example-issue-config", "depth": "hashmap", "assets": [
            dict(BTC, data=[data], latency=intp, queue={"kind": "power_prob", "n": 2.0},
                 exchange="no_partial_fill")]}),
        ("grid", {"name": "golden/grid-powerprob3-const", "depth": "hashmap", "assets": [
            dict(BTC, data=[data], latency=CONST_1MS, queue={"kind": "power_prob3", "n": 3.0},
                 exchange="no_partial_fill")]}),
        ("grid", {"name": "golden/grid-roivector-partial-refcompat-intp", "depth": "roivector", "assets": [
            dict(BTC, data=[data], latency=intp, queue={"kind": "log_prob"}, exchange="partial_fill",
                 reference_compatible=True, roi_lb=55_000.0, roi_ub=70_000.0)]}),
    ]


def golden_latency_for(data: np.ndarray) -> np.ndarray:
    """The golden latency table for a (truncated) event array: 1 s margin either side of its time range."""
    return formula_latency(int(data["exch_ts"].min()) - 1_000_000_000, int(data["local_ts"].max()) + 1_000_000_000)
