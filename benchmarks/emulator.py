"""Emulator throughput on this machine: market-stream fan-out (messages/s delivered to N clients), REST
orders/s (place + cancel round trips), one client's order round trip (place -> reply) over REST and over the
WebSocket API, p50/p99, and the venue's own cost of a place + cancel in process (no network). The reference
hftbacktest has no emulator, so these are absolute numbers.

    .venv/bin/python benchmarks/emulator.py [--clients 1 4 16] [--seconds 5] [--rest-workers 4] [--orders 300]
        [--python PY ...] [--rounds N]

The emulator runs as a real `hftbacktest emulator` process replaying the BTCUSDT sample as fast as it can
(`--speed 0`) for the fan-out, at real time (`--speed 1`) for the orders; the clients run in this process
(aiohttp), so both sides share the machine's cores. `--python` names interpreters whose `hftbacktest` runs the
emulator (e.g. another checkout's venv, to compare two versions); with `--rounds N` every interpreter is measured
N times, interleaved (A B B A ...) so the box's load falls on all alike, and the medians are printed with the
load average before and after.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
FEED = ROOT.parent / "shared" / "data" / "binance-usdm" / "btcusdt_20240808.gz"
STREAMS = "btcusdt@depth@0ms/btcusdt@trade/btcusdt@bookTicker"


def start_emulator(python: str, speed: str) -> tuple[subprocess.Popen, str, str]:
    cmd = [python, "-m", "hftbacktest.cli", "emulator", "--market", str(FEED), "--speed", speed,
           "--weight-limit", "1000000000",
           "--order-limit-10s", "1000000000", "--order-limit-1m", "1000000000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1",
                                 "HFTBACKTEST_EMU_ACCOUNTS": "bench:bench-secret:100000000"})
    rest = proc.stdout.readline().split()[1]
    ws = proc.stdout.readline().split()[1]
    return proc, rest, ws


def stop(proc: subprocess.Popen) -> None:
    """Ctrl-C, as a user stops it; killed if it has not exited 30 s later (a replay at full speed on a loaded box
    can be slow to wind down)."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


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


def in_process(pairs: int = 5000, repeats: int = 7) -> float:
    """The venue's CPU time (thread time, us) per place + cancel of a GTX bid resting below a 200-level book,
    best of `repeats` batches: validation, bookkeeping, user-stream payloads and matching, no network."""
    import timeit

    from hftbacktest.emulator import market as mk
    from hftbacktest.emulator.matching import Venue

    spec = mk.KNOWN_SYMBOLS["BTCUSDT"]
    venue = Venue([spec], now_ms=lambda: int(time.time() * 1000))
    account = venue.add_account("bench", "bench-secret", balance=1e8)
    market = venue.markets["BTCUSDT"]
    mid = 600_000
    levels = [(side, mid - side * i, 1000 + i) for i in range(1, 200) for side in (mk.BID, mk.ASK)]
    for side, tick, lots in levels:
        market.book.set(side, tick, lots)
    if hasattr(venue, "on_depth"):  # a venue with a matching core hears of book changes (an older one reads the book)
        venue.on_depth(market, levels)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTX", "quantity": "0.002",
             "price": spec.fmt_price(mid - 500)}
    n = iter(range(10**9))

    def pair() -> None:
        cid = f"p{next(n)}"
        venue.place_order(account, {**order, "newClientOrderId": cid})
        venue.cancel_order(account, {"symbol": "BTCUSDT", "origClientOrderId": cid})

    return min(timeit.repeat(pair, timer=time.thread_time, number=pairs, repeat=repeats)) / pairs * 1e6


def measure(python: str, args) -> dict[str, float]:
    """Every figure with the emulator of `python`: name -> value."""
    out: dict[str, float] = {}
    proc, rest, ws = start_emulator(python, "0")
    try:
        for n in args.clients:
            out[f"fan-out {n} clients (msg/s)"] = asyncio.run(fan_out(ws, n, args.seconds))
    finally:
        stop(proc)
    proc, rest, ws = start_emulator(python, "1")  # orders with the market replaying at real time
    try:
        out[f"REST {args.rest_workers} workers (place+cancel/s)"] = asyncio.run(
            rest_orders(rest, args.rest_workers, args.seconds))
        for name, times in asyncio.run(order_round_trips(rest, ws, args.orders)).items():
            times.sort()
            out[f"{name} order p50 (ms)"] = times[len(times) // 2] * 1e3
            out[f"{name} order p99 (ms)"] = times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3
    finally:
        stop(proc)
    run = subprocess.run([python, __file__, "--in-process"], capture_output=True, text=True, check=True)
    out["in-process place+cancel (us)"] = float(run.stdout.strip())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rest-workers", type=int, default=4)
    ap.add_argument("--orders", type=int, default=300, help="sequential orders per transport for the round trip")
    ap.add_argument("--python", nargs="+", default=[sys.executable],
                    help="interpreters whose hftbacktest runs the emulator (default: this one)")
    ap.add_argument("--rounds", type=int, default=1, help="measure every interpreter this many times, interleaved")
    ap.add_argument("--json", help="also write every measurement to this file")
    ap.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # one figure, for measure()
    args = ap.parse_args()
    if args.in_process:
        print(f"{in_process():.3f}")
        return 0
    if not FEED.exists():
        print(f"sample feed not found: {FEED}", file=sys.stderr)
        return 1
    load_before = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores; feed {FEED.name}; load average {load_before[0]:.1f} "
          f"{load_before[1]:.1f} {load_before[2]:.1f}", flush=True)
    runs: dict[str, list[dict[str, float]]] = {py: [] for py in args.python}
    for r in range(args.rounds):
        for py in (args.python if r % 2 == 0 else args.python[::-1]):
            runs[py].append(measure(py, args))
            print(f"round {r + 1} {py}: " + ", ".join(f"{k} {v:.4g}" for k, v in runs[py][-1].items()), flush=True)
    load_after = os.getloadavg()
    names = list(runs[args.python[0]][0])
    print(f"\nmedians of {args.rounds} round(s); load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    for i, py in enumerate(args.python, 1):
        print(f"[{i}] {py}")
    cols = [f"[{i}]" for i in range(1, len(args.python) + 1)]
    print(f"{'figure':36s}" + "".join(f"{c:>10s}" for c in cols) + (f"  [{len(cols)}] vs [1]" if len(cols) > 1 else ""))
    for name in names:
        cells = [statistics.median(run[name] for run in runs[py]) for py in args.python]
        ratio = f"  {cells[-1] / cells[0] - 1:+8.0%}" if len(cells) > 1 and cells[0] else ""
        print(f"{name:36s}" + "".join(f"{c:10.4g}" for c in cells) + ratio)
    if args.json:
        from hftbacktest._atomic import atomic_write_bytes

        atomic_write_bytes(args.json, json.dumps({"load_before": load_before, "load_after": load_after,
                                                  "runs": runs}, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
