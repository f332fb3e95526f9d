"""`hftbacktest sweep`: grid expansion, bad sweep files, and a 2x2 sweep in worker processes equal to single runs."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from hftbacktest.cli import main
from hftbacktest.errors import ConfigError
import hftbacktest.backtest.bot  # noqa: F401  (see below)
import hftbacktest.sweep as sweep_module
from hftbacktest.sweep import load_sweep, run_one, run_sweep

# The bot module is imported before the feed fixture runs the converter: as of this commit, numba code compiled or
# loaded before the order-view properties are registered makes `order.cancellable` untypable (KeyError) in
# strategies compiled afterwards; an engine issue, reported to the lead, not something a sweep does.
STRATEGY = "hftbacktest._demo_strategy:market_making_algo"

ASSET = """
[[asset]]
name = "BTCUSDT"
data = ["feed.npz"]
tick_size = 0.1
lot_size = 0.001
latency = { model = "constant", entry = 2_000_000, response = 2_000_000 }
queue = { model = "power_prob", n = 2.0 }
fee = { model = "trading_value", maker = -0.00005, taker = 0.0007 }
"""

PARAMS = """
[params]
skew_per_position = 5.0
order_value = 500.0
max_position = 0.5
"""


def write(tmp_path, text, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def feed_dir(tmp_path_factory):
    from hftbacktest.data import synthetic
    from hftbacktest.data.utils import binancefutures

    d = tmp_path_factory.mktemp("sweep")
    synthetic.generate(str(d / "feed.gz"), minutes=0.4, seed=4)
    with contextlib.redirect_stdout(io.StringIO()):
        binancefutures.convert(str(d / "feed.gz"), output_filename=str(d / "feed.npz"))
    return d


def test_grid_expands_in_order_into_strategy_arguments_and_asset_settings(tmp_path):
    path = write(tmp_path, f'strategy = "{STRATEGY}"\n' + ASSET + PARAMS + """
[grid]
half_spread_bps = [0.1, 0.5]
"asset.queue" = [{ model = "power_prob", n = 3.0 }, { model = "log_prob" }]
"asset.0.latency.entry" = [1_000_000, 9_000_000]
""")
    runs = load_sweep(path)
    assert len(runs) == 8 and [r.index for r in runs] == list(range(8))
    last = runs[-1]
    assert last.params == {"skew_per_position": 5.0, "order_value": 500.0, "max_position": 0.5,
                           "half_spread_bps": 0.5}
    asset = last.config["asset"][0]
    assert asset["queue"] == {"model": "log_prob"}
    assert asset["latency"] == {"model": "constant", "entry": 9_000_000, "response": 2_000_000}  # only entry
    assert runs[0].config["asset"][0]["latency"]["entry"] == 1_000_000
    assert "grid" not in last.config and "params" not in last.config


def test_grid_and_params_from_python_over_a_plain_backtest_file(tmp_path):
    path = write(tmp_path, f'strategy = "{STRATEGY}"\n' + ASSET, name="backtest.toml")  # no [grid] / [params]
    runs = load_sweep(path, grid={"half_spread_bps": [0.1, 0.2, 0.3], "depth": ["roi"]},
                      params={"skew_per_position": 1.0, "order_value": 100.0, "max_position": 0.1})
    assert [r.params["half_spread_bps"] for r in runs] == [0.1, 0.2, 0.3]
    assert all(r.config["depth"] == "roi" and r.params["order_value"] == 100.0 for r in runs)


@pytest.mark.parametrize("extra, message", [
    ("", "needs a \\[grid\\] table"),
    ("[grid]\nhalf_spread_bps = 0.1\n", "must be a non-empty list"),
    ('[grid]\n"asset.queue_model" = [1]\n', "queue_model is not an \\[\\[asset\\]\\] key"),
    ('[grid]\n"asset.3.tick_size" = [1]\n', "only 1 \\[\\[asset\\]\\] tables"),
    ('[grid]\n"asset.queue" = [{ model = "fifo" }]\n', "queue.model must be one of"),
    ('[grid]\n"what.ever" = [1]\n', "expected a strategy argument"),
    ("[grid]\nhalf_spread = [0.1]\n", "missing a required argument: 'half_spread_bps'"),
])
def test_bad_sweep_files_name_the_problem(tmp_path, extra, message):
    path = write(tmp_path, f'strategy = "{STRATEGY}"\n' + ASSET + extra)
    with pytest.raises(ConfigError, match=message):
        load_sweep(path)


def test_ray_backend_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    path = write(tmp_path, f'strategy = "{STRATEGY}"\n' + ASSET + PARAMS + "[grid]\nhalf_spread_bps = [0.1]\n")
    with pytest.raises(ConfigError, match=r"pip install 'hftbacktest-py\[ray\]'"):
        run_sweep(load_sweep(path), backend="ray", progress=False)


def test_sweep_in_workers_equals_each_run_alone(feed_dir, capsys, monkeypatch):
    path = write(feed_dir, f'strategy = "{STRATEGY}"\n' + ASSET + PARAMS + """
[grid]
half_spread_bps = [0.1, 0.5]
"asset.queue" = [{ model = "power_prob", n = 2.0 }, { model = "log_prob" }]
""")
    runs = load_sweep(path, book_size=10_000.0, resample="1s")
    # single runs in this process first: they compile (or load) the strategy, so the workers find it cached
    alone = pl.DataFrame([row for spec in runs for row in run_one(spec)], infer_schema_length=None)

    assert sweep_module._compiled(runs[0])  # just compiled (or loaded) above: the workers will load it
    # pretend the cache is cold: the first run then happens in this process (compiling once), the rest in workers
    in_workers = []
    local_run = sweep_module._Local.run

    def spy(self, specs):
        in_workers.extend(spec.index for spec in specs)
        yield from local_run(self, specs)

    monkeypatch.setattr(sweep_module, "_compiled", lambda spec: False)
    monkeypatch.setattr(sweep_module._Local, "run", spy)
    out = feed_dir / "results.csv"
    assert main(["sweep", str(path), "--workers", "2", "--book-size", "10000", "--resample", "1s",
                 "-o", str(out), "--top", "3"]) == 0
    printed = capsys.readouterr().out
    swept = pl.read_csv(out)
    assert in_workers == [1, 2, 3]

    assert swept["run"].to_list() == [0, 1, 2, 3]
    assert swept["half_spread_bps"].to_list() == [0.1, 0.1, 0.5, 0.5]
    assert swept["asset.queue"].to_list() == ["model=power_prob, n=2.0", "model=log_prob"] * 2
    metrics = [c for c in alone.columns if c not in ("run", "asset", "asset.queue", "half_spread_bps", "elapsed_s")]
    assert {"SR", "Return", "MaxDrawdown", "DailyNumberOfTrades", "final_position", "fee"} <= set(metrics)
    for column in metrics:
        assert swept[column].to_list() == pytest.approx(alone[column].to_list(), rel=1e-12, nan_ok=True), column
    assert alone["final_position"].n_unique() > 1 or alone["fee"].n_unique() > 1  # the grid changed the runs
    assert "4 result rows" in printed and "top 3 by SR" in printed and f"wrote {out}" in printed


CACHED_STRATEGY = """
from numba import njit

from hftbacktest._demo_strategy import market_making_algo


@njit(cache=True)
def strategy(hbt, recorder, half_spread_bps, skew_per_position, order_value, max_position):
    market_making_algo(hbt, recorder, half_spread_bps, skew_per_position, order_value, max_position)
"""

_CACHE_PATHS = """
import json, sys
from pathlib import Path
from numba.core.caching import FunctionCache
import hftbacktest
root = Path(hftbacktest.__file__).parent
out = {}
for folder in sorted({p.parent for p in root.rglob("*.py")}):
    scope = {}
    exec(compile("def probe():\\n    pass\\n", str(folder / "__init__.py"), "exec"), scope)
    out[str(folder)] = FunctionCache(scope["probe"]).cache_path
print(json.dumps(out))
"""


def _package_cache_paths(env: dict[str, str]) -> dict[str, str]:
    import json

    out = subprocess.run([sys.executable, "-c", _CACHE_PATHS], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _seed_engine_cache(cache_dir: Path) -> None:
    """NUMBA_CACHE_DIR `cache_dir` with this package's compiled code (a warm engine), and nothing else."""
    here = _package_cache_paths(dict(os.environ))
    there = _package_cache_paths({**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)})
    for folder, source in here.items():
        files = [p for pattern in ("*.nbi", "*.nbc", "hftbacktest.digest") for p in Path(source).glob(pattern)]
        if files:
            Path(there[folder]).mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy2(f, there[folder])


def test_cached_strategy_file_runs_in_workers_from_a_cold_and_a_warm_cache(feed_dir, tmp_path):
    # a strategy file with @njit(cache=True): numba's cache names the function's module, which must be importable
    # by that name in the worker processes (it was cached as '<dynamic>' and failed to load there)
    run_one(load_sweep(write(feed_dir, f'strategy = "{STRATEGY}"\n' + ASSET + PARAMS
                                       + "[grid]\nhalf_spread_bps = [0.1]\n"))[0])  # the engine compiled here
    cache = tmp_path / "numba-cache"
    _seed_engine_cache(cache)
    (tmp_path / "mm.py").write_text(CACHED_STRATEGY)
    asset = ASSET.replace('data = ["feed.npz"]', f"data = [{str(feed_dir / 'feed.npz')!r}]")
    path = write(tmp_path, 'strategy = "mm.py:strategy"\n' + asset + PARAMS + "[grid]\nhalf_spread_bps = [0.1, 0.3, 0.5]\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    strategy_cache = f"{tmp_path.name}_*/*.nbi"
    assert not list(cache.glob(strategy_cache))
    tables = {}
    for state in ("cold", "warm"):
        out = tmp_path / f"{state}.csv"
        proc = subprocess.run([sys.executable, "-c", "from hftbacktest.cli import main; raise SystemExit(main())",
                               "sweep", str(path), "--workers", "2", "-o", str(out)],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, f"{state} cache: {proc.stderr[-3000:]}"
        assert list(cache.glob(strategy_cache))  # the strategy is in the tmp cache dir
        tables[state] = pl.read_csv(out).drop("elapsed_s")
    assert tables["cold"].equals(tables["warm"])
    assert tables["cold"]["run"].to_list() == [0, 1, 2] and tables["cold"]["fee"].n_unique() > 1
