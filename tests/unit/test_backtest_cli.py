"""`hftbacktest backtest`: a strategy file + a TOML asset config, run in-process on a synthetic feed."""
from __future__ import annotations

import contextlib
import io
import textwrap

import numpy as np
import pytest

from hftbacktest.cli import main
from hftbacktest.errors import ConfigError

STRATEGY = textwrap.dedent('''
    from numba import njit
    from hftbacktest import GTX, LIMIT

    @njit
    def quote_at_touch(hbt, recorder):
        while hbt.elapse(100_000_000) == 0:
            recorder.record(hbt)
            hbt.clear_inactive_orders(0)
            depth = hbt.depth(0)
            if depth.best_bid > 0 and depth.best_ask > depth.best_bid and depth.best_ask < 1e12:
                hbt.submit_buy_order(0, depth.best_bid_tick, depth.best_bid, 0.01, GTX, LIMIT, False)
                hbt.submit_sell_order(0, depth.best_ask_tick, depth.best_ask, 0.01, GTX, LIMIT, False)
        return True
''')

CONFIG = textwrap.dedent('''
    strategy = "strategy.py:quote_at_touch"
    record_size = 10

    [[asset]]
    name = "BTCUSDT"
    data = ["feed.npz"]
    tick_size = 0.1
    lot_size = 0.001
    latency = { model = "constant", entry = 1_000_000, response = 1_000_000 }
    queue = { model = "risk_adverse" }
    fee = { model = "trading_value", maker = -0.00005, taker = 0.0007 }
''')


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from hftbacktest.data import synthetic
    from hftbacktest.data.utils import binancefutures

    d = tmp_path_factory.mktemp("bt")
    synthetic.generate(str(d / "feed.gz"), symbol="BTCUSDT", minutes=1.0, seed=3, tick_size=0.1, lot_size=0.001)
    with contextlib.redirect_stdout(io.StringIO()):
        binancefutures.convert(str(d / "feed.gz"), output_filename=str(d / "feed.npz"))
    (d / "strategy.py").write_text(STRATEGY)
    (d / "run.toml").write_text(CONFIG)
    return d


def test_backtest_command_runs_records_and_reports(run_dir, capsys):
    record, report = run_dir / "record.npz", run_dir / "report.html"
    assert main(["backtest", str(run_dir / "run.toml"), "--record", str(record), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "asset 0 BTCUSDT: position=" in out and "num_trades=" in out
    rows = np.load(record)["0"]
    # one row per 100 ms step over a 1-minute feed; the recorder grew past its initial 10 rows
    assert len(rows) > 100
    assert np.all(np.diff(rows["timestamp"]) == 100_000_000)
    assert rows["num_trades"][-1] > 0, "quoting at the touch for a minute must trade"
    assert report.stat().st_size > 100_000 and "BTCUSDT" in report.read_text(encoding="utf-8")


def test_unknown_asset_key_is_named(run_dir):
    bad = run_dir / "bad.toml"
    bad.write_text(CONFIG.replace("tick_size = 0.1", "tick_sise = 0.1"))
    with pytest.raises(ConfigError, match=r"bad\.toml: asset\[0\]: unknown key\(s\) \['tick_sise'\]"):
        from hftbacktest.backtest.cli import load_run_config

        load_run_config(bad)


def test_bad_model_and_missing_strategy_are_config_errors(run_dir, capsys):
    bad = run_dir / "bad_queue.toml"
    bad.write_text(CONFIG.replace('model = "risk_adverse"', 'model = "fifo"'))
    assert main(["backtest", str(bad)]) == 1
    assert "queue.model must be one of" in capsys.readouterr().err
    assert main(["backtest", str(run_dir / "run.toml"), "--strategy", "strategy.py"]) == 1
    assert "FILE.py:FUNCTION" in capsys.readouterr().err
