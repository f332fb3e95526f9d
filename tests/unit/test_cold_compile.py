"""The cold-cache compile helper (kernels/warmup.py)."""
from __future__ import annotations

import os
import subprocess
import sys

from _subproc import ROOT, run_json as _run


def test_the_cold_compile_helper_caches_what_the_engine_then_loads(tmp_path):
    """kernels/warmup.py compiles part of the engine in a second process on a cold cache. Its signatures must be
    the ones the engine uses, or it only burns CPU: after it ran, building and running a backtest in a new process
    (helper off) must load those kernels from the cache instead of compiling them."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path), "HFTBACKTEST_PARALLEL_COMPILE": "0"}
    out = subprocess.run([sys.executable, "-m", "hftbacktest.kernels.warmup"], capture_output=True, text=True,
                         env={**os.environ, **env}, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = _run("""
        import json
        from numba.core import event
        compiled = []
        class Listener(event.Listener):
            def on_start(self, ev):
                f = getattr(ev.data.get("dispatcher"), "py_func", None)
                if f is not None:
                    compiled.append(f.__qualname__)
            def on_end(self, ev):
                pass
        event.register("numba:compile", Listener())
        import numpy as np
        from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
        from hftbacktest.types import BUY_EVENT, DEPTH_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, event_dtype
        data = np.zeros(2, event_dtype)
        data[0] = (EXCH_EVENT | LOCAL_EVENT | DEPTH_EVENT | BUY_EVENT, 1, 2, 99.0, 1.0, 0, 0, 0.0)
        data[1] = (EXCH_EVENT | LOCAL_EVENT | DEPTH_EVENT | SELL_EVENT, 3, 4, 101.0, 1.0, 0, 0, 0.0)
        hbt = HashMapMarketDepthBacktest([BacktestAsset().data(data).tick_size(1.0).lot_size(1.0)])
        rc = hbt.elapse(10)
        from hftbacktest.kernels import depth as dp  # a kernel the helper compiled, called from Python
        qty = dp.bid_qty_at(dp.new_depth(0, 1.0, 1.0, 0.0, 0.0, False), 5)
        print(json.dumps({"compiled": compiled, "rc": rc, "qty": qty}))
    """, env)
    late = {"ack_new", "_queue_fill", "_fill_resting_all", "queue_depth", "new_engine", "new_asset_list",
            "new_depth", "new_asset_state", "_append_asset",
            "check_rows", "_taker_partial", "fill"}
    assert res["rc"] == 1  # end of data: the engine really ran
    assert res["qty"] == 0.0  # its cached Python wrapper can unbox the engine's types
    assert "update_bid" in res["compiled"]  # the listener sees compiles...
    assert not late & set(res["compiled"]), sorted(late & set(res["compiled"]))  # ...but not of these
