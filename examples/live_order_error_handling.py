"""Live order error handling: react to rejections, connection trouble and a dying connector.

    python examples/live_order_error_handling.py --connector bf --symbol btcusdt --seconds 30

The error handler runs in Python between the strategy's waits. Here it counts order rejections (the connector
forwards Binance's code and message, e.g. -5022 when a post-only order would take liquidity), logs interruptions
(the connector reconnects and rebuilds the book by itself) and stops the strategy on a critical error by raising
BotError: the strategy's current wait then returns 19 and the loop ends. A run stopped by a critical error (e.g. no
connector running: "connector silent") exits with code 1.
"""
from __future__ import annotations

import argparse
import logging
import sys

import numpy as np
from numba import njit

from hftbacktest import BUY, GTX, LIMIT
from hftbacktest.live import BotError, ErrorKind, Instrument, LiveBotBuilder

log = logging.getLogger("example")


class ErrorPolicy:
    def __init__(self, max_rejections: int):
        self.rejections = 0
        self.max_rejections = max_rejections
        self.critical = None  # the critical error that stopped the run

    def __call__(self, err):
        if err.kind == ErrorKind.OrderError:
            self.rejections += 1
            code = err.value.get("code") if isinstance(err.value, dict) else None
            log.warning("order rejected (%s): %s", code, err.value)
            if self.rejections >= self.max_rejections:
                raise BotError(f"{self.rejections} rejections: stopping")
        elif err.kind == ErrorKind.ConnectionInterrupted:
            log.warning("connection interrupted, connector is recovering: %s", err.value)
        elif err.kind == ErrorKind.CriticalConnectionError:
            self.critical = err
            raise BotError(f"critical: {err.value}")
        else:
            log.info("connector notice %s", err)


@njit(cache=True)
def join_best_bid(hbt, max_steps):
    """Keep one post-only buy at the best bid; a rejected order simply expires and is placed again."""
    order_id = 1
    steps = 0
    while steps < max_steps:
        rc = hbt.elapse(200_000_000)
        if rc != 0:
            return rc  # 1: stopped by a signal, 19: the error handler raised
        steps += 1
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        if not np.isfinite(depth.best_bid):
            continue
        orders = hbt.orders(0)
        if len(orders) == 0:
            order_id += 1
            hbt.submit_buy_order(0, order_id, depth.best_bid, 0.002, GTX, LIMIT, False)
        else:
            it = orders.values()
            while it.has_next():
                o = it.get()
                if o.side == BUY and o.cancellable and o.price_tick != depth.best_bid_tick:
                    hbt.cancel(0, o.order_id, False)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connector", default="bf")
    p.add_argument("--symbol", default="btcusdt")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--max-rejections", type=int, default=20)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    policy = ErrorPolicy(args.max_rejections)
    hbt = LiveBotBuilder().register(Instrument(args.connector, args.symbol, 0.1, 0.001)).error_handler(policy).build()
    try:
        rc = join_best_bid(hbt, int(args.seconds * 5))
    finally:
        hbt.close()
    print(f"finished with code {rc}; {policy.rejections} rejections")
    if policy.critical is not None:
        print(f"error: stopped by {policy.critical}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
