"""`hftbacktest demo` as a new user runs it: the real command in a subprocess, offline, with a short feed."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_runs_end_to_end(tmp_path):
    # From a cold numba cache this includes compiling the engine into the demo strategy (minutes of CPU on a
    # loaded 2-core box); with a warm cache the run itself takes a few seconds.
    out = tmp_path / "demo_out"
    env = {**os.environ, "CI": "1", "COLUMNS": "120"}
    done = subprocess.run(
        [sys.executable, "-m", "hftbacktest.cli", "demo", "--out", str(out), "--minutes", "0.5", "--seed", "3"],
        capture_output=True, text=True, env=env, timeout=580,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout

    for name in ("btcusdt_synthetic.gz", "btcusdt_synthetic.npz", "record.npz", "report.html"):
        assert (out / name).stat().st_size > 0, name
    with np.load(out / "record.npz") as npz:
        record = npz["0"]
        config = json.loads(str(npz["config"]))
        assert "order_latency_0" in npz.files
    # 30 s of 10 ms steps, one row every 10 steps
    assert 250 <= len(record) <= 310
    assert np.all(np.diff(record["timestamp"]) == 100_000_000)
    assert record["num_trades"][-1] > 0  # the market maker traded
    assert config["assets"][0]["name"] == "BTCUSDT" and "power_prob" in config["queue model"]

    # the printed summary is the record's: trades counted by the stats equal the recorder's running count
    printed = re.search(r"│ NumberOfTrades\s*│\s*([\d,]+)", text)
    assert printed and int(printed.group(1).replace(",", "")) == record["num_trades"][-1] - record["num_trades"][0]
    assert "SR" in text and "gross PnL" in text and "Done in" in text
    assert "\x1b[" not in text  # no terminal codes when not on a tty

    html = (out / "report.html").read_text()
    assert "<script src=" not in html  # plotly.js is inlined: the report works offline
    assert html.count('class="plotly-graph-div"') == 3  # main chart, fee breakdown, latency histogram


def test_demo_compiles_only_when_the_cache_misses(tmp_path):
    # The demo asks numba's on-disk cache whether the strategy is compiled for its argument types; only when it
    # is not does it show the "compiling the engine (first run only...)" step. After any run it is cached.
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
    from hftbacktest._demo_strategy import market_making_algo
    from hftbacktest.demo import engine_cached, run_demo
    from hftbacktest.recorder import Recorder
    from hftbacktest.types import event_dtype
    from rich.console import Console

    asset = (BacktestAsset().data([np.zeros(1, event_dtype)]).linear_asset(1.0).constant_order_latency(1, 1)
             .power_prob_queue_model(2.0).no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0)
             .tick_size(0.1).lot_size(0.001))
    hbt = HashMapMarketDepthBacktest([asset])
    args = (hbt, Recorder(1, 10).recorder, 0.1, 5.0, 500.0, 0.5)
    cached_before = engine_cached(market_making_algo, args)
    assert cached_before is not None  # numba's cache layout is still the one we inspect

    console = Console(file=io.StringIO(), width=200)
    run_demo(tmp_path / "d", 0.2, 5, console)
    text = console.file.getvalue()
    assert ("compiling the engine into the strategy (first run only" in text) == (not cached_before), text
    assert engine_cached(market_making_algo, args) is True
    assert engine_cached(market_making_algo, args[:2] + (1, 2, 3, 4)) is False  # int arguments: never compiled
    hbt.close()
