"""`hftbacktest emulator`: run the local Binance USD-M Futures venue."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("emulator", help="run a local Binance USD-M Futures exchange emulator on loopback")
    p.set_defaults(func=lambda args: 1)
