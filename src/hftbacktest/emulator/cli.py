"""`hftbacktest emulator`: run the local Binance USD-M Futures venue on loopback until interrupted."""
from __future__ import annotations

import argparse

DEFAULT_KEY = DEFAULT_SECRET = "demo"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "emulator", help="run a local Binance USD-M Futures exchange emulator on 127.0.0.1",
        description="Local Binance USD-M Futures venue (REST + WebSocket) replaying a raw feed. Prints the bound "
                    "REST and WS URLs, then serves until Ctrl-C. See docs/emulator.md.")
    p.add_argument("--market", action="append", metavar="FEED",
                   help="raw Binance collector file (.gz) or synthetic:SYMBOL[:minutes]; repeat for more symbols "
                        "(default: synthetic BTCUSDT and ETHUSDT)")
    p.add_argument("--port", type=int, default=0, help="REST port (0 = any free port)")
    p.add_argument("--ws-port", type=int, default=0, help="WebSocket port (0 = any free port)")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed multiplier; 0 = as fast as possible")
    p.add_argument("--no-loop", action="store_true", help="stop the replay at the end of the feed")
    p.add_argument("--faults", metavar="SPEC",
                   help="faults to arm: 'kind:k=v,k=v;kind2' or a TOML file with [faults.<kind>] tables")
    p.add_argument("--account", action="append", metavar="KEY:SECRET[:BALANCE]",
                   help=f"API key, secret and USDT balance (default account: {DEFAULT_KEY}/{DEFAULT_SECRET})")
    p.add_argument("--maker-fee", type=float, default=0.0002, help="maker fee rate (negative = rebate)")
    p.add_argument("--taker-fee", type=float, default=0.0005, help="taker fee rate")
    p.add_argument("--ping-interval", type=float, default=180.0, help="server WebSocket ping interval, seconds")
    p.add_argument("--listen-key-validity", type=float, default=3600.0, help="listen key lifetime, seconds")
    p.add_argument("--max-connection-s", type=float, default=None,
                   help="close WebSocket connections after this many seconds (Binance: 86400)")
    p.add_argument("--weight-limit", type=int, default=2400, help="request weight per minute before 429")
    p.add_argument("--order-limit-10s", type=int, default=300, help="orders per 10 s per account before -1015")
    p.add_argument("--order-limit-1m", type=int, default=1200, help="orders per minute per account before -1015")
    p.add_argument("--order-latency-ms", type=float, default=0.0,
                   help="delay before order requests reach the matching engine (paper-trading realism)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)


def _accounts(specs: list[str] | None) -> list[tuple[str, str, float]]:
    from ..errors import ConfigError

    out = []
    for spec in specs or [f"{DEFAULT_KEY}:{DEFAULT_SECRET}"]:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ConfigError("--account expects KEY:SECRET[:BALANCE]")
        try:
            balance = float(parts[2]) if len(parts) == 3 else 10_000.0
        except ValueError:
            raise ConfigError("--account balance must be a number") from None
        out.append((parts[0], parts[1], balance))
    return out


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import sys

    from .server import Emulator, EmulatorConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = EmulatorConfig(speed=args.speed, loop=not args.no_loop, seed=args.seed, ping_interval=args.ping_interval,
                            listen_key_validity_s=args.listen_key_validity, max_connection_s=args.max_connection_s,
                            weight_limit=args.weight_limit, order_limit_10s=args.order_limit_10s,
                            order_limit_1m=args.order_limit_1m, maker_fee=args.maker_fee, taker_fee=args.taker_fee,
                            order_latency_ms=args.order_latency_ms)
    accounts = _accounts(args.account)

    async def main() -> None:
        emu = Emulator(args.market, config=config, faults=args.faults, rest_port=args.port, ws_port=args.ws_port)
        await emu.serve()
        for key, secret, balance in accounts:
            emu.venue.add_account(key, secret, balance, config.maker_fee, config.taker_fee)
        print(f"REST {emu.rest_url}", flush=True)
        print(f"WS   {emu.ws_url}", flush=True)
        print(f"symbols {' '.join(emu.streams)}; accounts {' '.join(k for k, _, _ in accounts)}", flush=True)
        if not sys.stdout.isatty():
            sys.stdout.flush()
        try:
            await asyncio.Event().wait()
        finally:
            await emu.aclose()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0
