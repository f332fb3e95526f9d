"""`hftbacktest demo`: synthetic feed → conversion → market-making backtest → summary + HTML report, offline.

Every step uses the public API a user would: `hftbacktest.data.synthetic`, `hftbacktest.data.utils.binancefutures.
convert`, `BacktestAsset` + `HashMapMarketDepthBacktest`, `Recorder`, `hftbacktest.stats`, `hftbacktest.report`.
"""
from __future__ import annotations

import contextlib
import io
import os
import time
from pathlib import Path

import numpy as np

SYMBOL = "BTCUSDT"
TICK_SIZE = 0.1
LOT_SIZE = 0.001
BOOK_SIZE = 10_000.0  # capital the metrics are expressed against
MAKER_FEE, TAKER_FEE = -0.00005, 0.0007  # Binance USD-M VIP-style maker rebate / taker fee


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run a complete offline demo (synthetic BTCUSDT feed, backtest, report)",
        description="Generate a synthetic Binance USD-M BTCUSDT feed, convert it, backtest a market maker with a "
        "probabilistic queue model and order latency, print the summary and write an HTML report. Offline.",
    )
    p.add_argument("--out", default="demo_out", help="output directory (default: ./demo_out)")
    p.add_argument("--minutes", type=float, default=5.0, help="minutes of synthetic feed (default: 5)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the synthetic feed (default: 1)")
    p.set_defaults(func=_run)


def order_latency_table(start_ns: int, end_ns: int, seed: int) -> np.ndarray:
    """Recorded-style order latencies every 100 ms: log-normal entry (~4 ms) and response (~3 ms), occasional spikes."""
    from .types import order_latency_dtype

    rng = np.random.default_rng(seed + 7)
    req = np.arange(start_ns - 1_000_000_000, end_ns + 1_000_000_000, 100_000_000, dtype=np.int64)
    spikes = np.where(rng.random(len(req)) < 0.02, rng.exponential(15e6, len(req)), 0.0)
    entry = rng.lognormal(np.log(4e6), 0.35, len(req)) + spikes
    response = rng.lognormal(np.log(3e6), 0.3, len(req))
    rows = np.zeros(len(req), order_latency_dtype)
    rows["req_ts"] = req
    rows["exch_ts"] = req + entry.astype(np.int64)
    rows["resp_ts"] = rows["exch_ts"] + response.astype(np.int64)
    return rows


def engine_cached(dispatcher, args) -> bool | None:
    """Whether `dispatcher` (an @njit(cache=True) function) is compiled for `args` in this process or in numba's
    on-disk cache; None when numba's cache layout cannot be inspected (the caller then just says it may compile)."""
    from numba import typeof

    try:
        sig = tuple(typeof(a) for a in args)
        if sig in dispatcher.overloads:
            return True
        cache = dispatcher._cache
        return cache._index_key(sig, dispatcher.targetctx.codegen()) in cache._cache_file._load_index()
    except Exception:  # private numba API: never let the progress message break the demo
        return None


def _compile(dispatcher, args) -> None:
    import warnings

    from numba import typeof
    from numba.core.errors import NumbaIRAssumptionWarning

    with warnings.catch_warnings():  # numba's internal SSA self-check on the engine's order iterator: harmless
        warnings.simplefilter("ignore", NumbaIRAssumptionWarning)
        dispatcher.compile(tuple(typeof(a) for a in args))


class _Steps:
    """Prints each step with its duration; a spinner only when attached to a terminal outside CI."""

    def __init__(self, console):
        self.console = console
        self.live = console.is_terminal and not os.environ.get("CI")

    def run(self, label: str, fn, *args, announce: bool = False, done: str | None = None, **kwargs):
        """`announce`: also print the label before a long step when there is no spinner (CI logs); `done`: the
        line printed after it (default: the label)."""
        t0 = time.perf_counter()
        if self.live:
            with self.console.status(label + " ..."):
                result = fn(*args, **kwargs)
        else:
            if announce:
                self.console.print(f"… {label}", soft_wrap=True)
            result = fn(*args, **kwargs)
        self.console.print(f"[green]✓[/green] {done or label} [dim]({time.perf_counter() - t0:.1f} s)[/dim]", soft_wrap=True)
        return result


# The background process says "cold" when the engine's entry point is not in numba's cache (warmup.start is called
# exactly then, before compiling) or "ready" once a warm load is done: the demo announces a compile only for "cold".
_ENGINE_LOADER = """
from hftbacktest.kernels import warmup
_start = warmup.start
def _cold():
    print("cold", flush=True)
    _start()
warmup.start = _cold
import hftbacktest.backtest.bot
from hftbacktest.kernels import entry
entry.entry_point()
print("ready", flush=True)
warmup.wait()
"""


def _start_engine_compile():
    """Loads (or on a first run compiles) the engine into numba's cache in a second process while this one makes
    and converts the feed: the two compiles are independent, so a first run on 2 cores saves ~30 s. With a warm
    cache it is a 1-s import on the other core. None when a process cannot be started (we then compile here)."""
    import subprocess
    import sys

    try:
        return subprocess.Popen([sys.executable, "-c", _ENGINE_LOADER], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return None


def _await_engine(proc, steps) -> None:
    """Waits for the background engine load; shows it as a step only when it is a first-run compile."""
    first = proc.stdout.readline().strip()  # "cold" as soon as it knows, "ready" after a warm load, "" if it died
    if first == "cold":
        steps.run("compiling the engine (first run only, cached afterwards)", proc.wait, announce=True,
                  done="engine compiled and cached")
    proc.stdout.close()
    proc.wait()


class _Silent:
    """`_Steps` without output (the install-time precompile)."""

    @staticmethod
    def run(label, fn, *args, announce=False, done=None, **kwargs):
        return fn(*args, **kwargs)


def _prepare(out: Path, minutes: float, seed: int, steps) -> dict:
    """Feed → conversion (the engine loads or compiles in a second process meanwhile) → the demo's bot, recorder
    and strategy arguments, with the strategy compiled."""
    from . import BacktestAsset, HashMapMarketDepthBacktest
    from ._demo_strategy import RECORD_EVERY, market_making_algo
    from .data import synthetic
    from .data.utils import binancefutures
    from .errors import ConfigError
    from .recorder import Recorder

    if not minutes > 0:
        raise ConfigError(f"--minutes must be positive, got {minutes}")
    out.mkdir(parents=True, exist_ok=True)
    feed_path, events_path = out / "btcusdt_synthetic.gz", out / "btcusdt_synthetic.npz"
    engine_compile = _start_engine_compile()

    feed = steps.run(f"synthetic {SYMBOL} feed, {minutes:g} min, seed {seed} → {feed_path}",
                     synthetic.generate, str(feed_path), symbol=SYMBOL, minutes=minutes, seed=seed,
                     tick_size=TICK_SIZE, lot_size=LOT_SIZE)

    def convert():
        with contextlib.redirect_stdout(io.StringIO()):  # the converter narrates its steps like the reference
            return binancefutures.convert(str(feed_path), output_filename=str(events_path), combined_stream=True)

    events = steps.run(f"converted → {events_path}", convert)
    if engine_compile is not None:
        _await_engine(engine_compile, steps)

    start_ns = int(feed.cfg.start_ms) * 1_000_000
    latency = order_latency_table(start_ns, start_ns + int(minutes * 60e9), seed)
    strategy = dict(half_spread_bps=0.1, skew_per_position=5.0, order_value=500.0, max_position=0.5)
    asset = (
        BacktestAsset()
        .data([str(events_path)])
        .linear_asset(1.0)
        .intp_order_latency(latency)
        .power_prob_queue_model(2.0)
        .no_partial_fill_exchange()
        .trading_value_fee_model(MAKER_FEE, TAKER_FEE)
        .tick_size(TICK_SIZE)
        .lot_size(LOT_SIZE)
    )
    hbt = HashMapMarketDepthBacktest([asset])
    recorder = Recorder(1, int(minutes * 60 * 100 / RECORD_EVERY) + 1000, grow=True)
    args = (hbt, recorder.recorder, strategy["half_spread_bps"], strategy["skew_per_position"],
            strategy["order_value"], strategy["max_position"])
    cached = engine_cached(market_making_algo, args)
    if not cached:
        what = "compiling the engine into the strategy (first run only, cached afterwards)"
        if cached is None:
            what = "loading the compiled engine (the first run compiles it, up to a minute; cached afterwards)"
        steps.run(what, _compile, market_making_algo, args, announce=True, done="strategy compiled and cached")
    return dict(feed_path=feed_path, events_path=events_path, events=events, latency=latency, strategy=strategy,
                hbt=hbt, recorder=recorder, args=args)


def precompile(out: Path) -> None:
    """Everything the demo compiles, into numba's cache, silently: the install-time build hook runs this (see
    `_build/hftbacktest_build.py`) so that a first `hftbacktest demo` or backtest loads machine code instead of compiling."""
    from ._demo_strategy import market_making_algo

    run = _prepare(out, 5.0, 1, _Silent())
    market_making_algo(*run["args"])
    run["hbt"].close()
    run["recorder"].to_npz(str(out / "record.npz"), order_latency=run["latency"])  # the recorder's accessors
    run["recorder"].get(0)


def run_demo(out: Path, minutes: float, seed: int, console=None) -> dict:
    """Runs the whole demo into `out`; returns paths and the Stats object."""
    from rich.console import Console

    from ._demo_strategy import market_making_algo
    from .report import AssetView, RunRecord, write_report
    from .stats import AnnualRet, LinearAssetRecord, MaxLeverage, NumberOfTrades, TradingVolume

    console = console or Console()
    steps = _Steps(console)
    t_start = time.perf_counter()
    run = _prepare(out, minutes, seed, steps)
    feed_path, events, latency, strategy = run["feed_path"], run["events"], run["latency"], run["strategy"]
    hbt, recorder, args = run["hbt"], run["recorder"], run["args"]
    record_path, report_path = out / "record.npz", out / "report.html"
    config = {
        "title": f"hftbacktest demo · synthetic {SYMBOL}, {minutes:g} min, seed {seed}",
        "data": f"{feed_path.name}: {len(events):,} events",
        "strategy": "market_making_algo (documentation example): " + ", ".join(f"{k}={v}" for k, v in
                                                                             strategy.items()),
        "queue model": "power_prob_queue_model(2.0)",
        "exchange model": "no_partial_fill_exchange",
        "order latency": f"intp_order_latency ({len(latency)} samples, median entry "
                         f"{np.median(latency['exch_ts'] - latency['req_ts']) / 1e6:.1f} ms)",
        "fees": f"maker {MAKER_FEE:g}, taker {TAKER_FEE:g} of traded value",
        "assets": [{"name": SYMBOL, "asset_type": "linear", "contract_size": 1.0, "tick_size": TICK_SIZE,
                    "lot_size": LOT_SIZE}],
    }

    def backtest():
        market_making_algo(*args)
        hbt.close()

    steps.run(f"backtest: {len(events):,} events, market maker, power-prob queue, order latency", backtest)
    recorder.to_npz(str(record_path), config=config, order_latency=latency)
    record = recorder.get(0)
    metrics = list(LinearAssetRecord.DEFAULT_METRICS) + [AnnualRet, NumberOfTrades, TradingVolume, MaxLeverage]
    stats = LinearAssetRecord(record).resample("1s").stats(metrics, book_size=BOOK_SIZE)
    run_record = RunRecord([AssetView(record, SYMBOL, order_latency=latency)], config, str(record_path))
    steps.run(f"report → {report_path}", write_report, run_record, report_path, book_size=BOOK_SIZE,
              resample="1s", title=config["title"])
    console.print(_summary(stats, record, BOOK_SIZE))
    console.print(f"Done in {time.perf_counter() - t_start:.1f} s. Open {report_path} in a browser.")
    return {"report": report_path, "record": record_path, "events": run["events_path"], "feed": feed_path,
            "stats": stats}


def _summary(stats, record: np.ndarray, book_size: float):
    from rich.table import Table

    from .stats.record import format_value

    row = stats.splits[-1]
    table = Table(title=f"1 s samples, book size {book_size:,.0f} USDT", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in row.items():
        if key not in ("start", "end"):
            table.add_row(key, format_value(value))
    last = record[-1]
    table.add_row("final position (BTC)", f"{last['position']:.3f}")
    gross = float(last["balance"] + last["position"] * last["price"])
    table.add_row("gross PnL (USDT, before fees)", format_value(gross))
    table.add_row("fees (USDT, negative = rebate)", format_value(float(last["fee"])))
    table.add_row("net PnL (USDT)", format_value(gross - float(last["fee"])))
    return table


def _run(args) -> int:
    from rich.console import Console

    console = Console()
    run_demo(Path(args.out), args.minutes, args.seed, console)
    return 0

