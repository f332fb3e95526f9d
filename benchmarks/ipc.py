"""IPC hop latency: bot -> connector -> bot over the real channel classes and codec.

A child process plays the connector's request loop (receive a request, answer with an order event
addressed to the sender); the parent plays a bot that busy-polls. Prints p50/p90/p99 of the round trip
and the one-way estimate (round trip / 2). Target: one-way p99 <= 50 us. Then the LiveBot's own cost inside an
@njit strategy: µs per `elapse(0)` (an idle poll) and per order request.
The reference hftbacktest 2.4.4 has no Python live bot, so there is no reference ratio to print.

    .venv/bin/python benchmarks/ipc.py [--n 20000]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np


def _connector(name: str, ready, n_total: int) -> None:
    from hftbacktest.live.ipc import ConnectorChannel
    from hftbacktest.live.ipc import codec

    ch = ConnectorChannel(name)
    ready.set()
    served = 0
    while served < n_total:
        got = ch.recv()
        if got is None:
            continue
        bot_id, payload = got
        req = codec.decode_request(payload)
        if isinstance(req, codec.OrderRequest):
            ch.send(bot_id, codec.encode_event(codec.OrderUpdate(req.symbol, req.order)))
            served += 1
    ch.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--no-bot", action="store_true", help="skip the LiveBot elapse/submit measurement")
    args = parser.parse_args()

    from hftbacktest.live.ipc import BotChannel
    from hftbacktest.live.ipc import codec

    name = f"ipcbench{os.getpid()}"
    ready = mp.get_context("spawn").Event()
    proc = mp.get_context("spawn").Process(target=_connector, args=(name, ready, args.n + args.warmup))
    proc.start()
    ready.wait(30)
    bot = BotChannel(name, 7)
    order = codec.WireOrder(0.001, 0.001, 0.0, 0, 600000, 0.1, 0, 0, 42, False, 0, 1, 1, 1, 1)
    rtts = np.empty(args.n, np.int64)
    for i in range(args.warmup + args.n):
        t0 = time.perf_counter_ns()
        bot.send(codec.encode_request(codec.OrderRequest("btcusdt", order)))
        while (payload := bot.recv()) is None:
            pass
        codec.decode_event(payload)
        if i >= args.warmup:
            rtts[i - args.warmup] = time.perf_counter_ns() - t0
    proc.join(10)
    bot.close()
    us = rtts / 1000.0
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    print(f"iceoryx2 bot->connector->bot round trip over {args.n} msgs (codec included):")
    print(f"  RTT     p50 {p50:7.1f} us  p90 {p90:7.1f} us  p99 {p99:7.1f} us  mean {us.mean():7.1f} us")
    print(f"  one-way p50 {p50 / 2:7.1f} us  p90 {p90 / 2:7.1f} us  p99 {p99 / 2:7.1f} us  (target p99 <= 50 us)")
    if not args.no_bot:
        bot_overhead()


def bot_overhead(n: int = 20_000) -> None:
    """µs per `elapse(0)` and per order request inside an @njit strategy (a connector channel in-process)."""
    from numba import njit

    from hftbacktest import GTX, LIMIT
    from hftbacktest.live import Instrument, LiveBotBuilder
    from hftbacktest.live.ipc import ConnectorChannel

    @njit
    def elapse_loop(hbt, n):
        s = 0.0
        for _ in range(n):
            hbt.elapse(0)
            s += hbt.depth(0).best_bid_tick
        return s

    @njit
    def submit_loop(hbt, n):
        for i in range(n):
            hbt.submit_buy_order(0, i + 1, 100.0, 0.001, GTX, LIMIT, False)
        return n

    name = f"botbench{os.getpid()}"
    con = ConnectorChannel(name)
    hbt = LiveBotBuilder().register(Instrument(name, "btcusdt", 0.1, 0.001)).busy_poll().build()
    elapse_loop(hbt, 10)
    submit_loop(hbt, 1)
    t0 = time.perf_counter()
    elapse_loop(hbt, n)
    t1 = time.perf_counter()
    submit_loop(hbt, 2000)
    t2 = time.perf_counter()
    while con.recv() is not None:
        pass
    print(f"LiveBot inside @njit: elapse(0) {(t1 - t0) / n * 1e6:.2f} us, submit request {(t2 - t1) / 2000 * 1e6:.2f} us")
    hbt.close()
    con.close()


if __name__ == "__main__":
    main()
