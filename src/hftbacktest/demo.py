"""`hftbacktest demo`: synthetic feed → conversion → market-making backtest → summary + HTML report, offline."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run a complete offline demo (synthetic BTCUSDT feed, backtest, report)")
    p.add_argument("--out", default="demo_out", help="output directory (default: ./demo_out)")
    p.add_argument("--minutes", type=float, default=5.0, help="minutes of synthetic feed (default: 5)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the synthetic feed (default: 1)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    print("hftbacktest demo: not available yet")
    return 1
