"""Grid trading: one `@njit` strategy, run as a backtest on converted data or live through a connector.

    # backtest on a raw Binance USD-M file (converted on the fly) or an already converted .npz
    hftbacktest generate binancefutures --symbol BTCUSDT --minutes 10 --seed 1 -o feed.gz
    python examples/gridtrading.py backtest --data feed.gz

    # live: start the emulator and a connector named `bf` first (see docs/live.md), then
    python examples/gridtrading.py live --connector bf --symbol btcusdt --seconds 60 --latency-log latency.jsonl

The strategy keeps `grid_num` post-only orders per side, `grid_interval` ticks apart, starting `half_spread`
ticks from the mid price, and stops quoting the side that would grow the position beyond `max_position`.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from numba import njit, uint64
from numba.typed import Dict

from hftbacktest import BUY, GTX, LIMIT, NEW, PARTIALLY_FILLED, SELL


@njit(cache=True)
def gridtrading(hbt, recorder, max_steps, step_ns, grid_num, grid_interval_ticks, half_spread_ticks, order_qty,
                max_position):
    """Returns the number of completed steps. Ends at `max_steps`, or when the data ends / the bot is stopped."""
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    steps = 0
    while steps < max_steps and hbt.elapse(step_ns) == 0:
        steps += 1
        hbt.clear_inactive_orders(asset_no)
        depth = hbt.depth(asset_no)
        if not (np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask)):
            continue  # no book yet
        mid_tick = (depth.best_bid_tick + depth.best_ask_tick) / 2.0
        position = hbt.position(asset_no)

        # The grid is aligned to multiples of the interval so it does not move with every tick of the mid.
        top_bid = np.floor((mid_tick - half_spread_ticks) / grid_interval_ticks) * grid_interval_ticks
        top_ask = np.ceil((mid_tick + half_spread_ticks) / grid_interval_ticks) * grid_interval_ticks
        wanted_bids = Dict.empty(uint64, np.float64)
        wanted_asks = Dict.empty(uint64, np.float64)
        for i in range(grid_num):
            if position < max_position:
                t = top_bid - i * grid_interval_ticks
                wanted_bids[uint64(t)] = t * tick_size
            if position > -max_position:
                t = top_ask + i * grid_interval_ticks
                wanted_asks[uint64(t)] = t * tick_size

        orders = hbt.orders(asset_no)
        it = orders.values()
        while it.has_next():
            order = it.get()
            if not order.cancellable:
                continue
            if order.side == BUY and order.order_id not in wanted_bids:
                hbt.cancel(asset_no, order.order_id, False)
            elif order.side == SELL and order.order_id not in wanted_asks:
                hbt.cancel(asset_no, order.order_id, False)

        # Order id = price tick: one order per grid level, never two at the same price.
        for order_id, price in wanted_bids.items():
            if order_id not in orders:
                hbt.submit_buy_order(asset_no, order_id, price, order_qty, GTX, LIMIT, False)
        for order_id, price in wanted_asks.items():
            if order_id not in orders:
                hbt.submit_sell_order(asset_no, order_id, price, order_qty, GTX, LIMIT, False)
        recorder.record(hbt)
    return steps


def cancel_open_orders(hbt, asset_no, timeout_s=10.0) -> int:
    """Orders outlive the bot at the exchange: cancel them before closing. An order whose request is still in
    flight (code 11) is cancelled once its answer arrives. Returns how many are still open at the deadline."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        open_ids = []
        it = hbt.orders(asset_no).values()
        while it.has_next():
            order = it.get()
            if order.status in (NEW, PARTIALLY_FILLED):
                open_ids.append(int(order.order_id))
        if not open_ids or time.monotonic() > deadline:
            return len(open_ids)
        for order_id in open_ids:
            hbt.cancel(asset_no, order_id, False)  # 11 while a request for it is in flight: retried below
        hbt.wait_next_feed(True, 100_000_000)  # until an order response (or a feed event) arrives


def _backtest(args) -> int:
    import os
    import tempfile

    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, Recorder

    data = args.data
    if data.endswith(".gz"):
        from hftbacktest.data.utils import binancefutures

        out = os.path.join(tempfile.mkdtemp(), "converted.npz")
        binancefutures.convert(data, output_filename=out, combined_stream=True)
        data = out
    asset = (
        BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .constant_order_latency(args.entry_latency_ns, args.response_latency_ns)
        .power_prob_queue_model(2.0)
        .no_partial_fill_exchange()
        .trading_value_fee_model(-0.00005, 0.0007)
        .tick_size(args.tick)
        .lot_size(args.lot)
    )
    if args.latency_npz:
        asset = asset.intp_order_latency([args.latency_npz])
    hbt = HashMapMarketDepthBacktest([asset])
    recorder = Recorder(1, 1_000_000)
    steps = gridtrading(hbt, recorder.recorder, 2**62, args.step_ms * 1_000_000, args.grid_num, args.interval,
                        args.half_spread, args.qty, args.max_position)
    sv = hbt.state_values(0)
    print(f"backtest: {steps} steps, position {sv.position:.6f}, trades {sv.num_trades}, balance {sv.balance:.4f}")
    hbt.close()
    if args.out:
        recorder.to_npz(args.out)
    return 0


def _live(args) -> int:
    import logging

    from hftbacktest import Recorder
    from hftbacktest.live import (
        BotError, ErrorKind, HashMapMarketDepth, Instrument, LiveBotBuilder, OrderLatencyLogger,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    critical = []

    def on_error(err):
        if err.kind == ErrorKind.CriticalConnectionError:
            critical.append(err)
            raise BotError(str(err))  # stop quoting blind: the running wait returns 19
        if err.kind != ErrorKind.Custom:
            logging.warning("%s", err)

    builder = (
        LiveBotBuilder()
        .register(Instrument(args.connector, args.symbol, args.tick, args.lot, HashMapMarketDepth(args.tick, args.lot)))
        .error_handler(on_error)
    )
    if args.latency_log:
        builder = builder.order_recorder(OrderLatencyLogger(args.latency_log))
    hbt = builder.build()
    recorder = Recorder(1, 1_000_000)
    max_steps = int(args.seconds * 1000 / args.step_ms)
    try:
        steps = gridtrading(hbt, recorder.recorder, max_steps, args.step_ms * 1_000_000, args.grid_num,
                            args.interval, args.half_spread, args.qty, args.max_position)
        left = cancel_open_orders(hbt, 0)
        print(f"live: {steps} steps, position {hbt.position(0):.6f}, {left} orders still open")
    finally:
        hbt.close()
    if args.out:
        recorder.to_npz(args.out)
    if critical:
        print(f"error: live run stopped by {critical[0]}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", choices=["backtest", "live"], default="backtest")
    p.add_argument("--live", action="store_true", help=argparse.SUPPRESS)  # older spelling of the `live` mode
    p.add_argument("--data", help="backtest: raw .gz or converted .npz")
    p.add_argument("--latency-npz", help="backtest: order latency file from `python -m hftbacktest.live.latency`")
    p.add_argument("--entry-latency-ns", type=int, default=10_000_000)
    p.add_argument("--response-latency-ns", type=int, default=10_000_000)
    p.add_argument("--connector", default="bf", help="live: the connector's --name")
    p.add_argument("--symbol", default="btcusdt")
    p.add_argument("--seconds", type=float, default=60.0, help="live: how long to trade")
    p.add_argument("--latency-log", help="live: append order latencies to this JSONL file")
    p.add_argument("--tick", type=float, default=0.1)
    p.add_argument("--lot", type=float, default=0.001)
    p.add_argument("--step-ms", type=int, default=100)
    p.add_argument("--grid-num", type=int, default=5)
    p.add_argument("--interval", type=int, default=10, help="grid interval, ticks")
    p.add_argument("--half-spread", type=int, default=20, help="ticks from mid to the first level")
    p.add_argument("--qty", type=float, default=0.002)
    p.add_argument("--max-position", type=float, default=0.02)
    p.add_argument("--out", help="save the recorder to this .npz (for hftbacktest.stats / `hftbacktest report`)")
    args = p.parse_args(argv)
    if args.live:
        args.mode = "live"
    if args.mode == "backtest":
        if not args.data:
            p.error("backtest needs --data")
        return _backtest(args)
    return _live(args)


if __name__ == "__main__":
    from hftbacktest.cli import run

    sys.exit(run(main))  # bad input: one line `error: ...` and exit code 1, not a traceback
