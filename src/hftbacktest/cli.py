"""The single `hftbacktest` command. Each area registers its own subcommands; heavy imports stay inside handlers."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand group -> module exposing `register(subparsers)`
_COMMAND_MODULES = (
    "hftbacktest.demo",
    "hftbacktest.data.cli",
    "hftbacktest.backtest.cli",
    "hftbacktest.backtest.compile",
    "hftbacktest.report",
    "hftbacktest.emulator.cli",
    "hftbacktest.sweep",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hftbacktest",
        description="Tick-level backtesting and Binance USD-M tooling. Run `hftbacktest demo` to see it work offline.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    from .errors import HftBacktestError

    try:
        rc = args.func(args)
    except HftBacktestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
