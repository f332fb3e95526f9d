"""The single `hftbacktest` command. Each area registers its own subcommands; heavy imports stay inside handlers.

Every failure a user can cause ends in one line on stderr, `error: <file>: <key>: <message>`, and exit code 1
(usage mistakes: the subcommand's usage and exit code 2). HFTBACKTEST_TRACEBACK=1 shows the Python traceback.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
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
    "hftbacktest.data.collect",
    "hftbacktest.reconcile.cli",
)


class _Parser(argparse.ArgumentParser):
    """argparse with a suggestion for a misspelled subcommand or choice (`demp` -> did you mean 'demo'?)."""

    def error(self, message: str):
        import re

        bad = re.match(r"argument .*: invalid choice: '(.*)' \(choose from (.*)\)$", message)
        if bad:
            choices = [c.strip().strip("'") for c in bad.group(2).split(",")]  # quoted or not (Python versions)
            close = difflib.get_close_matches(bad.group(1), choices, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hftbacktest",
        description="Tick-level backtesting and Binance USD-M tooling. Run `hftbacktest demo` to see it work offline.",
        epilog="Errors are one line `error: ...`; set HFTBACKTEST_TRACEBACK=1 for the Python traceback.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    """The parser of `command` (argparse reports unknown options with the top-level usage otherwise)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def _unrecognized(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """argparse's message plus the closest known option for a misspelled one."""
    options = [s for action in parser._actions for s in action.option_strings]
    message = "unrecognized arguments: " + " ".join(extra)
    for arg in extra:
        close = difflib.get_close_matches(arg.split("=", 1)[0], options, n=1) if arg.startswith("-") else []
        if close:
            return f"{message} (did you mean {close[0]}?)"
    return message


def describe(exc: BaseException) -> str:
    """The one-line text of an error: OSErrors name their path, never the errno tuple."""
    if isinstance(exc, OSError) and exc.filename is not None:
        target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else exc.filename
        return f"{target}: {exc.strerror or exc}"
    if isinstance(exc, FileNotFoundError) and exc.strerror is None:  # raised as FileNotFoundError(path)
        return f"{exc}: no such file or directory"
    return str(exc) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        command_parser = _subparser(parser, getattr(args, "command", None))
        command_parser.error(_unrecognized(command_parser, extra))
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return run(args.func, args)


def run(func, *args) -> int:
    """`func(*args)` as a command: its return value is the exit code; this package's errors, OSError and ValueError
    (a user's mistake or the system's) become one line `error: ...` on stderr and exit code 1, Ctrl-C exit 130.
    Also for scripts: `sys.exit(run(main))`."""
    from .errors import HftBacktestError

    try:
        rc = func(*args)
    except (HftBacktestError, OSError, ValueError) as exc:
        if os.environ.get("HFTBACKTEST_TRACEBACK") == "1":
            raise
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
