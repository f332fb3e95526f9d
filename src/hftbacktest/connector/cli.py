"""`connector --name bf --connector binancefutures --config binancefutures.toml` (flags or positional)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

CONNECTORS = ("binancefutures",)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="connector", description="Run a live exchange connector bots reach over IPC.")
    p.add_argument("pos", nargs="*", metavar="NAME CONNECTOR CONFIG", help="positional form of the three flags")
    p.add_argument("--name", help="IPC name; bots use it as the connector name of their instruments")
    p.add_argument("--connector", help="exchange module: " + ", ".join(CONNECTORS))
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    positional = list(args.pos)
    for key in ("name", "connector", "config"):
        if getattr(args, key) is None and positional:
            setattr(args, key, positional.pop(0))
    if positional or None in (args.name, args.connector, args.config):
        parser.error("give --name, --connector and --config (or the three positionally)")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    log = logging.getLogger("hftbacktest.connector")
    if args.connector not in CONNECTORS:
        log.error("unknown connector %r (available: %s)", args.connector, ", ".join(CONNECTORS))
        return 1
    from ..errors import HftBacktestError
    from .config import load_config
    from .journal import JournalingConnector
    from .paper import PaperConnector, load_paper

    try:
        cfg = load_config(args.config)
        paper = load_paper(args.config)
        connector = PaperConnector(args.name, cfg, paper) if paper else JournalingConnector(args.name, cfg)
        return asyncio.run(connector.run())
    except HftBacktestError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
