"""Error output of the real `hftbacktest` console script: one line `error: <file>: <key>: <message>`, exit code 1,
never a traceback; a misspelled option shows that subcommand's usage."""
from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from _cli import console_script

pytestmark = pytest.mark.e2e


def hftbacktest(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("HFTBACKTEST_TRACEBACK", None)
    return subprocess.run([console_script("hftbacktest"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


CONFIG = textwrap.dedent('''
    strategy = "strategy.py:run"

    [[asset]]
    data = ["feed.npz"]
    tick_size = 0.1
    lot_size = 0.001
    latency = { model = "constant", entry = 1_000_000, response = 1_000_000 }
    queue = { model = "power_prob", n = 2.0 }
''')


def test_missing_input_files_are_one_line_naming_the_path(tmp_path):
    assert one_error_line(hftbacktest("convert", "binancefutures", "missing.gz", cwd=tmp_path)) == \
        "error: missing.gz: no such file or directory"
    assert one_error_line(hftbacktest("backtest", "run.toml", cwd=tmp_path)) == "error: run.toml: no such file"
    assert one_error_line(hftbacktest("backtest", ".", cwd=tmp_path)) == \
        "error: .: is a directory, expected a TOML file"
    # an OSError inside a subcommand (the output folder does not exist) names the path, with no errno tuple
    assert one_error_line(hftbacktest("generate", "binancefutures", "--minutes", "0.05", "-o", "no/feed.gz",
                                      cwd=tmp_path)) == "error: no/feed.gz: No such file or directory"


@pytest.mark.parametrize("old, new, expected", [
    # the file is named as given, not its folder (this used to be `error: .: asset[0].queue.model ...`)
    ('model = "power_prob", n = 2.0', 'model = "fifo"',
     "asset[0].queue.model: unknown queue model 'fifo' (accepted: log_prob, log_prob2, power_prob, power_prob2, "
     "power_prob3, risk_adverse)"),
    # a typo inside a nested table used to run silently with the default entry latency
    ("entry = 1_000_000", "entri = 1_000_000",
     "asset[0].latency.entri: unknown key for model 'constant', did you mean 'entry'? (accepted: entry, model, "
     "response)"),
    # an ROI book without bounds used to run to the end, trade nothing and exit 0
    ('strategy = "strategy.py:run"', 'strategy = "strategy.py:run"\ndepth = "roi"',
     'asset[0].roi_lb: missing (required with depth = "roi": the price range the order book tracks)'),
])
def test_config_errors_name_the_file_and_the_full_key(tmp_path, old, new, expected):
    (tmp_path / "run.toml").write_text(CONFIG.replace(old, new))
    assert one_error_line(hftbacktest("backtest", "run.toml", cwd=tmp_path)) == f"error: run.toml: {expected}"


def test_a_misspelled_option_shows_the_subcommands_usage(tmp_path):
    done = hftbacktest("convert", "binancefutures", "feed.gz", "--opts", "mt", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("usage: hftbacktest convert ")
    assert done.stderr.rstrip().endswith(
        "hftbacktest convert: error: unrecognized arguments: --opts mt (did you mean --opt?)")
    done = hftbacktest("demo", "--minuts", "2", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("usage: hftbacktest demo ")
    assert "(did you mean --minutes?)" in done.stderr
    done = hftbacktest("demp", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.rstrip().endswith("; did you mean 'demo'?")
    done = hftbacktest("convert", "binancefutures", "feed.gz", "--gap-policy", "resyn", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("usage: hftbacktest convert ")
    assert "invalid choice: 'resyn'" in done.stderr and done.stderr.rstrip().endswith("; did you mean 'resync'?")


def test_the_grid_example_reports_bad_input_in_one_line(tmp_path):
    import sys

    example = Path(__file__).resolve().parents[2] / "examples" / "gridtrading.py"
    done = subprocess.run([sys.executable, str(example), "backtest", "--data", "missing.gz"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert one_error_line(done) == "error: missing.gz: no such file or directory"
