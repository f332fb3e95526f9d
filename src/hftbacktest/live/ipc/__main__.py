"""`python -m hftbacktest.live.ipc cleanup [--name N] [--force]`: reclaim IPC resources left by crashed processes."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hftbacktest.live.ipc")
    sub = parser.add_subparsers(dest="command", required=True)
    clean = sub.add_parser("cleanup", help="remove shared memory of dead connector/bot processes")
    clean.add_argument("--name", help="connector IPC name whose services to remove (with --force)")
    clean.add_argument("--force", action="store_true", help="remove the services even if a process might use them")
    args = parser.parse_args(argv)
    from . import cleanup

    result = cleanup(args.name, args.force)
    print(f"dead nodes: {result['dead_nodes']}; removed services: {result['removed_services'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
