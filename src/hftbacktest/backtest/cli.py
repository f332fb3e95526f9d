"""`hftbacktest backtest` subcommand (registered by the top-level CLI)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("backtest", help="run a backtest from the command line (not implemented yet)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..errors import HftBacktestError

    raise HftBacktestError(
        "`hftbacktest backtest` is not implemented yet; build BacktestAsset/HashMapMarketDepthBacktest from Python"
    )
