"""`hftbacktest convert|validate|generate` subcommands (Binance USD-M data path)."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert", help="convert raw Binance USD-M feed files into event arrays (.npz)")
    p.set_defaults(func=lambda a: print("not implemented yet") or 2)
    p = subparsers.add_parser("validate", help="check an event array (.npz): event order, flags, data quality")
    p.set_defaults(func=lambda a: print("not implemented yet") or 2)
    p = subparsers.add_parser("generate", help="write a synthetic raw Binance USD-M feed (collector format)")
    p.set_defaults(func=lambda a: print("not implemented yet") or 2)
