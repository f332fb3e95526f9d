"""The connector's order round trip on loopback, REST vs WebSocket API order transport: the time from a bot's
`submit_buy_order(..., wait=True)` (and `cancel(..., wait=True)`) to the exchange's answer reaching that bot,
through the LiveBot, IPC, the connector and the emulator, p50/p99 per transport and request; then the
connector's transport alone (`BinanceRest` vs `WsOrderApi`, place -> reply, in this process).

    .venv/bin/python benchmarks/ws_orders.py [--orders 300]

One emulator process (synthetic BTCUSDT) and two connector processes, one per transport, run side by side; a
bot per connector places a resting GTX bid and cancels it, alternating between the two bots order by order, so
both transports see the same machine load. Box load (1-minute load average) is printed with the figures.
The bot's answer is whichever comes first: the request's reply or the user stream's NEW / CANCELED event.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class Proc:
    def __init__(self, args: list[str], env: dict | None = None):
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.p.stdout:
            self.log.append(line)
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 120.0, start: bool = False) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                if self.p.poll() is not None:
                    break
                continue
            if line.startswith(text) if start else text in line:
                return line
        raise RuntimeError(f"never saw {text!r}; output:\n{''.join(self.log[-20:])}")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def start_connector(tmp: Path, name: str, rest: str, ws: str, transport: str) -> Proc:
    cfg = tmp / f"{name}.toml"
    extra = f'order_transport = "ws"\nws_api_url = "{ws.rsplit("/ws", 1)[0]}/ws-fapi/v1"\n' if transport == "ws" else ""
    cfg.write_text(f'stream_url = "{ws}"\napi_url = "{rest}"\norder_prefix = "b{transport}-"\n'
                   f'api_key = "bench"\nsecret = "bench-secret"\n{extra}'
                   # the emulator's limits are lifted; so are the connector's "rate limit near" notices
                   'rate_limit_orders_10s = 1000000000\nrate_limit_orders_1m = 1000000000\n')
    cfg.chmod(0o600)
    proc = Proc([sys.executable, "-m", "hftbacktest.connector", "--name", name, "--connector", "binancefutures",
                 "--config", str(cfg)])
    proc.wait_for(f"connector {name!r} up")
    if transport == "ws":
        proc.wait_for("order WebSocket API connected")
    return proc


async def transport_round_trips(rest: str, ws: str, price: float, n: int) -> dict[str, list[float]]:
    """The connector's transport classes alone (signing, aiohttp, the emulator): place -> reply, per transport."""
    import aiohttp

    from hftbacktest.connector.config import ConnectorConfig
    from hftbacktest.connector.rest import BinanceRest
    from hftbacktest.connector.ws_orders import WsOrderApi

    class Backoff:
        failures = 0

        def healthy_since(self):
            pass

        def next_delay(self):
            return 0.1

    cfg = ConnectorConfig.from_mapping({"stream_url": ws, "api_url": rest, "api_key": "bench", "secret": "bench-secret",
                                        "order_transport": "ws", "ws_api_url": ws.rsplit("/ws", 1)[0] + "/ws-fapi/v1"})
    out: dict[str, list[float]] = {"rest": [], "ws": []}
    async with aiohttp.ClientSession() as session:
        client = BinanceRest(cfg)
        api = WsOrderApi(cfg, client)
        task = asyncio.get_running_loop().create_task(api.run(session, Backoff()))
        assert await api.wait_up(30)
        try:
            for i in range(n):
                for t in ("rest", "ws"):
                    send = (lambda m, p: client.request(m, "/fapi/v1/order", p, signed=True)) if t == "rest" else \
                        (lambda m, p: api.send(m, "/fapi/v1/order", p))
                    cid = f"t{t}{i}"
                    t0 = time.perf_counter()
                    reply = await send("POST", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                "timeInForce": "GTX", "quantity": "0.002", "price": f"{price:.1f}",
                                                "newClientOrderId": cid})
                    out[t].append(time.perf_counter() - t0)
                    assert reply.ok, reply
                    assert (await send("DELETE", {"symbol": "BTCUSDT", "origClientOrderId": cid})).ok
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=300, help="place + cancel round trips per transport")
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    from hftbacktest import GTX, LIMIT
    from hftbacktest.live import HashMapMarketDepth, Instrument, LiveBotBuilder

    emu = Proc([sys.executable, "-m", "hftbacktest.cli", "emulator", "--market", "synthetic:BTCUSDT", "--seed", "7",
                "--weight-limit", "1000000000", "--order-limit-10s", "1000000000", "--order-limit-1m", "1000000000"],
               {"HFTBACKTEST_EMU_ACCOUNTS": "bench:bench-secret:100000000"})
    procs = [emu]
    bots = {}
    try:
        rest = emu.wait_for("REST ", start=True).split()[1]
        ws = emu.wait_for("WS ", start=True).split()[1]
        tmp = Path(tempfile.mkdtemp(prefix="ws_orders_bench"))
        transports = ("rest", "ws")
        for t in transports:
            name = f"wsob{t}{os.getpid()}"
            procs.append(start_connector(tmp, name, rest, ws, t))
            bots[t] = (LiveBotBuilder()
                       .register(Instrument(name, "btcusdt", 0.1, 0.001, HashMapMarketDepth(0.1, 0.001)))
                       .build())
        for hbt in bots.values():
            deadline = time.monotonic() + 60
            while not np.isfinite(hbt.depth(0).best_bid):
                if time.monotonic() > deadline:
                    raise RuntimeError("no book")
                hbt.wait_next_feed(False, 100_000_000)
        times = {(t, what): [] for t in transports for what in ("submit", "cancel")}
        for i in range(args.warmup + args.orders):
            for t in transports:
                hbt = bots[t]
                hbt.elapse(0)
                price = (hbt.depth(0).best_bid_tick - 200) * 0.1
                order_id = 1000 + i
                t0 = time.perf_counter()
                code = hbt.submit_buy_order(0, order_id, price, 0.002, GTX, LIMIT, True)
                t1 = time.perf_counter()
                assert code == 3 and hbt.orders(0).get(order_id).status == 1, (t, code)
                code = hbt.cancel(0, order_id, True)
                t2 = time.perf_counter()
                assert code == 3 and hbt.orders(0).get(order_id).status == 4, (t, code)
                if i >= args.warmup:
                    times[(t, "submit")].append(t1 - t0)
                    times[(t, "cancel")].append(t2 - t1)
        price = (bots["rest"].depth(0).best_bid_tick - 200) * 0.1
        for t, xs in asyncio.run(transport_round_trips(rest, ws, price, args.orders)).items():
            times[(t, "transport place")] = xs
        load = os.getloadavg()
        print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
              f"(1/5/15 min) at the end")
        for (t, what), xs in times.items():
            arr = np.array(xs) * 1e3
            print(f"connector {t:4s} {what:15s}: p50 {np.percentile(arr, 50):6.2f} ms  "
                  f"p99 {np.percentile(arr, 99):6.2f} ms  ({len(arr)} orders)")
    finally:
        for hbt in bots.values():
            hbt.close()
        for p in reversed(procs):
            p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
