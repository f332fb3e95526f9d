"""Parameter sweeps and searches: one strategy over many configurations, in parallel processes or on Ray.

The sweep file is an `hftbacktest backtest` TOML (see `hftbacktest.backtest.cli`) plus two tables:

    strategy = "mm.py:strategy"          # @njit(cache=True) def strategy(hbt, recorder, half_spread, skew): ...
    [[asset]]
    ...                                   # exactly as for `hftbacktest backtest`
    [params]                              # fixed strategy keyword arguments
    order_qty = 0.01
    [grid]                                # the space: every combination is one run (or Optuna samples it)
    half_spread = [0.5, 1.0, 2.0]         # a strategy keyword argument: choices
    skew = { low = 0.0, high = 2.0, step = 0.5 }                                  # a range (step: optional for optuna)
    "asset.queue" = [{ model = "power_prob", n = 2.0 }, { model = "log_prob" }]   # every asset's [[asset]] key
    "asset.0.latency.entry" = [1_000_000, 5_000_000]                              # one asset, a nested key
    depth = ["hashmap", "roi"]            # a top-level key of the backtest TOML

Each run is summarised by `hftbacktest.stats` (one row per asset); all rows form one polars DataFrame.
Workers are separate processes that load the compiled engine and strategy from numba's cache. When the cache is
cold, the first run happens in the main process (compiling once) before the workers start.
Backends: "local" (processes on this machine, default) or "ray" (a local Ray, or a cluster with --ray-address;
`pip install 'hftbacktest-py[ray]'`). --search optuna --trials N --metric SR: an Optuna search of the space
(`pip install 'hftbacktest-py[optuna]'`). docs/sweep.md has the details.
"""
from __future__ import annotations

import argparse
import copy
import inspect
import itertools
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

_SWEEP_KEYS = {"grid", "params"}
_RUN_TOP_KEYS = {"depth", "record_size"}  # top-level backtest keys a grid may vary


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: the full backtest config, the strategy and its keyword arguments."""

    index: int
    config: dict[str, Any]
    base_dir: str
    strategy: str
    params: dict[str, Any]
    grid_values: dict[str, Any]
    book_size: float | None
    resample: str | None


def _error(source: str, message: str):
    from .errors import ConfigError

    return ConfigError(f"{source}: {message}")


def _set_path(table: dict, keys: Sequence[str], value: Any) -> None:
    for key in keys[:-1]:
        inner = table.get(key)
        table[key] = inner = dict(inner) if isinstance(inner, dict) else {}
        table = inner
    table[keys[-1]] = value


def apply_grid_value(config: dict[str, Any], key: str, value: Any, params: dict[str, Any], source: str) -> None:
    """Applies one grid entry to a run's config (asset.*, depth, record_size) or its strategy keyword arguments."""
    from .backtest.cli import ASSET_KEYS

    parts = key.split(".")
    if parts[0] != "asset":
        if key in _RUN_TOP_KEYS:
            config[key] = value
        elif len(parts) == 1 and key.isidentifier():
            params[key] = value
        else:
            raise _error(source, f"grid key {key!r}: expected a strategy argument, 'depth', 'record_size', "
                                 "'asset.KEY' or 'asset.N.KEY'")
        return
    assets = config["asset"]
    if len(parts) >= 3 and parts[1].isdigit():
        n = int(parts[1])
        if n >= len(assets):
            raise _error(source, f"grid key {key!r}: there are only {len(assets)} [[asset]] tables")
        targets, path = [assets[n]], parts[2:]
    else:
        targets, path = assets, parts[1:]
    if not path or path[0] not in ASSET_KEYS:
        raise _error(source, f"grid key {key!r}: {'.'.join(path) or '(nothing)'} is not an [[asset]] key; "
                             f"expected one of {sorted(ASSET_KEYS)}")
    for asset in targets:
        _set_path(asset, path, value)


@dataclass(frozen=True)
class Range:
    """A [grid] value given as a range table `{ low, high, step?, log? }` (ints when low/high/step are ints)."""

    low: float
    high: float
    step: float | None = None
    log: bool = False

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high, self.step or 1))

    def values(self, source: str, key: str) -> list:
        """Every value of the range for a grid search (needs a step)."""
        if self.step is None:
            raise _error(source, f"grid key {key!r}: a range needs `step` for a grid search (or use --search optuna)")
        if self.integer:
            return list(range(self.low, self.high + 1, self.step))
        n = int((self.high - self.low) / self.step + 1e-9) + 1
        return [round(self.low + i * self.step, 12) for i in range(n)]


def _range(key: str, table: dict, source: str) -> Range:
    from math import isfinite

    unknown = set(table) - {"low", "high", "step", "log"}
    if unknown or not {"low", "high"} <= set(table):
        raise _error(source, f"grid key {key!r}: a range is {{ low = .., high = .., step = .. (optional), "
                             f"log = true|false (optional) }}, got {table!r}")
    low, high, step, log = table["low"], table["high"], table.get("step"), table.get("log", False)
    for name, v in (("low", low), ("high", high), ("step", step)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not isfinite(v)):
            raise _error(source, f"grid key {key!r}: {name} must be a finite number, got {v!r}")
    if not isinstance(log, bool):
        raise _error(source, f"grid key {key!r}: log must be true or false, got {log!r}")
    if high < low:
        raise _error(source, f"grid key {key!r}: empty range (high {high} < low {low})")
    if step is not None and step <= 0:
        raise _error(source, f"grid key {key!r}: step must be > 0, got {step}")
    if log and (low <= 0 or step is not None):
        raise _error(source, f"grid key {key!r}: a log range needs low > 0 and no step")
    return Range(low, high, step, log)


@dataclass
class SweepPlan:
    """A sweep file read and checked once: the base config, fixed parameters, strategy and the search space."""

    source: Path
    raw: dict[str, Any]
    params: dict[str, Any]
    strategy: str
    signature: inspect.Signature
    space: dict[str, list | Range]
    book_size: float | None
    resample: str | None

    def run(self, index: int, values: Mapping[str, Any]) -> RunSpec:
        """The run with these grid values (one per space key), checked as `hftbacktest backtest` would."""
        source = str(self.source)
        config = copy.deepcopy(self.raw)
        run_params = dict(self.params)
        values = dict(values)
        for key, value in values.items():
            apply_grid_value(config, key, value, run_params, source)
        _check_run(config, self.source, f"run {index} ({values})")
        try:
            self.signature.bind(None, None, **run_params)
        except TypeError as exc:
            raise _error(source, f"strategy {self.strategy}{self.signature}: {exc} (its arguments after (hbt, "
                                 "recorder) come from [params] and [grid])") from None
        return RunSpec(index, config, str(self.source.parent), self.strategy, run_params, values, self.book_size,
                       self.resample)

    def grid(self) -> list[RunSpec]:
        """Every combination (in grid order: the last key varies fastest)."""
        source = str(self.source)
        axes = [v.values(source, k) if isinstance(v, Range) else v for k, v in self.space.items()]
        return [self.run(i, dict(zip(self.space, combo))) for i, combo in enumerate(itertools.product(*axes))]


def read_plan(path: str | Path, strategy: str | None = None, *, grid: Mapping[str, Any] | None = None,
              params: Mapping[str, Any] | None = None, book_size: float | None = None,
              resample: str | None = "10s") -> SweepPlan:
    """Reads and checks a sweep TOML (`grid` replaces its [grid], `params` updates its [params])."""
    from .backtest.cli import TOP_KEYS, load_strategy, read_toml

    path = Path(path)
    source = str(path)
    raw = read_toml(path)
    file_grid = raw.pop("grid", None)
    grid = dict(grid) if grid is not None else file_grid
    params = {**raw.pop("params", {}), **(params or {})}
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise _error(source, f"unknown key(s) {sorted(unknown)}; expected {sorted(TOP_KEYS | _SWEEP_KEYS)}")
    if not isinstance(grid, dict) or not grid:
        raise _error(source, "needs a [grid] table with at least one key (a list of values to try)")
    if not isinstance(params, dict):
        raise _error(source, "[params] must be a table of strategy keyword arguments")
    space: dict[str, list | Range] = {}
    for key, values in grid.items():
        if isinstance(values, dict):
            space[key] = _range(key, values, source)
        elif isinstance(values, list) and values:
            space[key] = values
        else:
            raise _error(source, f"grid key {key!r} must be a non-empty list of values or a range table "
                                 f"{{ low, high, step }}, got {values!r}")
    target = strategy or raw.get("strategy")
    if not target:
        raise _error(source, "no strategy given (key `strategy` or --strategy)")
    if not strategy and target.split(":")[0].endswith(".py"):
        target = str(path.parent / target)
    if target.split(":")[0].endswith(".py"):  # absolute: workers (and Ray nodes) get the same file name
        module_ref, _, name = target.rpartition(":")
        target = f"{Path(module_ref).resolve()}:{name}"
    strategy_fn = load_strategy(target)
    signature = inspect.signature(getattr(strategy_fn, "py_func", strategy_fn))
    return SweepPlan(path, raw, params, target, signature, space, book_size, resample)


def load_sweep(path: str | Path, strategy: str | None = None, *, grid: Mapping[str, Any] | None = None,
               params: Mapping[str, Any] | None = None, book_size: float | None = None,
               resample: str | None = "10s") -> list[RunSpec]:
    """Reads a sweep TOML and expands its grid into runs (in grid order: the last key varies fastest).

    `grid` replaces the file's [grid]; `params` updates its [params] (so a plain `hftbacktest backtest` TOML works
    from Python with both given here)."""
    return read_plan(path, strategy, grid=grid, params=params, book_size=book_size, resample=resample).grid()


def _check_run(config: dict[str, Any], path: Path, where: str) -> None:
    """The same checks as `hftbacktest backtest`, on one expanded run, before any worker starts."""
    from .backtest.cli import ASSET_KEYS, build_asset

    assets = config.get("asset")
    if not isinstance(assets, list) or not assets:
        raise _error(str(path), "needs at least one [[asset]] table")
    for i, spec in enumerate(assets):
        unknown = set(spec) - ASSET_KEYS
        if unknown:
            raise _error(str(path), f"{where}: asset[{i}]: unknown key(s) {sorted(unknown)}")
        missing = [k for k in ("data", "tick_size", "lot_size") if k not in spec]
        if missing:
            raise _error(str(path), f"{where}: asset[{i}]: missing key(s) {missing}")
        try:
            build_asset(spec, path.parent, f"asset[{i}]")  # lazy: checks the models, reads no data
        except (TypeError, ValueError, AttributeError) as exc:
            raise _error(str(path), f"{where}: asset[{i}]: {exc}") from None
    if config.get("depth", "hashmap") not in ("hashmap", "roi"):
        raise _error(str(path), f"{where}: depth must be 'hashmap' or 'roi', got {config['depth']!r}")


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _files(spec_asset: dict[str, Any], base: Path) -> tuple[list[str], list[str] | None, str | None]:
    """The files one [[asset]] table reads, resolved: data, intp latency tables (None: no intp), initial snapshot."""
    data = [str(base / p) for p in _listed(spec_asset["data"])]
    latency = spec_asset.get("latency")
    intp = None
    if isinstance(latency, dict) and latency.get("model") == "intp":
        intp = [str(base / p) for p in _listed(latency.get("files", []))]
    snapshot = spec_asset.get("initial_snapshot")
    return data, intp, None if snapshot is None else str(base / snapshot)


def run_files(spec: RunSpec) -> list[str]:
    """Every file a run reads."""
    base = Path(spec.base_dir)
    files = []
    for spec_asset in spec.config["asset"]:
        data, intp, snapshot = _files(spec_asset, base)
        files += data + (intp or []) + ([snapshot] if snapshot else [])
    return list(dict.fromkeys(files))


def load_array(path: str):
    """A data / latency / snapshot file's rows, as the backtest reads them (.npy, or the `data` member of .npz)."""
    import numpy as np

    if path.endswith(".npy"):
        return np.load(path)
    with np.load(path) as npz:
        return npz["data"]


def _build_asset(spec_asset: dict[str, Any], base: Path, where: str, arrays: Mapping[str, Any] | None):
    """`build_asset`, with the files found in `arrays` (path -> rows, e.g. Ray's object store) taken from there."""
    from .backtest.cli import build_asset

    return build_asset(spec_asset, base, where, files=arrays)


def _prepare(spec: RunSpec, arrays: Mapping[str, Any] | None = None):
    """The strategy, bot, recorder and the strategy's bound arguments (bot, recorder, parameters) for one run."""
    from .backtest.cli import load_strategy, num_params
    from .recorder import Recorder

    strategy = load_strategy(spec.strategy)
    if num_params(strategy) < 2:
        raise _error(spec.strategy, "a swept strategy must take (hbt, recorder, ...) and call recorder.record(hbt)")
    base = Path(spec.base_dir)
    assets = [_build_asset(a, base, f"asset[{i}]", arrays) for i, a in enumerate(spec.config["asset"])]
    depth = spec.config.get("depth", "hashmap")
    if depth == "roi":
        from .backtest.bot import ROIVectorMarketDepthBacktest as make_bot
    elif depth == "hashmap":
        from .backtest.bot import HashMapMarketDepthBacktest as make_bot
    else:
        raise _error(f"run {spec.index}", f"depth must be 'hashmap' or 'roi', got {depth!r}")
    recorder = Recorder(len(assets), int(spec.config.get("record_size", 1_000_000)), grow=True)
    hbt = make_bot(assets)
    bound = inspect.signature(getattr(strategy, "py_func", strategy)).bind(hbt, recorder.recorder, **spec.params)
    # defaults filled in: every parameter is positional then, also one given after a defaulted one (bound.args
    # alone stops at the first parameter not given and leaves the rest in bound.kwargs)
    bound.apply_defaults()
    return strategy, hbt, recorder, bound


def _compiled(spec: RunSpec) -> bool:
    """Whether the run's strategy is already compiled for its argument types (in numba's cache)."""
    from .demo import engine_cached

    strategy, hbt, _, bound = _prepare(spec)
    try:
        return not hasattr(strategy, "overloads") or engine_cached(strategy, bound.args) is not False
    finally:
        hbt.close()


def run_one(spec: RunSpec, arrays: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Runs one configuration in this process; one summary row per asset. `arrays` (path -> rows) replaces files."""
    from .stats import InverseAssetRecord, LinearAssetRecord

    strategy, hbt, recorder, bound = _prepare(spec, arrays)
    t0 = time.perf_counter()
    try:
        strategy(*bound.args, **bound.kwargs)
    finally:
        hbt.close()
    elapsed = time.perf_counter() - t0

    rows = []
    kwargs = {} if spec.book_size is None else {"book_size": spec.book_size}
    for a, asset_cfg in enumerate(spec.config["asset"]):
        row: dict[str, Any] = {"run": spec.index, "asset": asset_cfg.get("name", str(a))}
        row.update({key: _cell(value) for key, value in spec.grid_values.items()})
        records = recorder.get(a)
        if len(records) >= 2:
            kind = InverseAssetRecord if asset_cfg.get("asset_type") == "inverse" else LinearAssetRecord
            stats = kind(records).contract_size(asset_cfg.get("contract_size", 1.0)).resample(spec.resample)
            summary = stats.stats(**kwargs).splits[-1]
            row.update({k: v for k, v in summary.items() if k not in ("start", "end")})
            last = records[-1]
            row["final_position"] = float(last["position"])
            row["fee"] = float(last["fee"])
        row["elapsed_s"] = elapsed
        rows.append(row)
    return rows


def _cell(value: Any) -> Any:
    """Grid values as table cells: tables (e.g. a queue model) become their compact TOML-like text."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(str(_cell(v)) for v in value) + "]"
    return value


def _progress(enabled: bool | None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if enabled is None:
        enabled = os.isatty(1) and not os.environ.get("CI")
    # 2 refreshes a second: the bar costs the main process next to nothing while the workers run
    return Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), disable=not enabled,
                    refresh_per_second=2)


# --- backends -----------------------------------------------------------------------------------------------------

_WORKER_ARRAYS: dict[str, Any] = {}  # unpacked copy (.npy) -> its rows, memory-mapped, in a local worker process


def _local_task(spec: RunSpec, unpacked: Mapping[str, str]) -> list[dict[str, Any]]:
    """`run_one` in a local worker, each .npz file's rows read from the copy the main process unpacked once
    (`unpacked`: .npz path -> .npy path): memory-mapped, so every worker shares the same pages and none spends its
    CPU inflating the data (a large part of a short run)."""
    import numpy as np

    arrays = {}
    for f in run_files(spec):
        copy_path = unpacked.get(f)
        if copy_path is not None:
            rows = _WORKER_ARRAYS.get(copy_path)
            if rows is None:
                rows = _WORKER_ARRAYS[copy_path] = np.load(copy_path, mmap_mode="r")
            arrays[f] = rows
    return run_one(spec, arrays or None)


def _unpack(files: Iterable[str], folder: str) -> dict[str, str]:
    """Each readable .npz file's rows written once as a .npy file in `folder`; .npz path -> .npy path."""
    import numpy as np

    out = {}
    for i, f in enumerate(sorted(files)):
        if not f.endswith(".npz") or not os.path.exists(f):
            continue
        try:
            rows = load_array(f)
        except Exception:  # unreadable: the worker's reader reports it, naming the file
            continue
        path = os.path.join(folder, f"{i}.npy")
        try:
            np.save(path, rows)
        except OSError:  # e.g. no room in the temporary folder: each worker inflates the rest itself
            break
        out[f] = path
    return out


def _start_worker(environ: dict[str, str]) -> None:
    """A new local worker takes the main process's environment as it is now (a fork server's is that of its start)
    and leaves Ctrl-C to the main process, which stops the workers (a terminal sends SIGINT to the whole process
    group: a worker interrupted mid-task would print its traceback and keep the pool waiting)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environ)


def _warm_worker() -> None:
    """Imports the package in a new worker (imports only: compiling is left to the first run, see `_Runner`)."""
    import hftbacktest.backtest.bot  # noqa: F401


_FORKSERVER_STATE: tuple | None = None  # what the fork server's imports read, as when it started


def _import_state() -> tuple:
    """What importing the package reads: sys.path and the NUMBA_* / HFTBACKTEST_* / PYTHON* variables."""
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(("NUMBA_", "HFTBACKTEST_", "PYTHON")))
    return tuple(sys.path), tuple(env)


def _mp_context():
    """A fork server that imported the package once, forking every worker of every sweep of this process (a worker
    starts in milliseconds and does not import the package again); spawned workers instead where there are no fork
    servers, or when what the imports read changed since the server started (e.g. another NUMBA_CACHE_DIR)."""
    import multiprocessing

    global _FORKSERVER_STATE
    state = _import_state()
    if "forkserver" in multiprocessing.get_all_start_methods() and _FORKSERVER_STATE in (None, state):
        ctx = multiprocessing.get_context("forkserver")
        if _FORKSERVER_STATE is None:
            ctx.set_forkserver_preload(["hftbacktest.backtest.bot"])
            _FORKSERVER_STATE = state
        return ctx
    return multiprocessing.get_context("spawn")


class _Local:
    """concurrent.futures worker processes, kept for every batch of a sweep."""

    def __init__(self, runs: Sequence[RunSpec], workers: int):
        import tempfile
        from concurrent.futures import ProcessPoolExecutor

        # workers start clean (no numba/LLVM state of this process) and load everything from the cache
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(), initializer=_start_worker,
                                        initargs=(dict(os.environ),))
        # one submit per worker starts them all now: they start while this process unpacks the data and checks
        # the cache
        self.warming = [self.pool.submit(_warm_worker) for _ in range(workers)]
        self.folder = tempfile.mkdtemp(prefix="hftbacktest-sweep-")
        try:
            self.unpacked = _unpack({f for spec in runs for f in run_files(spec)}, self.folder)
        except BaseException:
            self.close(abort=True)
            raise

    def run(self, runs: Sequence[RunSpec]) -> Iterable[list[dict[str, Any]]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        futures = [self.pool.submit(_local_task, spec, self.unpacked) for spec in runs]
        pending = set(futures)
        try:
            while pending:
                # a bounded wait keeps Ctrl-C responsive: when another thread (e.g. one of polars') takes the
                # SIGINT, an unbounded lock wait in this thread is never interrupted
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def local_spec(self, spec: RunSpec) -> RunSpec:
        return spec

    def close(self, abort: bool = False) -> None:
        import shutil

        try:
            if abort:  # Ctrl-C or an error: running tasks are not waited for (no public API for this before 3.14)
                for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                    process.terminate()
            self.pool.shutdown(wait=True, cancel_futures=True)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _backend(name: str, runs: Sequence[RunSpec], workers: int, ray_address: str | None, ray_data: str):
    if name == "local":
        return _Local(runs, workers)
    if name == "ray":
        return _Ray(runs, workers, ray_address, ray_data)
    raise _error("sweep", f"backend must be one of ['local', 'ray'], got {name!r}")


class _Runner:
    """Runs batches of runs on one backend with one progress bar; compiles in this process first on a cold cache."""

    def __init__(self, backend, workers: int, total: int, progress: bool | None, local_first: bool):
        self.backend, self.workers, self.local_first = backend, workers, local_first
        self.bar = _progress(progress)
        self.task = self.bar.add_task("runs", total=total)

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            self.backend.close(abort=exc[0] is not None)
        finally:
            self.bar.__exit__(*exc)

    def run(self, runs: Sequence[RunSpec]) -> Iterable[list[dict[str, Any]]]:
        pending = list(runs)
        if self.local_first and self.workers > 1 and len(pending) > 1:
            first = self.backend.local_spec(pending[0])
            if not _compiled(first):
                # cold cache: compile once here (the first run), then every worker loads it instead of compiling
                pending.pop(0)
                yield self._advance(run_one(first))
        self.local_first = False
        for rows in self.backend.run(pending):
            yield self._advance(rows)

    def _advance(self, rows):
        self.bar.advance(self.task)
        return rows


def _table(rows: list[dict[str, Any]]):
    import polars as pl

    rows.sort(key=lambda r: r["run"])
    return pl.DataFrame(rows, infer_schema_length=None)


def sweep(path: str | Path, strategy: str | None = None, *, grid: Mapping[str, Any] | None = None,
          params: Mapping[str, Any] | None = None, workers: int | None = None, backend: str = "local",
          book_size: float | None = None, resample: str | None = "10s", progress: bool | None = None,
          ray_address: str | None = None, ray_data: str = "auto"):
    """Runs every grid combination of the sweep TOML `path` (`grid`/`params` as in `load_sweep`); returns a polars
    DataFrame (one row per run and asset, ordered by run) with the grid values, the `hftbacktest.stats` summary,
    final position, fee and run time."""
    runs = load_sweep(path, strategy, grid=grid, params=params, book_size=book_size, resample=resample)
    return run_sweep(runs, workers=workers, backend=backend, progress=progress, ray_address=ray_address,
                     ray_data=ray_data)


def run_sweep(runs: Sequence[RunSpec], *, workers: int | None = None, backend: str = "local",
              progress: bool | None = None, ray_address: str | None = None, ray_data: str = "auto"):
    """Runs already expanded `runs` (see `load_sweep`) on a backend; the result table like `sweep`.

    Ray: `ray_address` "auto" or HOST:PORT joins a running cluster (None starts a local one with `workers` CPUs);
    `ray_data` "shared" (every node reads the same paths), "object-store" (files shipped once through Ray's object
    store) or "auto" (the object store when the files fit in a quarter of it)."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(runs)))
    rows: list[dict[str, Any]] = []
    with _Runner(_backend(backend, runs, workers, ray_address, ray_data), workers, len(runs), progress,
                 local_first=backend == "local" or ray_address is None) as runner:
        for result in runner.run(runs):
            rows.extend(result)
    return _table(rows)


_RAY_TASK_RETRIES = 3  # a task whose worker process (or node) died runs again elsewhere
_CHECK_TIMEOUT_S = 60.0
_CONNECT_TIMEOUT_S = 5.0

# The node check runs where hftbacktest may be missing, so it is shipped by value (cloudpickle pickles a function of a
# module that cannot be imported by value): no import of this package happens before it reports.
_NODE_CHECK = '''
def check(paths, expected):
    import importlib.metadata, os, socket, sys
    try:
        import numba, numpy
        from hftbacktest import _cache_salt
        found = (importlib.metadata.version("hftbacktest-py"), _cache_salt.SALT, numba.__version__, numpy.__version__,
                 ".".join(map(str, sys.version_info[:2])))
    except Exception as exc:
        found = f"{type(exc).__name__}: {exc}"
    if found == expected:  # this worker imports the engine now, while the driver still loads the data
        try:
            import hftbacktest.backtest.bot
        except Exception:  # the first task there reports it
            pass
    return socket.gethostname(), found, [p for p in paths if not os.path.exists(p)]
'''
_VERSION_FIELDS = ("hftbacktest-py", "source digest", "numba", "numpy", "Python")


def _versions() -> tuple[str, ...]:
    """What must match on every node for identical results: package, its compiled sources, numba, numpy, Python."""
    import importlib.metadata
    import sys

    import numba
    import numpy

    from . import _cache_salt

    return (importlib.metadata.version("hftbacktest-py"), _cache_salt.SALT, numba.__version__, numpy.__version__,
            ".".join(map(str, sys.version_info[:2])))


def check_node(node: str, found: tuple | str, missing: Sequence[str], expected: tuple) -> None:
    """Raises the error for a Ray node whose package or data does not match this machine's (None when it does)."""
    from .errors import ConfigError, DataError

    if isinstance(found, str):
        raise ConfigError(f"Ray node {node}: cannot import hftbacktest ({found}); install hftbacktest-py=={expected[0]} "
                          "(with the same numba and numpy) there")
    diff = [f"{name} {theirs} (here {ours})" for name, theirs, ours in zip(_VERSION_FIELDS, found, expected)
            if theirs != ours]
    if diff:
        raise ConfigError(f"Ray node {node} runs a different installation: {', '.join(diff)}; results would not "
                          "match: install the same versions on every node")
    if missing:
        raise DataError(f"Ray node {node}: data file {missing[0]} does not exist there"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                        + "; --ray-data shared needs every file at the same path on every node (or use --ray-data "
                          "object-store)")


def _materialise(name: str, source: str, function: str) -> str:
    """The shipped strategy file written once per node under a name given by its content; the `FILE:FUNCTION` target.

    A stable path keeps numba's cache of the strategy valid for every task (and every later sweep) on that node. The
    digest is in the file name too: a reused Ray worker that imported one version of `mm.py` as module `mm` imports
    another version under another module name, the same in every worker (numba's cache records the module name)."""
    import hashlib
    import tempfile

    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "hftbacktest-sweep" / digest
    path = folder / f"{Path(name).stem}_{digest}.py"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, source.encode())
    return f"{path}:{function}"


def _write_atomic(path: Path, data: bytes) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _node_name() -> str:
    import socket

    import ray

    return f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"


def _ray_task(spec: RunSpec, job: dict) -> list[dict[str, Any]]:
    """One run on a Ray worker: the installation checked, the strategy written from its shipped source, the data
    from the object store (zero-copy views of the node's shared memory) or from the shared path."""
    import ray

    from .errors import ConfigError

    node = _node_name()
    check_node(node, _versions(), [], job["versions"])
    if job["source"] is not None:
        spec = replace(spec, strategy=_materialise(*job["source"]))
    arrays = None if job["arrays"] is None else ray.get(job["arrays"])
    missing = [f for f in run_files(spec) if f not in (arrays or ()) and not os.path.exists(f)]
    check_node(node, job["versions"], missing, job["versions"])
    try:
        return run_one(spec, arrays)
    except ImportError as exc:
        raise ConfigError(f"Ray node {node}: strategy {spec.strategy}: {exc} (a MODULE:FUNCTION strategy must be "
                          "installed on every node; a FILE.py strategy is shipped but must not import files next "
                          "to it)") from None


# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS is one) answers with its SETTINGS
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _ray_address(address: str) -> str:
    """HOST:PORT of the cluster to join, checked within a few seconds to be reachable and to speak gRPC as Ray's GCS
    does (ray.init alone retries for many minutes, also against a port where something else listens)."""
    import socket

    from .errors import ConfigError

    from ray._private.services import canonicalize_bootstrap_address  # how ray.init resolves the address

    try:
        resolved = canonicalize_bootstrap_address(address)
    except Exception as exc:
        if address == "auto":
            raise ConfigError(f"--ray-address auto: {exc}") from None
        raise ConfigError(f"--ray-address must be 'auto' or HOST:PORT, got {address!r} ({exc})") from None
    if not resolved:
        raise ConfigError("--ray-address auto: no Ray cluster found (RAY_ADDRESS is unset and no `ray start` "
                          "ran on this machine); start one with `ray start --head` or give HOST:PORT")
    host, sep, port = resolved.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray-address must be 'auto' or HOST:PORT, got {address!r}")
    name = address if address == resolved else f"{address} ({resolved})"
    try:
        conn = socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_S)
    except OSError as exc:
        raise ConfigError(f"--ray-address {name}: cannot reach a Ray cluster there within "
                          f"{_CONNECT_TIMEOUT_S:g} s ({exc.strerror or exc})") from None
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("0", "false", ""):  # with TLS the server waits for a hello
            try:
                conn.sendall(_HTTP2_HELLO)
                answer = conn.recv(9)
            except OSError:
                answer = b""
            if len(answer) < 4 or answer[3] != 4:  # a frame header: 3 bytes length, 1 byte type (4: SETTINGS)
                raise ConfigError(f"--ray-address {name}: something listens there, but not a Ray cluster (no gRPC "
                                  f"answer within {_CONNECT_TIMEOUT_S:g} s); give the head's GCS port (6379 unless "
                                  "`ray start --head --port` chose another)")
    return resolved


def _load_arrays(files: Sequence[str]) -> dict[str, Any]:
    from .errors import DataError

    arrays = {}
    for f in files:
        try:
            arrays[f] = load_array(f)
        except Exception as exc:
            raise DataError(f"{f}: cannot load ({exc})") from None
    return arrays


class _Ray:
    """Ray tasks on a running cluster (`address`) or a local one started here; see `run_sweep`."""

    def __init__(self, runs: Sequence[RunSpec], workers: int, address: str | None, data: str):
        from .errors import ConfigError, DataError

        if data not in ("auto", "shared", "object-store"):
            raise ConfigError(f"--ray-data must be 'auto', 'shared' or 'object-store', got {data!r}")
        if address is None:
            # a cluster started here talks over loopback only and reports nothing (read when Ray is imported)
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError:
            raise ConfigError("the 'ray' sweep backend needs Ray: pip install 'hftbacktest-py[ray]' "
                              "(or use the default local backend)") from None
        self.ray, self.started, self.pending = ray, False, []
        files = sorted({f for spec in runs for f in run_files(spec)})
        loading = None
        if data != "shared":
            missing = [f for f in files if not os.path.exists(f)]
            if missing and data == "object-store":
                raise DataError(f"--ray-data object-store: data file {missing[0]} does not exist here")
            if not missing:  # read while Ray starts or connects (inflating releases the GIL)
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(1) as reader:
                    loading = reader.submit(_load_arrays, files)
                    self._init(address, workers)
        if loading is None:
            self._init(address, workers)
        try:
            self.versions = _versions()
            self.source = None
            target = runs[0].strategy
            module_ref, _, function = target.rpartition(":")
            if module_ref.endswith(".py"):
                self.source = (Path(module_ref).name, Path(module_ref).read_text(), function)
            checks = self._start_check(files)  # runs on the nodes while this process puts the data
            arrays = None if loading is None else loading.result()
            if arrays is not None and data == "auto":
                room = ray.cluster_resources().get("object_store_memory", 0) / 4
                if sum(a.nbytes for a in arrays.values()) > room:
                    arrays = None  # too big to ship: every node reads the shared path
            self.mode = "shared" if arrays is None else "object-store"
            shipped = None if arrays is None else ray.put(arrays)
            self._finish_check(checks, shared=arrays is None)
            self.job = ray.put({"versions": self.versions, "source": self.source, "arrays": shipped})
            self.task = ray.remote(num_cpus=1, max_retries=_RAY_TASK_RETRIES, retry_exceptions=False)(_ray_task)
        except BaseException:
            self.close()
            raise

    def _init(self, address: str | None, workers: int) -> None:
        """Starts a local Ray (`address` None) or connects to the cluster, unless this process already did."""
        import logging

        ray = self.ray
        if ray.is_initialized():
            return
        try:
            if address is None:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(address=_ray_address(address), log_to_driver=False, logging_level=logging.WARNING)
        except BaseException:  # e.g. Ctrl-C while Ray starts: nothing half-started stays behind
            ray.shutdown()
            raise
        self.started = True

    def _start_check(self, files: list[str]) -> dict:
        """Starts the installation check on every node that can run tasks (it also lists which `files` are missing
        there); `_finish_check` reads the answers."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .errors import ConfigError

        ray = self.ray
        scope = {"__name__": "_hftbacktest_sweep_node_check"}
        exec(compile(_NODE_CHECK, "<hftbacktest sweep node check>", "exec"), scope)
        check = ray.remote(num_cpus=0, max_retries=0)(scope["check"])
        nodes = {}
        for n in ray.nodes():
            if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0:
                strategy = NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                nodes[check.options(scheduling_strategy=strategy).remote(files, self.versions)] = n["NodeManagerAddress"]
        if not nodes:
            raise ConfigError("the Ray cluster has no node with CPUs to run sweep tasks")
        return nodes

    def _finish_check(self, nodes: dict, shared: bool) -> None:
        """Every node has the same installation (and, `shared` data, every file), or one error names each that has
        not."""
        from .errors import ConfigError, DataError

        ray = self.ray
        ready, late = ray.wait(list(nodes), num_returns=len(nodes), timeout=_CHECK_TIMEOUT_S)
        if late:
            raise ConfigError(f"Ray node(s) {', '.join(nodes[r] for r in late)}: no answer to the installation "
                              f"check within {_CHECK_TIMEOUT_S:g} s (can a Python worker start there?)")
        problems = []  # every node's, so one attempt shows all that must be fixed
        for ref in sorted(ready, key=lambda r: nodes[r]):
            hostname, found, missing = ray.get(ref)
            try:
                check_node(f"{hostname} ({nodes[ref]})", found, missing if shared else [], self.versions)
            except (ConfigError, DataError) as exc:
                problems.append(exc)
        if problems:
            raise type(problems[0])("; ".join(str(exc) for exc in problems))

    def local_spec(self, spec: RunSpec) -> RunSpec:
        """The run as this process runs it before the workers: the strategy file at its shipped path (its cache)."""
        return spec if self.source is None else replace(spec, strategy=_materialise(*self.source))

    def run(self, runs: Sequence[RunSpec]) -> Iterable[list[dict[str, Any]]]:
        from .errors import HftBacktestError

        ray = self.ray
        self.pending = [self.task.remote(spec, self.job) for spec in runs]
        while self.pending:  # what is left after an error or Ctrl-C is stopped by `close`
            # a bounded wait keeps Ctrl-C responsive
            done, self.pending = ray.wait(self.pending, num_returns=1, timeout=1.0)
            for ref in done:
                try:
                    rows = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    if isinstance(exc.cause, HftBacktestError):
                        raise exc.cause from None
                    raise
                yield rows

    def close(self, abort: bool = False) -> None:
        """Stops the tasks still pending or running (after an error or Ctrl-C) and ends this process's Ray session."""
        pending, self.pending = self.pending, []
        if self.started:
            # ending the job stops its tasks: the cluster kills the job's workers on every node. Cancelling task by
            # task instead races with results on their way (Ray 2.x then aborts this process: "Tried to complete
            # task that was not pending"), and a Ctrl-C lands there whenever a task is about to finish.
            self.ray.shutdown()
            self.started = False
            return
        for ref in pending:  # a session of the caller's: only the tasks of this sweep end (with the race above)
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished or its worker is gone
                pass


def _distribution(key: str, value: list | Range):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(value, list):  # choices by position: a choice may be a table (e.g. a queue model)
        return CategoricalDistribution(list(range(len(value))))
    if value.integer:
        return IntDistribution(value.low, value.high, log=value.log, step=value.step or 1)
    return FloatDistribution(float(value.low), float(value.high), log=value.log,
                             step=None if value.step is None else float(value.step))


def _objective(rows: list[dict[str, Any]], metric: str) -> float | None:
    """The trial's value: the metric's mean over the run's assets; None when no asset has a finite value."""
    import math

    values = [row[metric] for row in rows if isinstance(row.get(metric), (int, float))]
    values = [float(v) for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else None


def search(plan: SweepPlan, *, trials: int, metric: str = "SR", direction: str = "maximize", seed: int = 0,
           workers: int | None = None, backend: str = "local", progress: bool | None = None,
           ray_address: str | None = None, ray_data: str = "auto"):
    """An Optuna search (TPE sampler, seeded) over the plan's space: a list is a set of choices, a range table an int
    or float range. Trials run `workers` at a time and are reported in trial order, so the same seed and worker
    count give the same trials. The result table is the one of `run_sweep` (`run` = trial number); a trial whose
    metric is not a finite number counts as failed."""
    from .errors import ConfigError

    try:
        import optuna
    except ImportError:
        raise ConfigError("--search optuna needs Optuna: pip install 'hftbacktest-py[optuna]'") from None
    from optuna.trial import TrialState

    if trials < 1:
        raise _error("--trials", f"must be at least 1, got {trials}")
    if direction not in ("maximize", "minimize"):
        raise _error("--direction", f"must be 'maximize' or 'minimize', got {direction!r}")
    distributions = {key: _distribution(key, value) for key, value in plan.space.items()}

    def values(trial) -> dict[str, Any]:
        return {key: space[trial.params[key]] if isinstance(space, list) else trial.params[key]
                for key, space in plan.space.items()}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    workers = max(1, min(workers or os.cpu_count() or 1, trials))
    first = plan.run(0, {k: v[0] if isinstance(v, list) else v.low for k, v in plan.space.items()})
    rows: list[dict[str, Any]] = []
    with _Runner(_backend(backend, [first], workers, ray_address, ray_data), workers, trials, progress,
                 local_first=backend == "local" or ray_address is None) as runner:
        while len(study.trials) < trials:
            batch = [study.ask(distributions) for _ in range(min(workers, trials - len(study.trials)))]
            results = {}
            for result in runner.run([plan.run(t.number, values(t)) for t in batch]):
                if metric not in result[0] and "SR" in result[0]:
                    stats = [c for c in result[0] if c not in plan.space and c not in ("run", "asset")]
                    raise _error("--metric", f"{metric!r} is not a stats column; columns: {', '.join(stats)}")
                results[result[0]["run"]] = result
            for trial in batch:  # in trial order: the sampler's history does not depend on which run ended first
                value = _objective(results[trial.number], metric)
                if value is None:
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, value)
                rows.extend(results[trial.number])
    return _table(rows)

# --- CLI ----------------------------------------------------------------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a strategy over a grid of parameters in parallel processes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="sweep TOML: an `hftbacktest backtest` config plus [grid] (and [params])")
    p.add_argument("--strategy", help="FILE.py:FUNCTION or MODULE:FUNCTION (overrides `strategy` in the TOML)")
    p.add_argument("-o", "--output", help="write the table to .csv or .parquet")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPU count)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local processes (default) or Ray (needs the 'ray' extra)")
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="join a running Ray cluster (implies --backend ray; default: start a local one)")
    p.add_argument("--ray-data", choices=("auto", "shared", "object-store"), default="auto",
                   help="Ray: data files read from the same path on every node (shared), shipped once through the "
                        "object store, or auto (the object store when they fit in a quarter of it)")
    p.add_argument("--search", choices=("grid", "optuna"), default="grid",
                   help="every [grid] combination (default) or an Optuna search over it (needs the 'optuna' extra)")
    p.add_argument("--trials", type=int, default=None, help="optuna: number of runs")
    p.add_argument("--metric", default="SR", help="optuna: the stats column to optimise (default SR)")
    p.add_argument("--direction", choices=("maximize", "minimize"), default="maximize",
                   help="optuna: maximize (default) or minimize the metric")
    p.add_argument("--seed", type=int, default=0, help="optuna: sampler seed (default 0)")
    p.add_argument("--book-size", type=float, default=None, help="capital for return ratios")
    p.add_argument("--resample", default="10s", help="interval for the metrics (polars duration, default 10s)")
    p.add_argument("--sort", default=None, help="metric to rank the printed runs by (default: --metric, descending)")
    p.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    p.set_defaults(func=_run)


def write_table(df, output: str | Path) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix not in (".parquet", ".csv"):
        raise _error(str(output), "output must end with .csv or .parquet")
    from ._atomic import atomic_writer

    with atomic_writer(output, "wb") as f:
        if output.suffix == ".parquet":
            df.write_parquet(f)
        else:
            df.write_csv(f)
    return output


def _run(args) -> int:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    from .stats.record import format_value

    if args.output and Path(args.output).suffix not in (".csv", ".parquet"):
        raise _error(args.output, "output must end with .csv or .parquet")
    t0 = time.perf_counter()
    backend = "ray" if args.ray_address else args.backend
    plan = read_plan(args.config, args.strategy, book_size=args.book_size, resample=args.resample)
    try:
        if args.search == "optuna":
            if args.trials is None:
                raise _error("--trials", "--search optuna needs --trials N")
            df = search(plan, trials=args.trials, metric=args.metric, direction=args.direction, seed=args.seed,
                        workers=args.workers, backend=backend, ray_address=args.ray_address, ray_data=args.ray_data)
        else:
            df = run_sweep(plan.grid(), workers=args.workers, backend=backend, ray_address=args.ray_address,
                           ray_data=args.ray_data)
    except KeyboardInterrupt:
        print("error: sweep cancelled", file=sys.stderr)
        return 130
    args.sort = args.sort or args.metric
    console = Console()
    if args.sort not in df.columns:
        raise _error("--sort", f"{args.sort!r} is not a column; columns: {', '.join(df.columns)}")
    descending = not (args.search == "optuna" and args.direction == "minimize" and args.sort == args.metric)
    top = df.sort(pl.col(args.sort).fill_nan(None), descending=descending, nulls_last=True).head(args.top)
    # the grid and a few headline metrics; the file has every column
    shown = ["run"] + (["asset"] if df["asset"].n_unique() > 1 else []) + list(plan.space)
    shown += [c for c in (args.sort, "Return", "MaxDrawdown", "ReturnOverMDD", "DailyNumberOfTrades", "final_position")
              if c in df.columns and c not in shown]
    top = top.select(list(dict.fromkeys(shown)))
    table = Table(title=f"{len(df)} result rows in {time.perf_counter() - t0:.1f} s; top {len(top)} by {args.sort}"
                        + ("" if descending else " (ascending)"),
                  title_justify="left")
    for name in top.columns:
        table.add_column(name, justify="left" if top.schema[name] == pl.String else "right")
    for row in top.iter_rows():
        table.add_row(*(format_value(v) for v in row))
    console.print(table)
    if args.output:
        console.print(f"wrote {write_table(df, args.output)}")
    return 0
