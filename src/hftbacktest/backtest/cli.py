"""`hftbacktest backtest`: run a strategy module against assets described in a TOML file.

The TOML maps one-to-one onto the `BacktestAsset` builder, so there is one way to configure each thing:

    strategy = "mm.py:strategy"       # FILE.py:FUNCTION (relative to this file) or MODULE:FUNCTION
    depth = "hashmap"                 # or "roi" (then roi_lb / roi_ub are required in every asset)
    record_size = 1_000_000           # rows; the strategy gets a recorder if it takes a second argument

    [[asset]]
    name = "BTCUSDT"                  # shown in the report
    data = ["btcusdt_20240808.npz"]   # paths relative to this file
    tick_size = 0.1
    lot_size = 0.001
    asset_type = "linear"             # or "inverse"
    contract_size = 1.0
    latency = { model = "constant", entry = 1_000_000, response = 1_000_000 }
    # latency = { model = "intp", files = ["latency.npz"], offset = 0 }
    queue = { model = "power_prob", n = 2.0 }   # risk_adverse | power_prob | power_prob2 | power_prob3 | log_prob | log_prob2
    exchange = "no_partial_fill"      # or "partial_fill"
    fee = { model = "trading_value", maker = -0.00005, taker = 0.0007 }   # trading_qty | flat_per_trade
    # optional: roi_lb, roi_ub, initial_snapshot, last_trades_capacity, latency_offset, reference_compatible
    # funding = true                  # settle perpetual funding (data converted with option 'm'); "lenient":
                                      # data without funding rows warns instead of failing (docs/perp.md)

Only data, tick_size and lot_size are required; a missing latency / queue / fee table means the builder's
default (zero latency, log_prob2, no fees), but a table that is given needs all of its model's keys. Every key is
checked at every level: a typo, a missing or mistyped value is an error naming the file and the full key.
"""
from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

TOP_KEYS = {"strategy", "depth", "record_size", "asset"}
DEPTHS = ("hashmap", "roi")
# [[asset]] key -> (kind, accepted values or None); the model tables are checked against _MODELS
_ASSET_SCALARS: dict[str, tuple[str, tuple | None]] = {
    "name": ("str", None),
    "data": ("paths", None),
    "tick_size": ("positive", None),
    "lot_size": ("positive", None),
    "asset_type": ("str", ("linear", "inverse")),
    "contract_size": ("positive", None),
    "exchange": ("str", ("no_partial_fill", "partial_fill")),
    "roi_lb": ("number", None),
    "roi_ub": ("number", None),
    "initial_snapshot": ("str", None),
    "last_trades_capacity": ("count", None),
    "latency_offset": ("int", None),
    "reference_compatible": ("bool", None),
    "funding": ("funding", None),
}
# model table -> model name -> (builder method, required keys in argument order, optional keys)
_MODELS: dict[str, dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]] = {
    "latency": {
        "constant": ("constant_order_latency", ("entry", "response"), ()),
        "intp": ("intp_order_latency", ("files",), ("offset",)),
    },
    "queue": {
        "risk_adverse": ("risk_adverse_queue_model", (), ()),
        "power_prob": ("power_prob_queue_model", ("n",), ()),
        "power_prob2": ("power_prob_queue_model2", ("n",), ()),
        "power_prob3": ("power_prob_queue_model3", ("n",), ()),
        "log_prob": ("log_prob_queue_model", (), ()),
        "log_prob2": ("log_prob_queue_model2", (), ()),
    },
    "fee": {
        "trading_value": ("trading_value_fee_model", ("maker", "taker"), ()),
        "trading_qty": ("trading_qty_fee_model", ("maker", "taker"), ()),
        "flat_per_trade": ("flat_per_trade_fee_model", ("maker", "taker"), ()),
    },
}
# defaults of an [[asset]] without that table: the builder's defaults
_MODEL_DEFAULTS = {
    "latency": {"model": "constant", "entry": 0, "response": 0},
    "queue": {"model": "log_prob2"},
    "fee": {"model": "trading_value", "maker": 0.0, "taker": 0.0},
}
# the value kinds of model-table keys
_MODEL_KEY_KINDS = {"entry": "count", "response": "count", "files": "paths", "offset": "int", "n": "positive",
                    "maker": "number", "taker": "number"}
ASSET_KEYS = set(_ASSET_SCALARS) | set(_MODELS)
_REQUIRED_ASSET_KEYS = ("data", "tick_size", "lot_size")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "backtest",
        help="run a strategy (@njit function) on assets configured in a TOML file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="TOML run configuration (see above)")
    parser.add_argument("--strategy", help="FILE.py:FUNCTION or MODULE:FUNCTION (overrides `strategy` in the TOML)")
    parser.add_argument("--record", metavar="OUT.npz", help="save the recorder's rows (strategy must take a recorder)")
    parser.add_argument("--report", metavar="OUT.html", help="also write the HTML report")
    parser.add_argument("--book-size", type=float, default=None, help="capital for return ratios in the summary")
    parser.set_defaults(func=_run)


def _fail(source, key: str | None, message: str):
    """The ConfigError of one bad setting: `<file>: <key>: <message>` (either part left out when unknown)."""
    from ..errors import ConfigError

    return ConfigError(": ".join(str(part) for part in (source, key, message) if part is not None))


def _accepted(values) -> str:
    return f"(accepted: {', '.join(sorted(values))})"


def _unknown_key(key: str, accepted, context: str = "") -> str:
    import difflib

    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(accepted), n=1)
    hint = f", did you mean {close[0]!r}?" if close else ""
    return f"unknown key{context}{hint} {_accepted(accepted)}"


_KIND_TEXT = {"str": "a string", "paths": "a path or a list of paths", "positive": "a number > 0",
              "number": "a finite number", "count": "an integer >= 0", "int": "an integer", "bool": "true or false",
              "funding": 'true, false or "lenient"'}


def _is_number(value) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_value(value, kind: str, source, key: str) -> None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    ok = {
        "str": isinstance(value, str),
        "paths": isinstance(value, str) or (isinstance(value, list) and bool(value)
                                            and all(isinstance(v, str) for v in value)),
        "number": _is_number(value),
        "positive": _is_number(value) and value > 0,
        "int": is_int,
        "count": is_int and value >= 0,
        "bool": isinstance(value, bool),
        "funding": isinstance(value, bool) or value == "lenient",
    }[kind]
    if not ok:
        raise _fail(source, key, f"expected {_KIND_TEXT[kind]}, got {value!r}")


def _check_model(value, table: str, key: str, source) -> None:
    models = _MODELS[table]
    if not isinstance(value, dict):
        raise _fail(source, key, f"expected a table like {{ model = \"{next(iter(models))}\", ... }}, got {value!r}")
    if "model" not in value:
        raise _fail(source, f"{key}.model", f"missing {_accepted(models)}")
    model = value["model"]
    if model not in models:
        raise _fail(source, f"{key}.model", f"unknown {table} model {model!r} {_accepted(models)}")
    _, required, optional = models[model]
    allowed = {"model", *required, *optional}
    for k in value:
        if k not in allowed:
            raise _fail(source, f"{key}.{k}", _unknown_key(k, allowed, f" for model {model!r}"))
    for k in required:
        if k not in value:
            raise _fail(source, f"{key}.{k}", f"missing (required by model {model!r})")
    for k in (*required, *optional):
        if k in value:
            _check_value(value[k], _MODEL_KEY_KINDS[k], source, f"{key}.{k}")


def check_asset(spec, where: str, source=None, depth: str | None = None) -> None:
    """Checks one [[asset]] table at every level: unknown and missing keys, value types, the model tables, and the
    ROI bounds when `depth` is "roi". Errors are ConfigErrors `<source>: <where>.<key>: <message>`."""
    if not isinstance(spec, dict):
        raise _fail(source, where, f"expected a table ([[asset]]), got {spec!r}")
    for key in spec:
        if key not in ASSET_KEYS:
            raise _fail(source, f"{where}.{key}", _unknown_key(key, ASSET_KEYS))
    for key in _REQUIRED_ASSET_KEYS:
        if key not in spec:
            raise _fail(source, f"{where}.{key}", "missing (required in every [[asset]])")
    for key, (kind, accepted) in _ASSET_SCALARS.items():
        if key in spec:
            _check_value(spec[key], kind, source, f"{where}.{key}")
            if accepted is not None and spec[key] not in accepted:
                raise _fail(source, f"{where}.{key}", f"unknown value {spec[key]!r} {_accepted(accepted)}")
    for table in _MODELS:
        if table in spec:
            _check_model(spec[table], table, f"{where}.{table}", source)
    if depth == "roi":
        for key in ("roi_lb", "roi_ub"):
            if key not in spec:
                raise _fail(source, f"{where}.{key}",
                            'missing (required with depth = "roi": the price range the order book tracks)')
        if spec["roi_ub"] <= spec["roi_lb"]:
            raise _fail(source, f"{where}.roi_ub", f"must be > roi_lb ({spec['roi_lb']}), got {spec['roi_ub']}")


def check_run_config(cfg: dict[str, Any], source) -> None:
    """Checks a whole backtest config (top-level keys, then every [[asset]] with check_asset)."""
    for key in cfg:
        if key not in TOP_KEYS:
            raise _fail(source, key, _unknown_key(key, TOP_KEYS))
    if "strategy" in cfg:
        _check_value(cfg["strategy"], "str", source, "strategy")
    depth = cfg.get("depth", "hashmap")
    if depth not in DEPTHS:
        raise _fail(source, "depth", f"unknown value {depth!r} {_accepted(DEPTHS)}")
    if "record_size" in cfg:
        _check_value(cfg["record_size"], "count", source, "record_size")
    assets = cfg.get("asset")
    if not isinstance(assets, list) or not assets:
        raise _fail(source, "asset", "missing (needs at least one [[asset]] table)")
    for i, spec in enumerate(assets):
        check_asset(spec, f"asset[{i}]", source, depth)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML file; a missing or invalid file is a ConfigError naming it."""
    import tomllib

    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise _fail(path, None, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, None, "is a directory, expected a TOML file") from None
    except OSError as exc:
        raise _fail(path, None, f"cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, None, f"invalid TOML ({exc})") from None


def load_run_config(path: str | Path) -> dict[str, Any]:
    """Reads and checks the TOML (check_run_config); every error names the file and the full key."""
    path = Path(path)
    cfg = read_toml(path)
    check_run_config(cfg, path)
    return cfg


def build_asset(spec: dict[str, Any], base: Path, where: str, source=None, depth: str | None = None, files=None):
    """One `BacktestAsset` from an [[asset]] table (checked with check_asset; relative paths resolved against
    `base`). `source` names the config file in errors; `files` maps resolved paths to arrays already in memory
    (e.g. from Ray's object store), used instead of reading those paths."""
    from .asset import BacktestAsset

    check_asset(spec, where, source, depth)

    def paths(value) -> list[str]:
        items = value if isinstance(value, list) else [value]
        return [files.get(str(base / p), str(base / p)) if files else str(base / p) for p in items]

    asset = BacktestAsset().data(paths(spec["data"])).tick_size(spec["tick_size"]).lot_size(spec["lot_size"])
    contract_size = spec.get("contract_size", 1.0)
    if spec.get("asset_type", "linear") == "linear":
        asset.linear_asset(contract_size)
    else:
        asset.inverse_asset(contract_size)
    for table, default in _MODEL_DEFAULTS.items():
        settings = spec.get(table, default)
        method, required, optional = _MODELS[table][settings["model"]]
        args = [settings[k] for k in required] + [settings[k] for k in optional if k in settings]
        if method == "intp_order_latency":
            args[0] = paths(args[0])
        getattr(asset, method)(*args)
    getattr(asset, f"{spec.get('exchange', 'no_partial_fill')}_exchange")()
    for key in ("roi_lb", "roi_ub", "last_trades_capacity", "latency_offset", "reference_compatible"):
        if key in spec:
            getattr(asset, key)(spec[key])
    if "initial_snapshot" in spec:
        asset.initial_snapshot(paths(spec["initial_snapshot"])[0])
    if spec.get("funding", False):
        asset.funding(True, lenient=spec["funding"] == "lenient")
    return asset


def load_strategy(target: str):
    """`path/to/file.py:func` or `package.module:func` → the function object."""
    import importlib
    import importlib.util

    from ..errors import ConfigError

    module_ref, sep, name = target.rpartition(":")
    if not sep or not module_ref or not name:
        raise ConfigError(f"strategy must look like FILE.py:FUNCTION or MODULE:FUNCTION, got {target!r}")
    if module_ref.endswith(".py"):
        path = Path(module_ref)
        if not path.exists():
            raise ConfigError(f"strategy file {path} does not exist")
        module = _load_file_module(path.resolve())
    else:
        module = importlib.import_module(module_ref)
    fn = getattr(module, name, None)
    if fn is None:
        raise ConfigError(f"strategy {target!r}: {module_ref} has no attribute {name!r}")
    return fn


def _module_name(path: Path) -> str:
    """The module name for a strategy file: its stem, as `import` and other loaders name it, unless that name
    belongs to another module (then one derived from the path)."""
    import importlib.util
    import sys

    stem = path.stem
    if stem.isidentifier() and stem not in sys.stdlib_module_names:
        loaded = sys.modules.get(stem)
        if loaded is not None:
            if _same_file(getattr(loaded, "__file__", None), path):
                return stem
        else:
            try:
                found = importlib.util.find_spec(stem)
            except (ImportError, ValueError):
                found = None
            if found is None or _same_file(found.origin, path):
                return stem
    return _path_name(path)


def _path_name(path: Path) -> str:
    import hashlib

    return "_hftbacktest_strategy_" + hashlib.sha1(str(path).encode()).hexdigest()[:16]


def _same_file(name: str | None, path: Path) -> bool:
    return bool(name) and Path(name).resolve() == path


def _load_file_module(path: Path):
    """Imports a strategy file as a module registered in `sys.modules` (see `_module_name`).

    numba's cache stores the name of a function's module and imports it when it loads a cached `@njit(cache=True)`
    function in another process: an unregistered module was cached as '<dynamic>', which no process can import,
    and every process that loads the file must give it the same name. The path-derived name is registered as well,
    so entries cached under it (before the stem was used, or while the stem was taken) still load. The same file,
    unchanged, is imported once per process (its compiled functions are reused)."""
    import importlib.util
    import sys

    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    name = _module_name(path)
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__hftbacktest_stamp__", stamp) == stamp:
        sys.modules.setdefault(_path_name(path), module)
        return module  # loaded here before (or by the caller's own loader), unchanged since
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__hftbacktest_stamp__ = stamp
    names = dict.fromkeys((name, _path_name(path)))
    for alias in names:
        sys.modules[alias] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for alias in names:
            del sys.modules[alias]
        raise
    return module


def num_params(fn) -> int:
    return len(inspect.signature(getattr(fn, "py_func", fn)).parameters)


def _run(args: argparse.Namespace) -> int:
    import time

    from ..errors import ConfigError, DataError

    config_path = Path(args.config)
    cfg = load_run_config(config_path)
    target = args.strategy or cfg.get("strategy")
    if not target:
        raise ConfigError(f"{config_path}: no strategy given (key `strategy` or --strategy)")
    if not args.strategy and target.split(":")[0].endswith(".py"):
        target = str(config_path.parent / target)
    strategy = load_strategy(target)
    n_params = num_params(strategy)
    if n_params not in (1, 2):
        raise ConfigError(f"strategy {target!r} must take (hbt) or (hbt, recorder), it takes {n_params} arguments")
    if args.record and n_params != 2:
        raise ConfigError("--record needs a strategy taking (hbt, recorder) that calls recorder.record(hbt)")

    base = config_path.parent
    depth = cfg.get("depth", "hashmap")
    assets = [build_asset(spec, base, f"asset[{i}]", config_path, depth) for i, spec in enumerate(cfg["asset"])]
    if depth == "roi":
        from .bot import ROIVectorMarketDepthBacktest as make_bot
    else:
        from .bot import HashMapMarketDepthBacktest as make_bot
    try:
        hbt = make_bot(assets)
    except (ConfigError, DataError) as exc:  # the builder's checks and unreadable data: name the config too
        raise type(exc)(f"{config_path}: {exc}") from None

    recorder = None
    t0 = time.perf_counter()
    if n_params == 2:
        from ..recorder import Recorder

        recorder = Recorder(len(assets), int(cfg.get("record_size", 1_000_000)), grow=True)
        strategy(hbt, recorder.recorder)
    else:
        strategy(hbt)
    elapsed = time.perf_counter() - t0

    print(f"backtest finished in {elapsed:.2f} s (compile included) at timestamp {hbt.current_timestamp}")
    for a, spec in enumerate(cfg["asset"]):
        sv = hbt.state_values(a)
        print(f"  asset {a} {spec.get('name', '')}: " + ", ".join(
            f"{field}={_number(sv[field].item())}" for field in sv.dtype.names))
    hbt.close()

    if recorder is not None:
        _summarise(recorder, cfg, args, str(config_path), target)
    return 0


def _number(value) -> str:
    """A state value as a person reads it: floats to 10 significant digits (0.082, not 0.08200000000000005)."""
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def summary_table(stats, title: str | None = None):
    """Stats as a rich table with one row per metric and one column per split (the last: the whole period), so
    every metric is shown however narrow the terminal."""
    from rich.table import Table

    from ..stats.record import format_value

    splits = stats.splits
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for split in splits:
        span = f"{format_value(split.get('start'))} – {format_value(split.get('end'))}"
        table.add_column("value" if len(splits) == 1 else span, justify="right")
    for key in splits[0]:
        if key not in ("start", "end"):
            table.add_row(key, *(format_value(split.get(key)) for split in splits))
    return table


def _summarise(recorder, cfg: dict[str, Any], args: argparse.Namespace, config_path: str, target: str) -> None:
    from rich.console import Console

    from ..stats import InverseAssetRecord, LinearAssetRecord

    run_config = {
        "title": f"backtest · {target}",
        "config": config_path,
        "assets": [{"name": spec.get("name", f"asset {i}"), "asset_type": spec.get("asset_type", "linear"),
                    "contract_size": spec.get("contract_size", 1.0), "tick_size": spec["tick_size"],
                    "lot_size": spec["lot_size"]} for i, spec in enumerate(cfg["asset"])],
    }
    for a, spec in enumerate(cfg["asset"]):
        rows = recorder.get(a)
        if len(rows) < 2:
            print(f"  asset {a}: {len(rows)} recorded row(s), no statistics")
            continue
        record_cls = InverseAssetRecord if spec.get("asset_type") == "inverse" else LinearAssetRecord
        kwargs = {} if args.book_size is None else {"book_size": args.book_size}
        record = record_cls(rows).contract_size(spec.get("contract_size", 1.0))
        if spec.get("funding", False):
            record.funding(recorder.funding(a))
        stats = record.stats(**kwargs)
        Console().print(summary_table(stats, f"asset {a} {spec.get('name', '')}".rstrip()))
    if args.record:
        recorder.to_npz(args.record, config=run_config)
        print(f"wrote {args.record}")
    if args.report:
        from ..report import load_record, write_report

        if args.record:
            out = write_report(load_record(Path(args.record)), args.report, book_size=args.book_size)
        else:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                recorder.to_npz(str(Path(tmp) / "record.npz"), config=run_config)
                out = write_report(load_record(Path(tmp) / "record.npz"), args.report, book_size=args.book_size)
        print(f"wrote {out}")
