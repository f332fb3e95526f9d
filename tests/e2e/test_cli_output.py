"""What the real console scripts and the shipped example print on success: no false "compiling" step on a warm
cache, readable numbers and the whole summary, no deprecation warnings."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _cli import console_script

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "1", "COLUMNS": "100"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def feed(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("feed")
    hft = console_script("hftbacktest")
    run([hft, "generate", "binancefutures", "--minutes", "0.5", "--seed", "2", "-o", "feed.gz"], d)
    run([hft, "convert", "binancefutures", "feed.gz", "-o", "feed.npz"], d)
    return d


def test_demo_announces_the_engine_compile_only_when_the_cache_is_cold(tmp_path):
    hft = console_script("hftbacktest")
    run([hft, "demo", "--minutes", "0.2", "--out", "a"], tmp_path)  # cold or warm: afterwards the cache is warm
    warm = run([hft, "demo", "--minutes", "0.2", "--out", "b"], tmp_path).stdout
    assert "converted" in warm and "Done in" in warm
    assert "compiling the engine" not in warm and "engine compiled" not in warm, warm


def test_backtest_prints_rounded_state_values_and_every_summary_metric(feed):
    # the shipped example config and strategy, on this module's feed
    config = (ROOT / "examples" / "backtest.toml").read_text()
    config = config.replace("../demo_out/btcusdt_synthetic.npz", str(feed / "feed.npz"))
    config = config.replace('"market_maker.py:', f'"{ROOT / "examples" / "market_maker.py"}:')
    (feed / "run.toml").write_text(config)
    out = run([console_script("hftbacktest"), "backtest", "run.toml", "--book-size", "10000"], feed).stdout
    state = re.search(r"asset 0 BTCUSDT: (position=.*)", out)
    assert state, out
    values = dict(item.split("=") for item in state.group(1).split(", "))
    assert set(values) >= {"position", "balance", "fee", "num_trades"}
    # sums of fills carry float noise (position=0.08200000000000005) when printed raw
    assert all(len(re.sub(r"[^0-9]", "", v).strip("0")) <= 10 for v in values.values()), values
    assert int(values["num_trades"]) > 0
    # the summary is a metric-per-row table: every metric is there, nothing elided by a narrow terminal
    for metric in ("SR", "Sortino", "Return", "MaxDrawdown", "ReturnOverMDD", "MaxPositionValue"):
        assert re.search(rf"│ {metric}\s+│\s+\S", out), (metric, out)
    assert "…" not in out


def test_the_grid_example_runs_a_backtest_without_warnings(feed):
    done = run([sys.executable, "-W", "error::DeprecationWarning", str(ROOT / "examples" / "gridtrading.py"),
                "backtest", "--data", "feed.npz"], feed)
    assert "Warning" not in done.stderr, done.stderr
    assert re.match(r"backtest: \d+ steps, position ", done.stdout), done.stdout


@pytest.mark.parametrize("first_line, announced", [("cold", True), ("ready", False), ("", False)])
def test_the_demo_shows_the_engine_step_only_for_a_cold_load(first_line, announced):
    # what the demo's background loader prints first: "cold" before compiling, "ready" after a warm load,
    # nothing when it died (the demo then compiles in its own process, shown as the strategy step)
    import io

    from rich.console import Console

    from hftbacktest.demo import _Steps, _await_engine

    console = Console(file=io.StringIO(), width=200)
    proc = subprocess.Popen([sys.executable, "-c", f"print({first_line!r}, flush=True) if {first_line!r} else None"],
                            stdout=subprocess.PIPE, text=True)
    _await_engine(proc, _Steps(console))
    text = console.file.getvalue()
    assert ("compiling the engine (first run only" in text) == announced, text
    assert ("engine compiled and cached" in text) == announced, text
    assert proc.returncode == 0


def test_the_emulator_help_gives_the_synthetic_feed_length_in_minutes(tmp_path):
    # open_feed reads synthetic:SYMBOL:N as N minutes; the help used to say seconds
    out = run([console_script("hftbacktest"), "emulator", "--help"], tmp_path).stdout
    assert "synthetic:SYMBOL[:minutes]" in " ".join(out.split()), out


def test_the_live_walkthroughs_secrets_and_logs_are_git_ignored():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = ["bf.toml", "latency.jsonl", "latency.npz", "results.csv", "demo_out/report.html"]
    done = subprocess.run(["git", "check-ignore", *names], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.split() == names, done.stdout + done.stderr
    tracked = subprocess.run(["git", "check-ignore", "src/hftbacktest/connector/configs/binancefutures_emulator.toml",
                              "examples/backtest.toml"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout == ""  # the shipped configs stay tracked
