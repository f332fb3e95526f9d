"""`hftbacktest backtest`: a strategy file + a TOML asset config, run in-process on a synthetic feed."""
from __future__ import annotations

import contextlib
import io
import re
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


@pytest.mark.parametrize("old, new, message", [
    ("tick_size = 0.1", "tick_sise = 0.1",
     r"asset\[0\]\.tick_sise: unknown key, did you mean 'tick_size'\? \(accepted: asset_type, contract_size, data, "),
    ("entry = 1_000_000", "entri = 1_000_000",
     r"asset\[0\]\.latency\.entri: unknown key for model 'constant', did you mean 'entry'\? "
     r"\(accepted: entry, model, response\)$"),
    ("response = 1_000_000 }", "response = 1_000_000, extra = 1 }", r"asset\[0\]\.latency\.extra: unknown key"),
    (", response = 1_000_000", "", r"asset\[0\]\.latency\.response: missing \(required by model 'constant'\)"),
    ('{ model = "risk_adverse" }', '{ model = "risk_adverse", n = 3 }',
     r"asset\[0\]\.queue\.n: unknown key for model 'risk_adverse' \(accepted: model\)$"),
    ('{ model = "risk_adverse" }', '{ model = "power_prob" }', r"asset\[0\]\.queue\.n: missing"),
    ('{ model = "risk_adverse" }', '{ n = 2.0 }', r"asset\[0\]\.queue\.model: missing \(accepted: log_prob, "),
    ('{ model = "risk_adverse" }', '"risk_adverse"', r"asset\[0\]\.queue: expected a table like"),
    ("maker = -0.00005", "makr = -0.00005",
     r"asset\[0\]\.fee\.makr: unknown key for model 'trading_value', did you mean 'maker'\?"),
    ("entry = 1_000_000", "entry = 1.5", r"asset\[0\]\.latency\.entry: expected an integer >= 0, got 1\.5"),
    ("tick_size = 0.1", 'tick_size = "0.1"', r"asset\[0\]\.tick_size: expected a number > 0, got '0\.1'"),
    ('name = "BTCUSDT"', 'name = "BTCUSDT"\nasset_type = "linera"',
     r"asset\[0\]\.asset_type: unknown value 'linera' \(accepted: inverse, linear\)"),
    ("record_size = 10", "record_sise = 10", r"record_sise: unknown key, did you mean 'record_size'\?"),
    ("record_size = 10", 'depth = "roi"',
     r'asset\[0\]\.roi_lb: missing \(required with depth = "roi"'),
    ("record_size = 10", 'depth = "roi"\n[[asset]]\ndata = "x.npz"\ntick_size = 1\nlot_size = 1\nroi_lb = 5\n'
                         'roi_ub = 5', r"asset\[0\]\.roi_ub: must be > roi_lb \(5\), got 5"),
    ("record_size = 10", 'depth = "vector"', r"depth: unknown value 'vector' \(accepted: hashmap, roi\)"),
])
def test_config_mistakes_at_every_level_name_the_file_and_the_full_key(tmp_path, old, new, message):
    from hftbacktest.backtest.cli import load_run_config

    bad = tmp_path / "bad.toml"
    assert old in CONFIG
    bad.write_text(CONFIG.replace(old, new, 1))
    with pytest.raises(ConfigError, match="^" + re.escape(str(bad)) + ": " + message):
        load_run_config(bad)


def test_roi_depth_with_bounds_loads_and_the_checked_config_builds_every_model(run_dir):
    from hftbacktest.backtest.cli import build_asset, load_run_config

    good = run_dir / "roi.toml"
    good.write_text(CONFIG.replace("record_size = 10", 'depth = "roi"').replace(
        'name = "BTCUSDT"', 'name = "BTCUSDT"\nroi_lb = 50000.0\nroi_ub = 70000.0'))
    cfg = load_run_config(good)
    asset = build_asset(cfg["asset"][0], run_dir, "asset[0]", good, "roi")
    built = asset.build(0, roi=True)
    assert (built.roi_lb, built.roi_ub) == (50000.0, 70000.0)
    assert (built.entry_latency, built.response_latency) == (1_000_000, 1_000_000)
    assert (built.maker_fee, built.taker_fee) == (-0.00005, 0.0007)


def test_bad_model_and_missing_strategy_are_config_errors(run_dir, capsys):
    bad = run_dir / "bad_queue.toml"
    bad.write_text(CONFIG.replace('model = "risk_adverse"', 'model = "fifo"'))
    assert main(["backtest", str(bad)]) == 1
    # the config file is named, not its folder (it used to print `error: .: asset[0].queue.model`)
    assert f"error: {bad}: asset[0].queue.model: unknown queue model 'fifo' (accepted: log_prob, log_prob2, " \
           "power_prob, power_prob2, power_prob3, risk_adverse)\n" == capsys.readouterr().err
    assert main(["backtest", str(run_dir / "run.toml"), "--strategy", "strategy.py"]) == 1
    assert "FILE.py:FUNCTION" in capsys.readouterr().err


def test_the_shipped_example_configs_are_valid():
    from pathlib import Path

    from hftbacktest.backtest.cli import load_run_config, load_strategy, num_params
    from hftbacktest.sweep import load_sweep

    examples = Path(__file__).resolve().parents[2] / "examples"
    cfg = load_run_config(examples / "backtest.toml")
    assert num_params(load_strategy(str(examples / cfg["strategy"]))) == 2
    runs = load_sweep(examples / "sweep.toml")
    assert len(runs) == 6 and {r.params["max_position"] for r in runs} == {0.1, 0.5}


@pytest.mark.parametrize("old, new, key", [
    ("entry = 4_000_000", "entri = 4_000_000",
     r"asset\[0\]\.latency\.entri: unknown key for model 'constant', did you mean 'entry'\?"),
    ("half_spread_bps = [0.05, 0.1, 0.2]", 'half_spread_bps = [0.1]\n"asset.0.latency.entri" = [1]',
     r"asset\[0\]\.latency\.entri: unknown key"),
    ("half_spread_bps = [0.05, 0.1, 0.2]", 'half_spread_bps = [0.1]\n"asset.fee" = [{ model = "flat_per_trade" }]',
     r"asset\[0\]\.fee\.maker: missing \(required by model 'flat_per_trade'\)"),
])
def test_sweep_configs_are_strict_at_every_level_too(tmp_path, old, new, key):
    from pathlib import Path

    from hftbacktest.sweep import load_sweep

    examples = Path(__file__).resolve().parents[2] / "examples"
    text = (examples / "sweep.toml").read_text()
    assert old in text
    (tmp_path / "market_maker.py").write_text((examples / "market_maker.py").read_text())
    (tmp_path / "sweep.toml").write_text(text.replace(old, new))
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "sweep.toml")) + ": .*" + key):
        load_sweep(tmp_path / "sweep.toml")


def test_the_summary_table_has_a_row_per_metric_and_a_column_per_split():
    from datetime import datetime
    from types import SimpleNamespace

    from rich.console import Console

    from hftbacktest.backtest.cli import summary_table

    day1, day2, day3 = (datetime(2024, 8, d) for d in (8, 9, 10))
    metrics = {f"Metric{i}": 0.08200000000000005 * i for i in range(12)}
    splits = [{"start": day1, "end": day2, **metrics}, {"start": day1, "end": day3, **metrics}]
    console = Console(file=io.StringIO(), width=60)  # narrower than a metric-per-column table would need
    console.print(summary_table(SimpleNamespace(splits=splits), "asset 0"))
    text = console.file.getvalue()
    assert all(f"Metric{i} " in text for i in range(12)), text
    assert text.count("0.902") == 2 and "0.08200000000000005" not in text  # Metric11, formatted, in both splits
    assert "2024-08-10" in text  # the whole-period column is labelled by its span
