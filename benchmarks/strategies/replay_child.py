"""One measured process for replay.py; runs unchanged under both packages.

    python benchmarks/strategies/replay_child.py MODE DATA

The bot is the replay configuration of issue 3: the docs example's asset with constant 1 ms order latency both ways,
power_prob_queue_model(2.0), no partial fill, maker -0.5 bp / taker 7 bp, tick 0.1, lot 0.001.
MODE
  warm         build + run the example (compiles), close; build a fresh bot + run again: report both run times
  first-event  build + one `elapse(10 ms)` through an @njit(cache=True) function: report the wall clock then
  compile      build + run the whole example on DATA (meant for a small file and an empty NUMBA_CACHE_DIR)
Prints one JSON line; times that replay.py compares with the spawn time are `time.time()` values.
"""
import json
import resource
import sys
import time
import warnings

import numpy as np
from numba import njit
from numba.core.errors import NumbaWarning
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

import _common
from example import market_making_algo

# the reference cannot cache functions that take its jitclass bot, and says so on every run
warnings.simplefilter("ignore", NumbaWarning)
T_IMPORTED = time.time()


@njit(cache=True)
def first_event(hbt):
    return hbt.elapse(10_000_000)


def build(path: str):
    asset = (
        BacktestAsset()
            .data([path])
            .linear_asset(1.0)
            .constant_order_latency(1_000_000, 1_000_000)
            .power_prob_queue_model(2.0)
            .no_partial_fill_exchange()
            .trading_value_fee_model(-0.00005, 0.0007)
            .tick_size(0.1)
            .lot_size(0.001)
    )
    return HashMapMarketDepthBacktest([asset])


def memory() -> dict:
    status = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "RssAnon", "RssFile"):
                status[key] = int(value.split()[0]) / 1024.0
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "rss_anon_mb": status.get("RssAnon"), "rss_file_mb": status.get("RssFile")}


def state(hbt) -> dict:
    return _common.state_of(hbt, 0)


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    out = {"mode": mode, "t_imported": T_IMPORTED}
    if mode == "warm":
        t0 = time.perf_counter()
        hbt = build(path)
        t1 = time.perf_counter()
        market_making_algo(hbt)
        t2 = time.perf_counter()
        out.update(first_build_s=t1 - t0, first_run_s=t2 - t1, first_state=state(hbt))
        hbt.close()
        t0 = time.perf_counter()
        hbt = build(path)
        t1 = time.perf_counter()
        market_making_algo(hbt)
        t2 = time.perf_counter()
        out.update(build_s=t1 - t0, warm_s=t2 - t1, state=state(hbt), current_timestamp=int(hbt.current_timestamp))
    elif mode == "first-event":
        hbt = build(path)
        out["t_built"] = time.time()
        out["rc"] = int(first_event(hbt))
        out["t_first_event"] = time.time()
    elif mode == "compile":
        hbt = build(path)
        out["t_built"] = time.time()
        market_making_algo(hbt)
        out["t_done"] = time.time()
        out["state"] = state(hbt)
    else:
        sys.exit(f"unknown mode {mode!r}")
    out.update(memory())
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
