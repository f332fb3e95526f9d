"""`hftbacktest emulator`: run the local Binance USD-M Futures venue on loopback until interrupted."""
from __future__ import annotations

import argparse

from .admin import ACCOUNTS_ENV, ADMIN_HEADER, ADMIN_TOKEN_ENV

DEFAULT_KEY = DEFAULT_SECRET = "demo"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "emulator", help="run a local Binance USD-M Futures exchange emulator on 127.0.0.1",
        description="Local Binance USD-M Futures venue (REST + WebSocket) replaying a raw feed. Prints the bound "
                    "REST and WS URLs, then serves until Ctrl-C. See docs/emulator.md.")
    p.add_argument("--market", action="append", metavar="FEED",
                   help="raw Binance collector file (.gz) or synthetic:SYMBOL[:minutes][:quiet] (quiet: a range-bound "
                        "market whose queues decide the fills); repeat for more symbols (default: synthetic "
                        "BTCUSDT and ETHUSDT)")
    p.add_argument("--port", type=int, default=0, help="REST port (0 = any free port)")
    p.add_argument("--ws-port", type=int, default=0, help="WebSocket port (0 = any free port)")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed multiplier; 0 = as fast as possible")
    p.add_argument("--no-loop", action="store_true", help="stop the replay at the end of the feed")
    p.add_argument("--faults", metavar="SPEC",
                   help="faults to arm: 'kind:k=v,k=v;kind2' or a TOML file with [faults.<kind>] tables")
    p.add_argument("--secrets", metavar="FILE",
                   help="TOML file (chmod 600) with [[account]] tables (api_key, secret, balance, maker_fee, "
                        f"taker_fee, leverage) and admin_token; or set {ACCOUNTS_ENV}=KEY:SECRET[:BALANCE],... "
                        f"and {ADMIN_TOKEN_ENV}. Without any account, {DEFAULT_KEY}/{DEFAULT_SECRET} exists")
    p.add_argument("--account", action="append", metavar="KEY:SECRET[:BALANCE]",
                   help="an account on the command line (visible to every local user in ps: prefer --secrets)")
    p.add_argument("--admin", action="store_true",
                   help="serve the /_emu/... admin plane (faults, state, accounts) to requests carrying the "
                        f"{ADMIN_HEADER} header; the token comes from {ADMIN_TOKEN_ENV} or --secrets")
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
    p.add_argument("--queue", default="risk_averse", metavar="MODEL",
                   help="queue position model of the matching (the backtest's): risk_averse (default), "
                        "power_prob:N, power_prob2:N, power_prob3:N, log_prob, log_prob2")
    p.add_argument("--exchange", default="partial_fill", choices=("partial_fill", "no_partial_fill"),
                   help="exchange model of the matching (default partial_fill)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)


def _secrets(args: argparse.Namespace) -> tuple[str | None, list[dict]]:
    """(admin token if the admin plane is enabled, accounts) from --secrets, the environment and --account."""
    import logging

    from ..errors import ConfigError
    from .admin import load_secrets, parse_account_spec

    token, accounts = load_secrets(args.secrets)
    if args.account:
        logging.getLogger("hftbacktest.emulator").warning(
            "--account puts a secret on the command line, where other local users can read it; use --secrets or "
            "%s", ACCOUNTS_ENV)
        accounts += [parse_account_spec(spec, "--account") for spec in args.account]
    if args.admin and token is None:
        raise ConfigError(f"--admin needs a token: set {ADMIN_TOKEN_ENV} or admin_token in the --secrets file")
    keys = [a["api_key"] for a in accounts]
    if len(set(keys)) != len(keys):
        raise ConfigError("two accounts with the same API key (accounts are never replaced)")
    return (token if args.admin else None), accounts or [{"api_key": DEFAULT_KEY, "secret": DEFAULT_SECRET}]


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
                            order_latency_ms=args.order_latency_ms, queue=args.queue, exchange=args.exchange)
    config.admin_token, accounts = _secrets(args)

    async def main() -> None:
        emu = Emulator(args.market, config=config, faults=args.faults, rest_port=args.port, ws_port=args.ws_port)
        await emu.serve()
        for a in accounts:
            emu.venue.add_account(a["api_key"], a["secret"], a.get("balance", 10_000.0),
                                  a.get("maker_fee", config.maker_fee), a.get("taker_fee", config.taker_fee),
                                  a.get("leverage"))
        print(f"REST {emu.rest_url}", flush=True)
        print(f"WS   {emu.ws_url}", flush=True)
        admin = "admin plane on" if config.admin_token else "admin plane off"
        print(f"symbols {' '.join(emu.streams)}; accounts {' '.join(a['api_key'] for a in accounts)}; {admin}",
              flush=True)
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
