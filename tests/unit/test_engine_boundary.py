"""The boundary between the Python API and the kernels: nothing compiles at import, the configuration crosses as
one named record, return codes come from types.ReturnCode, `hftbacktest compile` warms the cache."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from _subproc import ROOT, run_json as _run
from hftbacktest.kernels.state import asset_config, asset_config_dtype
from hftbacktest.types import ReturnCode


def test_importing_the_api_compiles_nothing():
    res = _run("""
        import json
        from numba.core import event
        compiled = []
        class Listener(event.Listener):
            def on_start(self, ev):
                compiled.append(str(ev.data.get("dispatcher")))
            def on_end(self, ev):
                pass
        event.register("numba:compile", Listener())
        import hftbacktest.backtest.bot, hftbacktest.live.bot
        from hftbacktest.kernels import entry
        print(json.dumps({"compiled": compiled, "entry_loaded": entry._fn is not None}))
    """, {})
    assert res == {"compiled": [], "entry_loaded": False}


def test_asset_config_is_one_named_record():
    cfg = asset_config(tick_size=0.5, lot_size=0.001, queue_model=5, record_trades=True)
    assert cfg.dtype == asset_config_dtype and cfg.shape == (1,)
    assert (cfg[0]["tick_size"], cfg[0]["queue_model"], cfg[0]["record_trades"], cfg[0]["fee_model"]) == \
        (0.5, 5, True, 0)
    with pytest.raises((KeyError, ValueError)):
        asset_config(tick=0.5)  # a misspelt field never reaches the kernel as a silent 0


def test_engine_state_reads_the_record_by_name():
    import hftbacktest.backtest.bot  # noqa: F401  registers how the engine's depth crosses into Python (boxing)
    from hftbacktest.kernels import depth as dp
    from hftbacktest.kernels.state import new_asset_state
    from hftbacktest.types import event_dtype

    cfg = asset_config(tick_size=0.5, lot_size=0.25, contract_size=3.0, maker_fee=-1e-4, taker_fee=7e-4,
                       queue_n=2.0, asset_type=1, fee_model=2, queue_model=3, queue_fn=0, exchange_model=1,
                       latency_model=0, entry_latency=11, response_latency=13, reference_compatible=True)
    d = dp.new_depth(0, 0.5, 0.25, 0.0, 0.0, False)
    s = _fields(new_asset_state(cfg, np.zeros((0, 4), np.int64), d, d, np.zeros(0, event_dtype), 0))
    assert s == (0.5, 0.25, 3.0, -1e-4, 7e-4, 2.0, 1, 2, 3, 1, 0, 11, 13, True, False)


def _fields(s):
    from numba import njit

    @njit
    def read(s):
        return (s.tick, s.lot, s.cs, s.maker_fee, s.taker_fee, s.queue_n, s.asset_type, s.fee_model, s.queue_model,
                s.exch_model, s.lat_model, s.lat_entry, s.lat_resp, s.compat, s.record_trades)

    return read(s)


def test_live_bot_return_codes_are_the_shared_ones():
    from hftbacktest.live import bot

    for name in ("OK", "END_OF_DATA", "MARKET_FEED", "ORDER_RESPONSE", "ORDER_ID_EXIST", "ORDER_NOT_FOUND",
                 "INVALID_ORDER_STATUS", "INSTRUMENT_NOT_FOUND", "TIMEOUT", "INTERRUPTED", "CUSTOM"):
        assert getattr(bot, name) == ReturnCode[name]


def test_compile_command_warms_the_cache():
    out = subprocess.run([sys.executable, "-m", "hftbacktest.cli", "compile"], capture_output=True, text=True,
                         cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("engine compiled and cached in ")


def test_entry_point_arguments_are_the_named_slots():
    import inspect

    from hftbacktest._numba_tricks import pointers
    from hftbacktest.kernels import abi, loop

    slots = ("op", "p") + abi.ENTRY_SLOTS
    assert tuple(inspect.signature(loop.entry).parameters) == slots
    assert tuple(inspect.signature(pointers.call_entry._defn).parameters)[1:] == ("fn",) + slots
    codes = [v for k, v in vars(abi).items() if k.startswith("FN_")]
    assert len(set(codes)) == len(codes)


def test_an_unknown_operation_is_an_invalid_request():
    from _engine_data import ask, bid, rows
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

    data = rows(bid(1000, 99.0, 5.0), ask(1000, 101.0, 5.0))
    hbt = HashMapMarketDepthBacktest([BacktestAsset().data([data]).tick_size(1.0).lot_size(1.0)])
    assert hbt._call(99, asset_no=0, order_id=1, flag=1, price=99.0, qty=1.0) == ReturnCode.INVALID_ORDER_REQUEST
    assert len(hbt.orders(0)) == 0
