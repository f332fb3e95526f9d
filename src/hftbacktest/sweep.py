"""Parameter sweeps: one strategy over a grid of strategy parameters and asset settings, in parallel processes.

The sweep file is an `hftbacktest backtest` TOML (see `hftbacktest.backtest.cli`) plus two tables:

    strategy = "mm.py:strategy"          # @njit def strategy(hbt, recorder, half_spread, skew): ...
    [[asset]]
    ...                                   # exactly as for `hftbacktest backtest`
    [params]                              # fixed strategy keyword arguments
    order_qty = 0.01
    [grid]                                # every combination is one run
    half_spread = [0.5, 1.0, 2.0]         # a strategy keyword argument
    "asset.queue" = [{ model = "power_prob", n = 2.0 }, { model = "log_prob" }]   # every asset's [[asset]] key
    "asset.0.latency.entry" = [1_000_000, 5_000_000]                              # one asset, a nested key
    depth = ["hashmap", "roi"]            # a top-level key of the backtest TOML

Each run is summarised by `hftbacktest.stats` (one row per asset); all rows form one polars DataFrame.
Workers are separate processes that load the compiled engine and strategy from numba's cache. When the cache is
cold, the first run happens in the main process (compiling once) before the workers start.
Backends: "local" (concurrent.futures processes, default) or "ray" (opt-in, `pip install 'hftbacktest-py[ray]'`).
"""
from __future__ import annotations

import argparse
import copy
import inspect
import itertools
import os
import time
from dataclasses import dataclass
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


def load_sweep(path: str | Path, strategy: str | None = None, *, grid: Mapping[str, list] | None = None,
               params: Mapping[str, Any] | None = None, book_size: float | None = None,
               resample: str | None = "10s") -> list[RunSpec]:
    """Reads a sweep TOML and expands its grid into runs (in grid order: the last key varies fastest).

    `grid` replaces the file's [grid]; `params` updates its [params] (so a plain `hftbacktest backtest` TOML works
    from Python with both given here)."""
    from .backtest.cli import TOP_KEYS, read_toml

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
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise _error(source, f"grid key {key!r} must be a non-empty list of values, got {values!r}")
    target = strategy or raw.get("strategy")
    if not target:
        raise _error(source, "no strategy given (key `strategy` or --strategy)")
    if not strategy and target.split(":")[0].endswith(".py"):
        target = str(path.parent / target)
    from .backtest.cli import load_strategy

    strategy_fn = load_strategy(target)
    signature = inspect.signature(getattr(strategy_fn, "py_func", strategy_fn))
    runs = []
    for index, combo in enumerate(itertools.product(*grid.values())):
        config = copy.deepcopy(raw)
        run_params = dict(params)
        values = dict(zip(grid, combo))
        for key, value in values.items():
            apply_grid_value(config, key, value, run_params, source)
        _check_run(config, path, f"run {index} ({values})")
        try:
            signature.bind(None, None, **run_params)
        except TypeError as exc:
            raise _error(source, f"strategy {target}{signature}: {exc} (its arguments after (hbt, recorder) come "
                                 "from [params] and [grid])") from None
        runs.append(RunSpec(index, config, str(path.parent), target, run_params, values, book_size, resample))
    return runs


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


def _prepare(spec: RunSpec):
    """The strategy and its positional arguments (bot, recorder, parameters) for one run."""
    from .backtest.cli import num_params, build_asset, load_strategy
    from .recorder import Recorder

    strategy = load_strategy(spec.strategy)
    if num_params(strategy) < 2:
        raise _error(spec.strategy, "a swept strategy must take (hbt, recorder, ...) and call recorder.record(hbt)")
    base = Path(spec.base_dir)
    assets = [build_asset(a, base, f"asset[{i}]") for i, a in enumerate(spec.config["asset"])]
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
    return strategy, hbt, recorder, bound.args


def _compiled(spec: RunSpec) -> bool:
    """Whether the run's strategy is already compiled for its argument types (in numba's cache)."""
    from .demo import engine_cached

    strategy, hbt, _, args = _prepare(spec)
    try:
        return not hasattr(strategy, "overloads") or engine_cached(strategy, args) is not False
    finally:
        hbt.close()


def run_one(spec: RunSpec) -> list[dict[str, Any]]:
    """Runs one configuration in this process; one summary row per asset."""
    from .stats import InverseAssetRecord, LinearAssetRecord

    strategy, hbt, recorder, args = _prepare(spec)
    t0 = time.perf_counter()
    try:
        strategy(*args)
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
    return Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), disable=not enabled)


def _local(runs: Sequence[RunSpec], workers: int) -> Iterable[list[dict[str, Any]]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: workers start clean (no inherited numba/LLVM state) and load everything from the cache
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, spec) for spec in runs]
        for future in as_completed(futures):
            yield future.result()


def _ray(runs: Sequence[RunSpec], workers: int) -> Iterable[list[dict[str, Any]]]:
    try:
        import ray
    except ImportError:
        from .errors import ConfigError

        raise ConfigError("the 'ray' sweep backend needs Ray: pip install 'hftbacktest-py[ray]' "
                          "(or use the default local backend)") from None
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(run_one)
    pending = [remote.remote(spec) for spec in runs]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])


def sweep(path: str | Path, strategy: str | None = None, *, grid: Mapping[str, list] | None = None,
          params: Mapping[str, Any] | None = None, workers: int | None = None, backend: str = "local",
          book_size: float | None = None, resample: str | None = "10s", progress: bool | None = None):
    """Runs every grid combination of the sweep TOML `path` (`grid`/`params` as in `load_sweep`); returns a polars
    DataFrame (one row per run and asset, ordered by run) with the grid values, the `hftbacktest.stats` summary,
    final position, fee and run time."""
    runs = load_sweep(path, strategy, grid=grid, params=params, book_size=book_size, resample=resample)
    return run_sweep(runs, workers=workers, backend=backend, progress=progress)


def run_sweep(runs: Sequence[RunSpec], *, workers: int | None = None, backend: str = "local",
              progress: bool | None = None):
    """Runs already expanded `runs` (see `load_sweep`) on a backend; the result table like `sweep`."""
    import polars as pl
    backends = {"local": _local, "ray": _ray}
    if backend not in backends:
        raise _error("sweep", f"backend must be one of {sorted(backends)}, got {backend!r}")
    workers = max(1, min(workers or os.cpu_count() or 1, len(runs)))
    rows: list[dict[str, Any]] = []
    with _progress(progress) as bar:
        task = bar.add_task("runs", total=len(runs))
        pending = list(runs)
        if backend == "local" and workers > 1 and len(runs) > 1 and not _compiled(runs[0]):
            # cold cache: compile once here (the first run), then every worker loads it instead of compiling
            rows.extend(run_one(pending.pop(0)))
            bar.advance(task)
        for result in backends[backend](pending, workers):
            rows.extend(result)
            bar.advance(task)
    rows.sort(key=lambda r: r["run"])
    return pl.DataFrame(rows, infer_schema_length=None)


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
    p.add_argument("--book-size", type=float, default=None, help="capital for return ratios")
    p.add_argument("--resample", default="10s", help="interval for the metrics (polars duration, default 10s)")
    p.add_argument("--sort", default="SR", help="metric to rank the printed runs by (default: SR, descending)")
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
    runs = load_sweep(args.config, args.strategy, book_size=args.book_size, resample=args.resample)
    df = run_sweep(runs, workers=args.workers, backend=args.backend)
    console = Console()
    if args.sort not in df.columns:
        raise _error("--sort", f"{args.sort!r} is not a column; columns: {', '.join(df.columns)}")
    top = df.sort(pl.col(args.sort).fill_nan(None), descending=True, nulls_last=True).head(args.top)
    # the grid and a few headline metrics; the file has every column
    shown = ["run"] + (["asset"] if df["asset"].n_unique() > 1 else []) + list(runs[0].grid_values)
    shown += [c for c in (args.sort, "Return", "MaxDrawdown", "ReturnOverMDD", "DailyNumberOfTrades", "final_position")
              if c in df.columns and c not in shown]
    top = top.select(shown)
    table = Table(title=f"{len(df)} result rows in {time.perf_counter() - t0:.1f} s; top {len(top)} by {args.sort}",
                  title_justify="left")
    for name in top.columns:
        table.add_column(name, justify="left" if top.schema[name] == pl.String else "right")
    for row in top.iter_rows():
        table.add_row(*(format_value(v) for v in row))
    console.print(table)
    if args.output:
        console.print(f"wrote {write_table(df, args.output)}")
    return 0
