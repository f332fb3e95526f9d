"""Emulator throughput on this machine: market-stream fan-out (messages/s delivered to N clients), REST
orders/s (place + cancel round trips), and one client's order round trip (place -> reply) over REST and over the
WebSocket API, p50/p99. The reference hftbacktest has no emulator, so these are absolute numbers.

    .venv/bin/python benchmarks/emulator.py [--clients 1 4 16] [--seconds 5] [--rest-workers 4] [--orders 300]

The emulator runs as a real `hftbacktest emulator` process replaying the BTCUSDT sample as fast as it can
(`--speed 0`); the clients run in this process (aiohttp), so both sides share the machine's cores.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
FEED = ROOT.parent / "shared" / "data" / "binance-usdm" / "btcusdt_20240808.gz"
STREAMS = "btcusdt@depth@0ms/btcusdt@trade/btcusdt@bookTicker"


def start_emulator(speed: str) -> tuple[subprocess.Popen, str, str]:
    cmd = [sys.executable, "-m", "hftbacktest.cli", "emulator", "--market", str(FEED), "--speed", speed,
           "--weight-limit", "1000000000",
           "--order-limit-10s", "1000000000", "--order-limit-1m", "1000000000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1",
                                 "HFTBACKTEST_EMU_ACCOUNTS": "bench:bench-secret:100000000"})
    rest = proc.stdout.readline().split()[1]
    ws = proc.stdout.readline().split()[1]
    return proc, rest, ws


async def fan_out(ws_url: str, clients: int, seconds: float) -> float:
    base = ws_url.rsplit("/ws", 1)[0]
    counts = [0] * clients
    stop = asyncio.Event()

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{base}/stream?streams={STREAMS}") as ws:
            await ws.receive()
            ready.append(i)
            while not stop.is_set():
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                if measuring:
                    counts[i] += 1

    ready: list[int] = []
    measuring = False
    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(client(i, session)) for i in range(clients)]
        while len(ready) < clients:
            await asyncio.sleep(0.05)
        measuring = True
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        measuring = False
        elapsed = time.perf_counter() - t0
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return sum(counts) / elapsed


async def rest_orders(rest_url: str, workers: int, seconds: float) -> float:
    def signed(params: dict) -> str:
        params = dict(params, timestamp=int(time.time() * 1000), recvWindow=5000)
        q = urlencode(params)
        return q + "&signature=" + hmac.new(b"bench-secret", q.encode(), hashlib.sha256).hexdigest()

    headers = {"X-MBX-APIKEY": "bench", "Content-Type": "application/x-www-form-urlencoded"}
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int, session: aiohttp.ClientSession) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            cid = f"b{w}-{n}"
            n += 1
            async with session.post(rest_url + "/fapi/v1/order", headers=headers, data=signed({
                    "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTX", "quantity": "0.002",
                    "price": "58800.0", "newClientOrderId": cid})) as r:
                assert r.status == 200, await r.text()
            async with session.delete(rest_url + "/fapi/v1/order?" + signed({"symbol": "BTCUSDT",
                                                                               "origClientOrderId": cid}),
                                      headers=headers) as r:
                assert r.status == 200, await r.text()
            done += 1

    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(w, session) for w in range(workers)))
    return done / (time.perf_counter() - t0)


def _signed(params: dict) -> dict:
    params = dict(params, apiKey="bench", timestamp=int(time.time() * 1000))
    params["signature"] = hmac.new(b"bench-secret", urlencode(sorted(params.items())).encode(),
                                   hashlib.sha256).hexdigest()
    return params


async def order_round_trips(rest_url: str, ws_url: str, n: int) -> dict[str, list[float]]:
    """Sequential place + cancel from one client; the time from sending a placement to its reply, per transport."""
    out: dict[str, list[float]] = {"REST": [], "WS API": []}
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.002",
             "price": "58800.0"}
    headers = {"X-MBX-APIKEY": "bench", "Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            body = urlencode({**order, "newClientOrderId": f"r{i}", "timestamp": int(time.time() * 1000)})
            body += "&signature=" + hmac.new(b"bench-secret", body.encode(), hashlib.sha256).hexdigest()
            t0 = time.perf_counter()
            async with session.post(rest_url + "/fapi/v1/order", headers=headers, data=body) as r:
                await r.read()
            out["REST"].append(time.perf_counter() - t0)
            q = urlencode({"symbol": "BTCUSDT", "origClientOrderId": f"r{i}", "timestamp": int(time.time() * 1000)})
            q += "&signature=" + hmac.new(b"bench-secret", q.encode(), hashlib.sha256).hexdigest()
            async with session.delete(rest_url + "/fapi/v1/order?" + q, headers=headers) as r:
                await r.read()
        async with session.ws_connect(ws_url.rsplit("/ws", 1)[0] + "/ws-fapi/v1") as ws:
            for i in range(n):
                t0 = time.perf_counter()
                await ws.send_json({"id": i, "method": "order.place",
                                    "params": _signed({**order, "newClientOrderId": f"w{i}"})})
                reply = await ws.receive_json()
                out["WS API"].append(time.perf_counter() - t0)
                assert reply["status"] == 200, reply
                await ws.send_json({"id": -i - 1, "method": "order.cancel",
                                    "params": _signed({"symbol": "BTCUSDT", "origClientOrderId": f"w{i}"})})
                await ws.receive_json()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rest-workers", type=int, default=4)
    ap.add_argument("--orders", type=int, default=300, help="sequential orders per transport for the round trip")
    args = ap.parse_args()
    if not FEED.exists():
        print(f"sample feed not found: {FEED}", file=sys.stderr)
        return 1
    print(f"machine: {os.cpu_count()} cores; feed {FEED.name}; emulator replaying at --speed 0")
    proc, rest, ws = start_emulator("0")
    try:
        for n in args.clients:
            rate = asyncio.run(fan_out(ws, n, args.seconds))
            print(f"fan-out  {n:3d} clients: {rate:10.0f} messages/s delivered ({rate / n:8.0f} per client)")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    proc, rest, ws = start_emulator("1")  # REST alone, with the market replaying at real time
    try:
        rate = asyncio.run(rest_orders(rest, args.rest_workers, args.seconds))
        print(f"REST     {args.rest_workers} workers: {rate:10.0f} place+cancel round trips/s "
              f"({2 * rate:.0f} signed requests/s)")
        for name, times in asyncio.run(order_round_trips(rest, ws, args.orders)).items():
            times.sort()
            p50, p99 = times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
            print(f"order round trip {name:6s}: p50 {p50 * 1e3:6.2f} ms  p99 {p99 * 1e3:6.2f} ms  ({len(times)} orders)")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
