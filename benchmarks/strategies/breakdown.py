"""Cut-down strategies that split a matrix cell's time per event (benchmarks/matrix.py, cells `split-*`).

    python benchmarks/strategies/breakdown.py RUNS.json      (see _common.py for the run format)

run["params"]["shape"]:
  idle    elapse(step) until the data ends and nothing else; with a step longer than the data (one wake-up) this is
          the engine's data path alone, with 10 ms it adds the cost of waking the strategy up
  static  shapes.py's ladder placed once per asset, on the first step with a quotable book, then idle: adds the
          exchange's tracking of resting orders (queue positions, fills) without any re-quoting
Params as in shapes.py (levels, spacing, step, notional, max_notional).
"""
import numpy as np
from numba import njit

import _common
from shapes import DEFAULTS, _ladder, _sane

SHAPES = {"idle": 0, "static": 1}


@njit
def breakdown_algo(hbt, n_assets, shape, levels, spacing, step, notional, max_notional):
    ids = np.zeros(4 * levels + 256, np.int64)
    ids[-1] = 1
    have = np.zeros(2 * levels, np.bool_)
    placed = np.zeros(n_assets, np.bool_)
    steps = 0
    while hbt.elapse(step) == 0:
        steps += 1
        if shape == 0:
            continue
        for a in range(n_assets):
            depth = hbt.depth(a)
            if placed[a] or not _sane(depth):
                continue
            _ladder(hbt, a, depth.best_bid_tick, depth.best_ask_tick, levels, spacing, notional, max_notional,
                    ids, have)
            placed[a] = True
    return steps


def run(hbt, cfg):
    p = {**DEFAULTS, **cfg.get("params", {})}
    steps = breakdown_algo(hbt, len(cfg["assets"]), SHAPES[p["shape"]], int(p["levels"]), int(p["spacing"]),
                           int(p["step"]), float(p["notional"]), float(p["max_notional"]))
    return {"steps": int(steps)}


if __name__ == "__main__":
    _common.main(run)
