"""IPC hop latency: bot -> connector -> bot over the real channel classes and codec.

A child process plays the connector's request loop (receive a request, answer with an order event
addressed to the sender); the parent plays a bot that busy-polls. Prints p50/p90/p99 of the round trip
and the one-way estimate (round trip / 2). Target: one-way p99 <= 50 us.
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


if __name__ == "__main__":
    main()
