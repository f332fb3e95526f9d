"""Borrowed (reference-count-free) engine kernels, hftbacktest/_numba_tricks/borrow.py.

The hot kernels are lowered without NRT incref/decref; owning helpers do every allocation. Two things can go
wrong: the elision silently stops happening (speed), or a borrowed kernel allocates / replaces a field / keeps an
alias (a leak, or a use-after-free). Each check runs in a fresh interpreter: one with an empty numba cache so the
kernels are really lowered here, one with NUMBA_NRT_STATS=1 so every meminfo allocation and free is counted.
"""
from __future__ import annotations

from _subproc import run_json as _run
from hftbacktest.kernels import loop  # noqa: F401  (registers every borrowed kernel)
from hftbacktest._numba_tricks.borrow import BORROWED, _qualified_name


def test_symbol_names_map_to_qualified_names():
    sym = "_ZN11hftbacktest7kernels5depth10update_bidB3v76B54c8tJTIeFIjxEN11hftbacktest9DepthTypeEdd"
    assert _qualified_name(sym) == "hftbacktest.kernels.depth.update_bid"
    assert _qualified_name("cfunc._ZN11hftbacktest7kernels4loop5entryB2v1Exx") is None
    assert "hftbacktest.kernels.loop.entry" in BORROWED
    assert "hftbacktest.kernels.depth.update_bid" in BORROWED
    assert "hftbacktest.kernels.depth._alloc_window" not in BORROWED  # owning: it allocates


def test_hot_kernels_are_lowered_without_reference_counting(tmp_path):
    res = _run("""
        import json, re
        from hftbacktest._numba_tricks import borrow
        from hftbacktest.kernels import depth
        from hftbacktest.kernels.depth import depth_type
        from numba import types
        sig = (depth_type, types.float64, types.float64)
        depth.update_bid.compile(sig)
        depth._alloc_window.compile((depth_type, types.int64))
        def calls(fn):
            # the library also holds every linked callee: count inside the function's own definition only
            ir = "".join(fn.inspect_llvm().values())
            sym = "_ZN11hftbacktest7kernels5depth" + str(len(fn.__name__)) + fn.__name__
            body = re.search(r'define [^\\n]*@"?' + sym + r'[^\\n]*\\n(.*?)\\n}\\n', ir, re.S).group(1)
            return len(re.findall(r"call void @NRT_(?:incref|decref)", body))
        print(json.dumps({"installed": borrow.INSTALLED, "hot": calls(depth.update_bid),
                          "owning": calls(depth._alloc_window)}))
    """, {"NUMBA_CACHE_DIR": str(tmp_path)})
    assert res["installed"]
    assert res["hot"] == 0
    assert res["owning"] > 0  # the same lowering still counts references outside borrowed kernels


def test_a_backtest_frees_everything_it_allocates(tmp_path):
    """Two identical backtests in one process; the second must leave the NRT allocation balance where it found
    it. The scenario walks every owning path a borrowed kernel hands off to: order-table, id-map and bus growth
    (100 live orders), trade recording past its capacity, depth overflow growth (far quotes) and window
    re-centring (a 3000-tick trend on a 0.001 tick), chunk switches (three data arrays) and a local rejection."""
    res = _run("""
        import gc, json
        import numpy as np
        from numba import njit
        from numba.core.runtime import rtsys
        from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, BUY_EVENT, SELL_EVENT, DEPTH_EVENT, \\
            TRADE_EVENT, EXCH_EVENT, LOCAL_EVENT, GTC, GTX, LIMIT, event_dtype

        def feed(seed):
            rng = np.random.default_rng(seed)
            n = 6000
            out = np.zeros(n, event_dtype)
            mid = 100.0 + np.cumsum(rng.choice([-0.001, 0.0, 0.002], n))  # drifts ~3000 ticks up
            ts = 1_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000
            for i in range(n):
                k = i % 4
                side = BUY_EVENT if k < 2 else SELL_EVENT
                if i % 97 == 0:  # a far quote, outside the dense window
                    px = mid[i] - 80.0 if side == BUY_EVENT else mid[i] + 80.0
                    out[i] = (EXCH_EVENT | LOCAL_EVENT | DEPTH_EVENT | side, ts[i], ts[i] + 500_000, px,
                              float(rng.integers(1, 5)), 0, 0, 0.0)
                elif k == 1 or k == 3:
                    out[i] = (EXCH_EVENT | LOCAL_EVENT | TRADE_EVENT | side, ts[i], ts[i] + 500_000,
                              round(mid[i], 3), 1.0, 0, 0, 0.0)
                else:
                    off = 0.001 * int(rng.integers(1, 20))
                    px = mid[i] - off if side == BUY_EVENT else mid[i] + off
                    out[i] = (EXCH_EVENT | LOCAL_EVENT | DEPTH_EVENT | side, ts[i], ts[i] + 500_000, round(px, 3),
                              float(rng.integers(0, 5)), 0, 0, 0.0)
            return np.array_split(out, 3)

        @njit
        def strategy(hbt):
            oid = 1
            while hbt.elapse(10_000_000) == 0:
                hbt.clear_inactive_orders(0)
                d = hbt.depth(0)
                if not (d.best_bid > 0 and d.best_ask > 0):
                    continue
                for k in range(5):
                    tick = d.best_bid_tick - 1 - (oid % 50)
                    hbt.submit_buy_order(0, oid, tick * d.tick_size, 1.0, GTC, LIMIT, False)
                    oid += 1
                hbt.submit_sell_order(0, oid, d.best_bid, 1.0, GTX, LIMIT, False)  # crossing post-only: expires
                oid += 1
                if oid % 30 == 0:
                    hbt.cancel(0, oid - 10, False)
                if oid % 600 == 0:
                    hbt.clear_last_trades(0)
            return oid

        def run():
            asset = (BacktestAsset().data(feed(7)).linear_asset(1.0).constant_order_latency(2_000_000, 2_000_000)
                     .power_prob_queue_model(2.0).no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0)
                     .tick_size(0.001).lot_size(1.0).last_trades_capacity(100_000))
            hbt = HashMapMarketDepthBacktest([asset])
            n = strategy(hbt)
            sv = hbt.state_values(0)
            out = (n, float(sv.position), int(sv.num_trades))
            hbt.close()
            del hbt, asset
            gc.collect()
            return out

        def balance():
            s = rtsys.get_allocation_stats()
            return s.alloc - s.free, s.mi_alloc - s.mi_free

        first = run()
        before = balance()
        second = run()
        after = balance()
        print(json.dumps({"first": first, "second": second, "before": before, "after": after}))
    """, {"NUMBA_NRT_STATS": "1", "NUMBA_CACHE_DIR": str(tmp_path)})
    n_orders, position, num_trades = res["second"]
    assert res["first"] == res["second"]
    assert n_orders > 3000 and num_trades > 10 and position > 0  # the paths above were really taken
    assert res["after"] == res["before"], f"NRT balance moved from {res['before']} to {res['after']}"

