"""`hftbacktest convert | validate | generate` subcommands (Binance USD-M data path)."""
from __future__ import annotations

import argparse
import sys

_CONVERT_EPILOG = """\
examples:
  hftbacktest convert binancefutures btcusdt_20240808.gz -o btcusdt_20240808.npz --opt mt
  hftbacktest convert binancefutures feed.gz --strict            # stop at the first bad line / gap
  hftbacktest convert binancefutures feed.gz --gap-policy resync # drop unsynced diffs, reset book at snapshots

The input is what the collector writes: one `<local timestamp> <json>` line per message (gzip or plain).
The output .npz holds the event array under the key "data" (identical to hftbacktest 2.4.4's converter by
default) and is what BacktestAsset().data([...]) takes. A data-quality summary is printed to stderr.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a raw Binance USD-M feed file into an event array (.npz)",
        description="Convert a raw feed recorded from Binance USD-M futures websocket streams into the event "
                    "array the backtester reads.", epilog=_CONVERT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exchange", choices=["binancefutures"], help="raw feed format (Binance USD-M / COIN-M futures)")
    p.add_argument("input", help="raw feed file (.gz or plain text)")
    p.add_argument("-o", "--output", help="output .npz (default: input name with .npz)")
    p.add_argument("--opt", default="", choices=["", "m", "t", "mt", "tm"],
                   help="extra rows: m = mark/index price and funding rate (events 100-102), "
                        "t = best bid/ask from bookTicker (events 103/104)")
    p.add_argument("--base-latency", type=int, default=0,
                   help="feed latency (ns) given to the earliest-looking message when local clocks lag (default 0)")
    p.add_argument("--plain-stream", action="store_true",
                   help="lines hold bare events, not combined-stream envelopes {stream, data}")
    p.add_argument("--ts-unit", default="auto", choices=["auto", "ns", "us", "ms"],
                   help="unit of the local timestamps (auto: 19/16/13 digits = ns/us/ms); stored as ns")
    p.add_argument("--strict", action="store_true", help="fail at the first data problem, naming the line")
    p.add_argument("--gap-policy", default="none", choices=["none", "resync"],
                   help="resync: drop depth diffs that cannot be applied and clear the book at each snapshot")
    p.add_argument("--mark-price-time", default="E", choices=["T", "E"],
                   help="timestamp field of markPriceUpdate rows: E = event time (default); T = the next funding "
                        "time, as the reference, which shifts every local timestamp by hours")
    p.add_argument("--keep-duplicates", action="store_true",
                   help="keep repeated trades and depth diffs as the reference does (default: drop and count them)")
    p.add_argument("--tmp-dir", help="where inputs larger than memory blocks spill (default: the system temp dir)")
    p.set_defaults(func=_convert)

    p = subparsers.add_parser(
        "validate", help="check an event array (.npz) or a raw feed: order, flags, data quality",
        description="Check a converted event array (.npz/.npy: dtype, EXCH/LOCAL ordering, flags, crossed "
                    "local book) or a raw feed file (sequence gaps, duplicates, malformed lines...). "
                    "Exits 1 when a problem is found.")
    p.add_argument("files", nargs="+", help=".npz/.npy event arrays or raw feed files")
    p.add_argument("--plain-stream", action="store_true", help="raw files hold bare events (no envelopes)")
    p.set_defaults(func=_validate)

    p = subparsers.add_parser(
        "generate", help="write a synthetic raw Binance USD-M feed (collector format, deterministic per seed)",
        description="Write a synthetic raw feed (REST snapshot, depthUpdate, trade, bookTicker, markPrice lines) "
                    "in exactly the collector's format, from a random-walk/Hawkes order-flow model.",
        epilog="example: hftbacktest generate binancefutures --symbol BTCUSDT --minutes 10 --seed 1 -o feed.gz")
    p.add_argument("exchange", choices=["binancefutures"])
    p.add_argument("-o", "--output", required=True, help="output file (.gz compresses)")
    p.add_argument("--symbol", default="BTCUSDT")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--price", type=float, default=61_000.0, help="initial price")
    p.add_argument("--tick-size", type=float, default=0.1)
    p.add_argument("--lot-size", type=float, default=0.001)
    p.add_argument("--start-ms", type=int, default=1_723_161_600_000, help="exchange start time (ms since epoch)")
    for fault in ("gaps", "duplicates", "crossed", "garbage"):
        p.add_argument(f"--{fault}", type=int, default=0, help=f"inject this many {fault} (for tests)")
    p.set_defaults(func=_generate)


def _convert(args) -> int:
    import contextlib
    import os
    import warnings

    from .quality import DataQualityWarning
    from .utils.binancefutures import convert

    out = args.output or (args.input[:-3] if args.input.endswith(".gz") else args.input) + ".npz"
    out = os.path.splitext(out)[0] + ".npz" if out.endswith(".npz") else out + ".npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)  # the summary below says it all
        with contextlib.redirect_stdout(sys.stderr):
            data, report = convert(args.input, out, opt=args.opt, base_latency=args.base_latency,
                                   combined_stream=not args.plain_stream, ts_unit=args.ts_unit,
                                   strict=args.strict, gap_policy=args.gap_policy,
                                   mark_price_time=args.mark_price_time, tmp_dir=args.tmp_dir,
                                   duplicates="keep" if args.keep_duplicates else "drop",
                                   return_report=True)
    print(report.summary(), file=sys.stderr)
    print(f"wrote {len(data):,} events to {out}")
    return 0


def _validate(args) -> int:
    from .check import validate_file

    bad = 0
    for path in args.files:
        ok, text = validate_file(path, combined_stream=not args.plain_stream)
        print(text)
        bad += not ok
    if len(args.files) > 1:  # the last file's own verdict must not read as the overall one
        print(f"{bad} of {len(args.files)} files with problems" if bad else f"all {len(args.files)} files ok")
    return 1 if bad else 0


def _generate(args) -> int:
    from .synthetic import generate

    feed = generate(args.output, symbol=args.symbol, minutes=args.minutes, seed=args.seed,
                    initial_price=args.price, tick_size=args.tick_size, lot_size=args.lot_size,
                    start_ms=args.start_ms, gaps=args.gaps, duplicates=args.duplicates, crossed=args.crossed,
                    garbage=args.garbage)
    print(f"wrote {args.output}")
    for f in feed.faults:
        print(f"injected {f.kind} at line {f.line}: {f.details}")
    return 0
