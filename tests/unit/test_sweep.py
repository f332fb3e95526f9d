"""`hftbacktest sweep`: grid expansion, bad sweep files, and sweeps in worker processes equal to single runs."""
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
    ('[grid]\n"asset.queue" = [{ model = "fifo" }]\n', "queue.model: unknown queue model 'fifo' \\(accepted: "),
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


@pytest.mark.parametrize("grid, message", [
    ("half_spread_bps = { low = 0.5, high = 0.1 }", "grid key 'half_spread_bps': empty range \\(high 0.1 < low 0.5\\)"),
    ("half_spread_bps = { low = 0.1, high = 0.5, step = 0 }", "grid key 'half_spread_bps': step must be > 0"),
    ("half_spread_bps = { low = 0.1 }", "grid key 'half_spread_bps': a range is"),
    ('half_spread_bps = { low = 0.1, high = "x" }', "high must be a finite number"),
    ("half_spread_bps = { low = nan, high = 1.0 }", "grid key 'half_spread_bps': low must be a finite number, got nan"),
    ("half_spread_bps = { low = 0.0, high = inf }", "grid key 'half_spread_bps': high must be a finite number"),
    ("half_spread_bps = { low = 0.0, high = 1.0, log = true }", "a log range needs low > 0"),
    ("half_spread_bps = []", "grid key 'half_spread_bps' must be a non-empty list"),
])
def test_bad_ranges_name_the_key(tmp_path, grid, message):
    path = write(tmp_path, f'strategy = "{STRATEGY}"\n' + ASSET + PARAMS + "[grid]\n" + grid + "\n")
    with pytest.raises(ConfigError, match=message):
        sweep_module.read_plan(path)


def test_a_range_with_a_step_is_a_grid_axis_and_without_one_only_a_search_space(tmp_path):
    path = write(tmp_path, f'strategy = "{STRATEGY}"\n' + ASSET + PARAMS + """
[grid]
half_spread_bps = { low = 0.1, high = 0.5, step = 0.2 }
"asset.0.latency.entry" = { low = 1_000_000, high = 3_000_000, step = 1_000_000 }
""")
    runs = load_sweep(path)
    assert [(r.params["half_spread_bps"], r.config["asset"][0]["latency"]["entry"]) for r in runs] == [
        (v, e) for v in (0.1, 0.3, 0.5) for e in (1_000_000, 2_000_000, 3_000_000)]
    path.write_text(path.read_text().replace(", step = 0.2", ""))
    with pytest.raises(ConfigError, match="a range needs `step` for a grid search"):
        load_sweep(path)


def _search(path, **kw):
    return sweep_module.search(sweep_module.read_plan(path, book_size=10_000.0, resample="1s"), progress=False, **kw)


def test_optuna_search_is_seeded_and_reports_in_the_sweep_table(feed_dir):
    path = write(feed_dir, f'strategy = "{STRATEGY}"\n' + ASSET + PARAMS + """
[grid]
half_spread_bps = { low = 0.05, high = 1.0 }
"asset.queue" = [{ model = "power_prob", n = 2.0 }, { model = "log_prob" }]
""", name="search.toml")
    first = _search(path, trials=4, metric="Return", seed=7, workers=1)
    again = _search(path, trials=4, metric="Return", seed=7, workers=1)
    other = _search(path, trials=4, metric="Return", seed=8, workers=1)
    assert first["run"].to_list() == [0, 1, 2, 3]
    assert first["half_spread_bps"].to_list() == again["half_spread_bps"].to_list()
    assert first["half_spread_bps"].to_list() != other["half_spread_bps"].to_list()
    assert all(0.05 <= v <= 1.0 for v in first["half_spread_bps"])
    assert set(first["asset.queue"]) <= {"model=power_prob, n=2.0", "model=log_prob"}
    # every trial is the run the grid machinery would make for its values
    spec = sweep_module.read_plan(path, book_size=10_000.0, resample="1s").run(
        2, {"half_spread_bps": first["half_spread_bps"][2], "asset.queue": {"model": "log_prob"}
            if first["asset.queue"][2] == "model=log_prob" else {"model": "power_prob", "n": 2.0}})
    alone = run_one(spec)[0]
    assert first.row(2, named=True)["Return"] == alone["Return"]


def test_optuna_search_bad_metric_and_trials_are_named(feed_dir):
    path = write(feed_dir, f'strategy = "{STRATEGY}"\n' + ASSET + PARAMS + """
[grid]
half_spread_bps = { low = 0.05, high = 1.0 }
""", name="search_bad.toml")
    with pytest.raises(ConfigError, match="'Sharpe' is not a stats column; columns: .*SR"):
        _search(path, trials=1, metric="Sharpe", workers=1)
    with pytest.raises(ConfigError, match="--trials: must be at least 1"):
        _search(path, trials=0, workers=1)


@pytest.fixture
def one_run(tmp_path):
    return load_sweep(write(tmp_path, f'strategy = "{STRATEGY}"\n' + ASSET + PARAMS + "[grid]\nhalf_spread_bps = [0.1]\n"))


def test_unreachable_ray_address_fails_fast_with_the_address(one_run):
    import socket
    import time

    pytest.importorskip("ray")
    # 127.0.0.2: Ray would rewrite 127.0.0.1 to this machine's network address
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=f"--ray-address 127.0.0.2:{port}: cannot reach a Ray cluster there"):
        run_sweep(one_run, backend="ray", ray_address=f"127.0.0.2:{port}", progress=False)
    assert time.monotonic() - t0 < 30  # bounded (ray.init alone retries for minutes)
    with pytest.raises(ConfigError, match="--ray-address must be 'auto' or HOST:PORT"):
        run_sweep(one_run, backend="ray", ray_address="nowhere", progress=False)


@pytest.mark.parametrize("answer", [None, b"SSH-2.0-OpenSSH_9.6\r\n", b""])
def test_a_ray_address_where_something_else_listens_fails_fast(one_run, answer, monkeypatch):
    import socket
    import threading
    import time

    pytest.importorskip("ray")
    monkeypatch.setattr(sweep_module, "_CONNECT_TIMEOUT_S", 1.0)
    server = socket.socket()
    server.bind(("127.0.0.2", 0))
    server.listen()
    accepted = []

    def serve():  # silent (None), a banner of another protocol, or closing at once
        conn, _ = server.accept()
        accepted.append(conn)
        if answer is not None:
            conn.sendall(answer)
            if not answer:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    address = f"127.0.0.2:{server.getsockname()[1]}"
    t0 = time.monotonic()
    try:
        with pytest.raises(ConfigError, match=f"--ray-address {address}: something listens there, but not a Ray "
                                              "cluster \\(no gRPC answer within 1 s\\)"):
            run_sweep(one_run, backend="ray", ray_address=address, progress=False)
    finally:
        server.close()
        for conn in accepted:
            conn.close()
    assert time.monotonic() - t0 < 20  # ray.init alone tried for more than five minutes
    assert accepted


def test_a_node_with_another_installation_or_missing_data_is_named():
    from hftbacktest.errors import DataError

    ours = sweep_module._versions()
    sweep_module.check_node("n1 (10.0.0.5)", ours, [], ours)  # the same: nothing to say
    with pytest.raises(ConfigError, match=r"Ray node n1 \(10.0.0.5\): cannot import hftbacktest \(ModuleNotFound"
                                          rf".*install hftbacktest-py=={ours[0]}"):
        sweep_module.check_node("n1 (10.0.0.5)", "ModuleNotFoundError: No module named 'hftbacktest'", [], ours)
    with pytest.raises(ConfigError, match=rf"Ray node n2 \(10.0.0.6\) runs a different installation: "
                                          rf"hftbacktest-py 0.0.9 \(here {ours[0]}\), numba 0.1 \(here {ours[2]}\)"):
        sweep_module.check_node("n2 (10.0.0.6)", ("0.0.9", ours[1], "0.1", *ours[3:]), [], ours)
    with pytest.raises(DataError, match=r"Ray node n3 \(10.0.0.7\): data file /data/a.npz does not exist there "
                                        r"\(and 1 more\)"):
        sweep_module.check_node("n3 (10.0.0.7)", ours, ["/data/a.npz", "/data/b.npz"], ours)


def test_optuna_search_from_the_command_line(feed_dir, capsys):
    path = write(feed_dir, f'strategy = "{STRATEGY}"\n' + ASSET + PARAMS + """
[grid]
half_spread_bps = { low = 0.05, high = 1.0 }
""", name="search_cli.toml")
    assert main(["sweep", str(path), "--search", "optuna"]) == 1
    assert "error: --trials: --search optuna needs --trials N" in capsys.readouterr().err
    out = feed_dir / "search.csv"
    assert main(["sweep", str(path), "--search", "optuna", "--trials", "3", "--metric", "MaxDrawdown",
                 "--direction", "minimize", "--workers", "2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 result rows" in printed and "top 3 by MaxDrawdown (ascending)" in printed
    table = pl.read_csv(out)
    assert table["run"].to_list() == [0, 1, 2] and table["MaxDrawdown"].null_count() == 0


def test_entries_cached_under_the_path_derived_module_name_still_load(tmp_path):
    # earlier versions (and a process where the stem was taken by another file) named the module after its path;
    # numba's cache imports that name when it loads the entry, so it is registered as well as the stem
    (tmp_path / "mm_alias_check.py").write_text(
        "from numba import njit\nSCALE = 3.0\n\n@njit(cache=True)\ndef _quote(x):\n    return x * SCALE\n\n"
        "def strategy(x):\n    return _quote(x)\n")
    one = ("import sys; import hftbacktest.backtest.cli as cli; {patch}f = cli.load_strategy(sys.argv[1]); "
           "q = sys.modules[f.__module__]._quote; print(f.__module__, f(2.0), dict(q.stats.cache_hits))")
    out = []
    for patch in ("cli._module_name = cli._path_name; ", ""):
        target = f"{tmp_path / 'mm_alias_check.py'}:strategy"
        proc = subprocess.run([sys.executable, "-c", one.format(patch=patch), target], capture_output=True,
                              text=True, env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "c")}, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out.append(proc.stdout.strip().split(maxsplit=2))
    assert out[0][0].startswith("_hftbacktest_strategy_") and out[0][1:] == ["6.0", "{}"]
    assert out[1] == ["mm_alias_check", "6.0", "{(float64,): 1}"]  # loaded from the entry cached under the other name


def test_a_strategy_file_is_imported_under_its_stem_unless_another_module_has_that_name(tmp_path):
    # numba's cache stores the module name: a file loaded here and by `import mm` / another loader must agree
    from hftbacktest.backtest.cli import load_strategy

    (tmp_path / "mm_stem_check.py").write_text("def strategy(hbt, recorder):\n    return 1\n")
    (tmp_path / "json.py").write_text("def strategy(hbt, recorder):\n    return 2\n")
    try:
        first = load_strategy(f"{tmp_path / 'mm_stem_check.py'}:strategy")
        assert first.__module__ == "mm_stem_check" and sys.modules["mm_stem_check"].strategy is first
        assert load_strategy(f"{tmp_path / 'mm_stem_check.py'}:strategy") is first  # unchanged: imported once
        shadowing = load_strategy(f"{tmp_path / 'json.py'}:strategy")
        assert shadowing.__module__.startswith("_hftbacktest_strategy_") and sys.modules["json"].__name__ == "json"
    finally:
        sys.modules.pop("mm_stem_check", None)


SLEEPING_STRATEGY = """
import os
import time


def strategy(hbt, recorder, half_spread_bps, marker_dir, **fixed):
    with open(os.path.join(marker_dir, f"{os.getpid()}.tmp"), "w") as f:
        f.write(str(os.getpid()))
    os.replace(f.name, f.name[:-4])
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_the_local_workers_and_exits_130(feed_dir, tmp_path):
    import signal
    import time

    markers = tmp_path / "running"
    markers.mkdir()
    (tmp_path / "sleeper.py").write_text(SLEEPING_STRATEGY)
    path = write(tmp_path, 'strategy = "sleeper.py:strategy"\n' + ASSET.replace("feed.npz", str(feed_dir / "feed.npz"))
                 + PARAMS + f'marker_dir = "{markers}"\n[grid]\nhalf_spread_bps = [0.1, 0.3, 0.5]\n')
    # its own process group, as a terminal runs a command: Ctrl-C sends SIGINT to the whole group (workers too)
    proc = subprocess.Popen([sys.executable, "-c", "from hftbacktest.cli import main; raise SystemExit(main())",
                             "sweep", str(path), "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len([p for p in markers.iterdir() if p.suffix != ".tmp"]) < 2:  # both workers are in a run
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        workers = [int(p.name) for p in markers.iterdir() if p.suffix != ".tmp"]
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # the runs would sleep for two minutes
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and err.strip().endswith("error: sweep cancelled"), err[-2000:]
    assert "Traceback" not in err
    assert not [pid for pid in workers if _alive(pid)]
    assert len(list(markers.iterdir())) == 2  # the third run never started


def test_the_progress_bar_shows_only_on_a_terminal_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(os, "isatty", lambda fd: fd == 1)
    assert not sweep_module._progress(None).disable
    monkeypatch.setenv("CI", "true")
    assert sweep_module._progress(None).disable
    monkeypatch.delenv("CI")
    monkeypatch.setattr(os, "isatty", lambda fd: False)  # piped or redirected
    assert sweep_module._progress(None).disable
    assert not sweep_module._progress(True).disable and sweep_module._progress(False).disable


DEFAULTS_STRATEGY = """
SEEN = []


def strategy(hbt, recorder, half_spread_bps, first="default", second="default"):
    SEEN.append((half_spread_bps, first, second))
"""


def test_a_parameter_given_after_a_defaulted_one_reaches_the_strategy(feed_dir, tmp_path):
    from hftbacktest.backtest.cli import load_strategy

    (tmp_path / "defaults.py").write_text(DEFAULTS_STRATEGY)
    path = write(tmp_path, 'strategy = "defaults.py:strategy"\n' + ASSET.replace("feed.npz", str(feed_dir / "feed.npz"))
                 + '[params]\nsecond = "given"\n[grid]\nhalf_spread_bps = [0.1]\n')
    spec = load_sweep(path)[0]
    run_one(spec)
    # it was silently dropped: only the parameters before the first one left at its default were passed
    assert load_strategy(spec.strategy).__globals__["SEEN"] == [(0.1, "default", "given")]


PROBE_STRATEGY = """
import os

from hftbacktest._demo_strategy import market_making_algo


def _mapping(address):
    with open("/proc/self/maps") as f:  # "start-end perms offset dev inode path"
        for line in f:
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            if start <= address < end:
                return line.strip()
    return ""


def strategy(hbt, recorder, half_spread_bps, skew_per_position, order_value, max_position, probe):
    from hftbacktest.kernels.loop import FEEDS

    rows = FEEDS[hbt._feed_key].chunk(0, 0, 0)
    with open(os.path.join(probe, f"{half_spread_bps}"), "w") as f:
        f.write(os.environ.get("SWEEP_PROBE_TAG", "") + "\\n" + _mapping(rows.__array_interface__["data"][0]))
    market_making_algo(hbt, recorder, half_spread_bps, skew_per_position, order_value, max_position)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_local_workers_share_one_unpacked_copy_of_the_data_and_see_the_environment_of_their_sweep(
        feed_dir, tmp_path, monkeypatch):
    (tmp_path / "probe_mm.py").write_text(PROBE_STRATEGY)
    asset = ASSET.replace('data = ["feed.npz"]', f"data = [{str(feed_dir / 'feed.npz')!r}]")
    path = write(tmp_path, 'strategy = "probe_mm.py:strategy"\n' + asset + PARAMS
                 + "[grid]\nhalf_spread_bps = [0.1, 0.3]\n")
    tables = []
    for tag in ("first", "second"):  # two sweeps of one process: the second's workers see the environment as it is
        probe = tmp_path / tag
        probe.mkdir()
        monkeypatch.setenv("SWEEP_PROBE_TAG", tag)
        runs = load_sweep(path, params={"probe": str(probe)})
        tables.append(run_sweep(runs, workers=2, progress=False).drop("elapsed_s"))
        seen = [p.read_text().split("\n") for p in sorted(probe.iterdir())]
        assert [s[0] for s in seen] == [tag, tag]
        for _, mapping in seen:
            # the engine reads the rows straight from a shared read-only mapping of the .npy copy the sweep
            # unpacked once (not a private inflated copy per worker), and the copy is gone after the sweep
            perms, copy_path = mapping.split()[1], mapping.split()[-1]
            assert perms == "r--s" and copy_path.endswith(".npy") and "hftbacktest-sweep-" in copy_path, mapping
            assert not Path(copy_path).parent.exists()
    assert tables[0].equals(tables[1]) and tables[0]["fee"].n_unique() > 1


def test_workers_are_spawned_afresh_when_what_the_package_import_reads_changed(monkeypatch):
    before = os.environ.get("NUMBA_CACHE_DIR")
    first = sweep_module._mp_context()
    assert first.get_start_method() in ("forkserver", "spawn")
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/elsewhere")  # the fork server's numba read another one at its start
    assert sweep_module._mp_context().get_start_method() == "spawn"
    monkeypatch.setenv("SOMETHING_ELSE", "1")  # read by nothing at import: the fork server stays
    if before is None:
        monkeypatch.delenv("NUMBA_CACHE_DIR")
    else:
        monkeypatch.setenv("NUMBA_CACHE_DIR", before)
    assert sweep_module._mp_context().get_start_method() == first.get_start_method()
