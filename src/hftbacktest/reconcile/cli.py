"""`hftbacktest reconcile` and `hftbacktest calibrate` (docs/reconcile.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--journal", nargs="+", required=True, help="order journal(s) of the session (JSONL, in order)")
    p.add_argument("--feed", required=True, help="the collector's recording of the session (.gz) or a converted .npz")
    p.add_argument("--config", required=True, help="backtest TOML (`hftbacktest backtest`'s; [[asset]] data optional)")
    p.add_argument("--latency", nargs="+", help="the bot's order-latency log(s) (OrderLatencyLogger JSONL or .npz)")
    p.add_argument("--asset", type=int, default=0, help="which [[asset]] of the config (default 0)")
    p.add_argument("--symbol", help="the journal symbol to reconcile (default: the journals' only one)")
    p.add_argument("--window-ms", type=float, default=1000.0,
                   help="largest exchange-time difference of two fills counted as the same (default 1000)")


def register(sub) -> None:
    p = sub.add_parser("reconcile", help="compare a live/paper session's fills with a backtest of its recorded feed",
                       description="Order replay: the journal's requests go into a backtest of the recorded feed at "
                                   "their recorded times and latencies; fills are compared order by order.")
    _common(p)
    p.add_argument("--mode", choices=("orders", "strategy"), default="orders",
                   help="orders: replay the journal's requests (default); strategy: re-run the strategy with the "
                        "live latency log and compare totals and paths")
    p.add_argument("--strategy", help="FILE.py:FUNCTION or MODULE:FUNCTION taking (hbt) or (hbt, recorder) for "
                                      "--mode strategy (default: the config's `strategy`)")
    p.add_argument("--queue", help="queue model instead of the config's (risk_averse, power_prob:2, log_prob, ...)")
    p.add_argument("-o", "--output", default="reconcile.html", help="HTML report (default reconcile.html)")
    p.add_argument("--json", help="summary JSON (default: the report's name with .json)")
    p.add_argument("--csv", help="also write the fill table as CSV")
    p.add_argument("--images", action="store_true", help="matplotlib PNG charts instead of interactive plotly")
    p.set_defaults(func=_reconcile)

    c = sub.add_parser("calibrate", help="rank queue models by how well they reproduce a session's live fills",
                       description="Order replay under each candidate queue model, ranked by fill agreement, then by "
                                   "fill-count and first-fill-time errors. Writes the table as CSV.")
    _common(c)
    c.add_argument("--queue", nargs="+", required=True,
                   help="candidates, e.g. risk_averse power_prob:1,2,3,4 log_prob log_prob2")
    c.add_argument("-o", "--output", default="calibration.csv", help="CSV table (default calibration.csv)")
    c.set_defaults(func=_calibrate)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _warn(messages) -> None:
    for w in messages:
        print(f"warning: {w}", file=sys.stderr)


def _reconcile(args) -> int:
    from .api import reconcile

    if args.images:
        from ..report import _require_matplotlib

        _require_matplotlib()
    if args.mode == "strategy":
        return _strategy(args)
    res = reconcile(args.journal, args.feed, args.config, args.latency, queue=args.queue, window_ms=args.window_ms,
                    symbol=args.symbol, asset=args.asset)
    s = res.summary
    _warn(s["warnings"])
    for g in s["excluded_intervals"]:
        print(f"warning: feed gap {g['span']} ({g['kind']} {g['detail']}".rstrip() + "): orders meeting it excluded",
              file=sys.stderr)
    out = res.write_html(args.output, charts="images" if args.images else "plotly")
    js = res.write_json(args.json or Path(args.output).with_suffix(".json"))
    if args.csv:
        res.write_csv(args.csv)
    print(f"{s['symbol'].upper()} {s['session']}, queue {s['queue']}: fill agreement {_pct(s['agreement'])} "
          f"({s['matched_fills']} of {s['live_fills']} live fills), {s['live_only']} live only, "
          f"{s['backtest_only']} backtest only; {s['orders_excluded']} of {s['orders']} orders excluded")
    print(f"wrote {out} and {js}" + (f" and {args.csv}" if args.csv else ""))
    return 0


def _strategy(args) -> int:
    from ..backtest.cli import read_toml
    from ..errors import ConfigError
    from .api import strategy_replay

    target = args.strategy
    if target is None:
        target = read_toml(args.config).get("strategy")
        if not target:
            raise ConfigError(f"{args.config}: no strategy given (key `strategy` or --strategy)")
        if target.split(":")[0].endswith(".py"):
            target = str(Path(args.config).parent / target)
    res = strategy_replay(args.journal, args.feed, args.config, args.latency, target, queue=args.queue,
                          symbol=args.symbol, asset=args.asset)
    s = res.summary
    _warn(s["warnings"])
    out = res.write_html(args.output, charts="images" if args.images else "plotly")
    js = res.write_json(args.json or Path(args.output).with_suffix(".json"))
    print(f"{s['symbol'].upper()} {s['session']}, strategy re-run, queue {s['queue']}: fills live "
          f"{s['live_fills']} / backtest {s['backtest_fills']}, volume {s['live_volume']:.6g} / "
          f"{s['backtest_volume']:.6g}, final position {s['live_position']:.6g} / {s['backtest_position']:.6g}")
    print(f"wrote {out} and {js}")
    return 0


def _calibrate(args) -> int:
    from .api import calibrate, load, write_table
    from .replay import expand_queue_specs

    expand_queue_specs(args.queue)  # an unknown model fails before the feed is read
    inputs = load(args.journal, args.feed, args.config, args.latency, symbol=args.symbol, asset=args.asset)
    _warn(inputs.session.warnings + inputs.feed.notes)
    table = calibrate(None, None, None, args.queue, window_ms=args.window_ms, inputs=inputs)
    for row in table.iter_rows(named=True):
        ttf = row["first_fill_error_ms"]
        print(f"{row['rank']:>3}  {row['queue']:<16} agreement {_pct(row['agreement']):>9}  fills "
              f"{row['backtest_fills']}/{row['live_fills']}  count error {_pct(row['fill_count_error'])}  "
              f"first-fill error {'n/a' if ttf is None else f'{ttf:.1f} ms'}")
    best = table.row(0, named=True)
    print(f"best: {best['queue']} (agreement {_pct(best['agreement'])})")
    print(f"wrote {write_table(table, args.output)}")
    return 0
