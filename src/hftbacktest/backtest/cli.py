"""`hftbacktest backtest`: run a strategy module against assets described in a TOML file.

The TOML maps one-to-one onto the `BacktestAsset` builder, so there is one way to configure each thing:

    depth = "hashmap"                 # or "roi" (then give roi_lb / roi_ub per asset)
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
"""
from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

ASSET_KEYS = {
    "name", "data", "tick_size", "lot_size", "asset_type", "contract_size", "latency", "queue", "exchange", "fee",
    "roi_lb", "roi_ub", "initial_snapshot", "last_trades_capacity", "latency_offset", "reference_compatible",
}
TOP_KEYS = {"strategy", "depth", "record_size", "asset"}
_QUEUE_METHODS = {
    "risk_adverse": ("risk_adverse_queue_model", False),
    "power_prob": ("power_prob_queue_model", True),
    "power_prob2": ("power_prob_queue_model2", True),
    "power_prob3": ("power_prob_queue_model3", True),
    "log_prob": ("log_prob_queue_model", False),
    "log_prob2": ("log_prob_queue_model2", False),
}
_FEE_METHODS = {
    "trading_value": "trading_value_fee_model",
    "trading_qty": "trading_qty_fee_model",
    "flat_per_trade": "flat_per_trade_fee_model",
}


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


def _config_error(path: Path, message: str):
    from ..errors import ConfigError

    return ConfigError(f"{path}: {message}")


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML file; a missing or invalid file is a ConfigError naming it."""
    import tomllib

    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise _config_error(path, "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise _config_error(path, f"invalid TOML ({exc})") from None


def load_run_config(path: str | Path) -> dict[str, Any]:
    """Reads and checks the TOML; unknown keys are errors naming the key."""
    path = Path(path)
    cfg = read_toml(path)
    unknown = set(cfg) - TOP_KEYS
    if unknown:
        raise _config_error(path, f"unknown key(s) {sorted(unknown)}; expected {sorted(TOP_KEYS)}")
    assets = cfg.get("asset")
    if not isinstance(assets, list) or not assets:
        raise _config_error(path, "needs at least one [[asset]] table")
    for i, spec in enumerate(assets):
        unknown = set(spec) - ASSET_KEYS
        if unknown:
            raise _config_error(path, f"asset[{i}]: unknown key(s) {sorted(unknown)}")
        for key in ("data", "tick_size", "lot_size"):
            if key not in spec:
                raise _config_error(path, f"asset[{i}]: missing key '{key}'")
    if cfg.get("depth", "hashmap") not in ("hashmap", "roi"):
        raise _config_error(path, f"depth must be 'hashmap' or 'roi', got {cfg['depth']!r}")
    return cfg


def build_asset(spec: dict[str, Any], base: Path, where: str):
    """One `BacktestAsset` from an [[asset]] table (relative paths resolved against `base`)."""
    from .asset import BacktestAsset

    def paths(value) -> list[str]:
        items = value if isinstance(value, list) else [value]
        return [str(base / p) for p in items]

    asset = BacktestAsset().data(paths(spec["data"])).tick_size(spec["tick_size"]).lot_size(spec["lot_size"])
    contract_size = spec.get("contract_size", 1.0)
    asset_type = spec.get("asset_type", "linear")
    if asset_type == "linear":
        asset.linear_asset(contract_size)
    elif asset_type == "inverse":
        asset.inverse_asset(contract_size)
    else:
        raise _config_error(base, f"{where}.asset_type must be 'linear' or 'inverse', got {asset_type!r}")

    latency = spec.get("latency", {"model": "constant", "entry": 0, "response": 0})
    if latency.get("model") == "constant":
        asset.constant_order_latency(int(latency.get("entry", 0)), int(latency.get("response", 0)))
    elif latency.get("model") == "intp":
        asset.intp_order_latency(paths(latency.get("files", [])), int(latency.get("offset", 0)))
    else:
        raise _config_error(base, f"{where}.latency.model must be 'constant' or 'intp', got {latency.get('model')!r}")

    queue = spec.get("queue", {"model": "log_prob2"})
    method, takes_n = _QUEUE_METHODS.get(queue.get("model"), (None, False))
    if method is None:
        raise _config_error(base, f"{where}.queue.model must be one of {sorted(_QUEUE_METHODS)}, got "
                                  f"{queue.get('model')!r}")
    getattr(asset, method)(*([float(queue.get("n", 2.0))] if takes_n else []))

    exchange = spec.get("exchange", "no_partial_fill")
    if exchange not in ("no_partial_fill", "partial_fill"):
        raise _config_error(base, f"{where}.exchange must be 'no_partial_fill' or 'partial_fill', got {exchange!r}")
    getattr(asset, f"{exchange}_exchange")()

    fee = spec.get("fee", {"model": "trading_value", "maker": 0.0, "taker": 0.0})
    fee_method = _FEE_METHODS.get(fee.get("model"))
    if fee_method is None:
        raise _config_error(base, f"{where}.fee.model must be one of {sorted(_FEE_METHODS)}, got {fee.get('model')!r}")
    getattr(asset, fee_method)(float(fee.get("maker", 0.0)), float(fee.get("taker", 0.0)))

    for key in ("roi_lb", "roi_ub", "last_trades_capacity", "latency_offset", "reference_compatible"):
        if key in spec:
            getattr(asset, key)(spec[key])
    if "initial_snapshot" in spec:
        asset.initial_snapshot(str(base / spec["initial_snapshot"]))
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

    from ..errors import ConfigError

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
    assets = [build_asset(spec, base, f"asset[{i}]") for i, spec in enumerate(cfg["asset"])]
    if cfg.get("depth", "hashmap") == "roi":
        from .bot import ROIVectorMarketDepthBacktest as make_bot
    else:
        from .bot import HashMapMarketDepthBacktest as make_bot
    hbt = make_bot(assets)

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
            f"{field}={sv[field]}" for field in sv.dtype.names))
    hbt.close()

    if recorder is not None:
        _summarise(recorder, cfg, args, str(config_path), target)
    return 0


def _summarise(recorder, cfg: dict[str, Any], args: argparse.Namespace, config_path: str, target: str) -> None:
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
        stats = record_cls(rows).contract_size(spec.get("contract_size", 1.0)).stats(**kwargs)
        print(stats.summary())
    if args.record:
        recorder.to_npz(args.record, config=run_config)
        print(f"wrote {args.record}")
    if args.report:
        from ..report import load_record, write_report

        if not args.record:
            import tempfile

            tmp = Path(tempfile.mkdtemp()) / "record.npz"
            recorder.to_npz(str(tmp), config=run_config)
            source = tmp
        else:
            source = Path(args.record)
        out = write_report(load_record(source), args.report, book_size=args.book_size)
        print(f"wrote {out}")
