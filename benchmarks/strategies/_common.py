"""Run a strategy script from a JSON run list; shared by the scripts in this folder.

Imports only `hftbacktest`, numpy and the standard library, so the same file runs unchanged under the reference
hftbacktest 2.4.4 and under this package. Usage (what parity.py and the tests do):

    python benchmarks/strategies/<script>.py RUNS.json        # or an inline JSON string

RUNS.json is one run or a list of runs; a run is
    {"name": str, "depth": "hashmap" | "roivector", "assets": [ASSET, ...], "params": {...}, "trace": bool}
and ASSET is
    {"data": [path, ...], "initial_snapshot": path | null, "asset_type": "linear" | "inverse",
     "contract_size": float, "latency": {"kind": "constant", "entry": ns, "response": ns}
                                       | {"kind": "intp", "files": [path, ...], "offset": ns},
     "queue": {"kind": "risk_adverse" | "power_prob" | "power_prob2" | "power_prob3" | "log_prob" | "log_prob2",
               "n": float},
     "exchange": "no_partial_fill" | "partial_fill", "reference_compatible": bool,
     "fee": {"kind": "trading_value" | "trading_qty" | "flat_per_trade", "maker": float, "taker": float},
     "tick_size": float, "lot_size": float, "roi_lb": float, "roi_ub": float, "last_trades_capacity": int}
For every run the script prints ONE JSON line: per-asset state values, return-code counts, timings.
"""
from __future__ import annotations

import importlib.util
import json
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from numba import njit

import hftbacktest
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest

IS_REFERENCE = importlib.util.find_spec("hftbacktest._hftbacktest") is not None
PACKAGE = "ref" if IS_REFERENCE else "ours"
STATE_FIELDS = ("position", "balance", "fee", "num_trades", "trading_volume", "trading_value")
TRACE_CAPACITY = 200_000
CODE_SLOTS = 128  # return codes are < 128 (0-3, 10-15, 100)


def _queue(asset, q: dict):
    kind = q["kind"]
    if kind == "risk_adverse":
        return asset.risk_adverse_queue_model()
    if kind == "power_prob":
        return asset.power_prob_queue_model(float(q["n"]))
    if kind == "power_prob2":
        return asset.power_prob_queue_model2(float(q["n"]))
    if kind == "power_prob3":
        return asset.power_prob_queue_model3(float(q["n"]))
    if kind == "log_prob":
        return asset.log_prob_queue_model()
    if kind == "log_prob2":
        return asset.log_prob_queue_model2()
    raise ValueError(f"unknown queue model {kind!r}")


def build_asset(cfg: dict) -> BacktestAsset:
    asset = BacktestAsset().data(list(cfg["data"]))
    if cfg.get("initial_snapshot"):
        asset = asset.initial_snapshot(cfg["initial_snapshot"])
    cs = float(cfg.get("contract_size", 1.0))
    asset = asset.inverse_asset(cs) if cfg.get("asset_type") == "inverse" else asset.linear_asset(cs)
    lat = cfg["latency"]
    if lat["kind"] == "constant":
        asset = asset.constant_order_latency(int(lat["entry"]), int(lat["response"]))
    else:
        asset = asset.intp_order_latency(list(lat["files"]), int(lat.get("offset", 0)))
    asset = _queue(asset, cfg["queue"])
    if cfg.get("exchange", "no_partial_fill") == "partial_fill":
        asset = asset.partial_fill_exchange()
    else:
        asset = asset.no_partial_fill_exchange()
    if cfg.get("reference_compatible"):
        # this package fixes reference bug #316 by default; the switch restores the reference's accounting
        if not IS_REFERENCE:
            if not hasattr(asset, "reference_compatible"):
                raise RuntimeError("this hftbacktest has no BacktestAsset.reference_compatible()")
            asset = asset.reference_compatible(True)
    fee = cfg["fee"]
    maker, taker = float(fee["maker"]), float(fee["taker"])
    if fee["kind"] == "trading_value":
        asset = asset.trading_value_fee_model(maker, taker)
    elif fee["kind"] == "trading_qty":
        asset = asset.trading_qty_fee_model(maker, taker)
    else:
        asset = asset.flat_per_trade_fee_model(maker, taker)
    asset = asset.tick_size(float(cfg["tick_size"])).lot_size(float(cfg["lot_size"]))
    if cfg.get("last_trades_capacity"):
        asset = asset.last_trades_capacity(int(cfg["last_trades_capacity"]))
    if "roi_lb" in cfg:
        asset = asset.roi_lb(float(cfg["roi_lb"])).roi_ub(float(cfg["roi_ub"]))
    return asset


def build_bot(run: dict):
    assets = [build_asset(a) for a in run["assets"]]
    if run.get("depth", "hashmap") == "roivector":
        return ROIVectorMarketDepthBacktest(assets)
    return HashMapMarketDepthBacktest(assets)


@njit
def _state_values(hbt, asset_no):
    sv = hbt.state_values(asset_no)
    return sv.position, sv.balance, sv.fee, sv.num_trades, sv.trading_volume, sv.trading_value


def state_of(hbt, asset_no: int) -> dict:
    """Final state values, read the way strategies read them (inside @njit)."""
    values = _state_values(hbt, asset_no)
    return {f: (int(v) if f == "num_trades" else float(v)) for f, v in zip(STATE_FIELDS, values)}


def new_codes() -> np.ndarray:
    """Return-code counters: row 0 elapse/wait_next_feed, row 1 submit/modify/cancel, row 2 wait_order_response."""
    return np.zeros((3, CODE_SLOTS), np.int64)


def new_trace() -> tuple[np.ndarray, np.ndarray]:
    """State trace: int64 (timestamp, asset) per row, with the number of rows used in the extra last slot, and
    float64 rows of the six state values."""
    return np.zeros((TRACE_CAPACITY + 1, 2), np.int64), np.zeros((TRACE_CAPACITY, len(STATE_FIELDS)), np.float64)


def codes_dict(codes: np.ndarray) -> dict:
    names = ("feed", "order", "wait_order_response")
    return {names[r]: {str(c): int(codes[r, c]) for c in np.flatnonzero(codes[r])} for r in range(len(codes))}


def trace_list(trace: tuple[np.ndarray, np.ndarray]) -> list:
    keys, values = trace
    used = int(keys[-1, 0])
    return [[int(k[0]), int(k[1]), *(float(x) for x in v)] for k, v in zip(keys[:used], values[:used])]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def load_runs(arg: str) -> list[dict]:
    text = Path(arg).read_text() if not arg.lstrip().startswith(("{", "[")) else arg
    runs = json.loads(text)
    return runs if isinstance(runs, list) else [runs]


def main(strategy) -> None:
    """`strategy(hbt, run) -> dict` runs one backtest on a built bot and returns extra result fields."""
    for run in load_runs(sys.argv[1]):
        try:
            t0 = time.perf_counter()
            hbt = build_bot(run)
            t1 = time.perf_counter()
            c1 = time.process_time()  # every thread: both packages load data in background threads
            extra = strategy(hbt, run)
            t2 = time.perf_counter()
            c2 = time.process_time()
        except Exception as exc:  # report and go on with the next run
            traceback.print_exc()
            print(json.dumps({"name": run.get("name", ""), "package": PACKAGE, "error": repr(exc)}), flush=True)
            continue
        out = {
            "name": run.get("name", ""), "package": PACKAGE, "hftbacktest": str(Path(hftbacktest.__file__).parent),
            "assets": [state_of(hbt, a) for a in range(len(run["assets"]))],
            "current_timestamp": int(hbt.current_timestamp),
            "build_s": t1 - t0, "run_s": t2 - t1, "cpu_s": c2 - c1, "peak_rss_mb": peak_rss_mb(),
        }
        out.update(extra)
        hbt.close()
        print(json.dumps(out), flush=True)


@njit
def record_state(hbt, a, trace_keys, trace_values, last_trades):
    """Append asset `a`'s state to the trace if its number of trades changed since the last row."""
    sv = hbt.state_values(a)
    used = trace_keys[trace_keys.shape[0] - 1, 0]
    if sv.num_trades != last_trades[a] and used < trace_values.shape[0]:
        last_trades[a] = sv.num_trades
        trace_keys[used, 0] = hbt.current_timestamp
        trace_keys[used, 1] = a
        trace_values[used, 0] = sv.position
        trace_values[used, 1] = sv.balance
        trace_values[used, 2] = sv.fee
        trace_values[used, 3] = sv.num_trades
        trace_values[used, 4] = sv.trading_volume
        trace_values[used, 5] = sv.trading_value
        trace_keys[trace_keys.shape[0] - 1, 0] = used + 1
