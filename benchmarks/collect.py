"""Collector throughput: messages/s one `hftbacktest collect` process sustains and its CPU per 100 k messages.

    .venv/bin/python benchmarks/collect.py [--symbols 20] [--seconds 10] [--mode blast|emulator|both|refcheck]

`blast`: a minimal Binance-shaped server in this process pushes depth@0ms + trade frames for N symbols as fast as
TCP back-pressure allows (payload levels taken from the real BTCUSDT sample when present, update ids chained so
the collector sees no gap). The collector is the bottleneck, so the rate measured is its ceiling.
`emulator`: the real `hftbacktest emulator` process with N synthetic symbols; here the emulator's fan-out (a few
thousand messages/s on this box) is usually the limit, so the figure is a floor.

The collector runs as a real CLI process (gzip members every second, fsync on); its CPU comes from
/proc/<pid>/stat over the measuring window, excluding start-up.
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
FEED = ROOT.parent / "shared" / "data" / "binance-usdm" / "btcusdt_20240808.gz"
TICK = os.sysconf("SC_CLK_TCK")

# Binance USD-M peak rates we assume for 20 symbols of depth@0ms + trade (estimates of volatile minutes, not
# measurements: this sandbox has no network): BTCUSDT and ETHUSDT 1,000 depth + 2,000 trade messages/s each,
# 18 other symbols 300 + 300 each -> 16,800 messages/s in all.
ASSUMED_PEAK = 2 * (1_000 + 2_000) + 18 * (300 + 300)


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def sample_levels() -> tuple[list[str], list[str]]:
    """Serialized `b`/`a` arrays of real depth updates and real trade price/qty pairs (synthetic if no sample)."""
    depth, trades = [], []
    if FEED.exists():
        with gzip.open(FEED, "rb") as f:
            for line in f:
                msg = orjson.loads(line[20:])
                d = msg.get("data") or {}
                if d.get("e") == "depthUpdate" and len(depth) < 2000:
                    depth.append(orjson.dumps({"b": d["b"], "a": d["a"]}).decode()[1:-1])
                elif d.get("e") == "trade" and len(trades) < 2000:
                    trades.append(f'"p":"{d["p"]}","q":"{d["q"]}","X":"MARKET","m":{str(d["m"]).lower()}')
                if len(depth) >= 2000 and len(trades) >= 2000:
                    break
    if not depth:
        depth = [f'"b":[["{60000 + i % 50}.0","0.{i % 9 + 1}00"]],"a":[["{60100 + i % 50}.0","0.500"]]'
                 for i in range(2000)]
        trades = [f'"p":"{60050 + i % 7}.0","q":"0.00{i % 9 + 1}","X":"MARKET","m":{"true" if i % 2 else "false"}'
                  for i in range(2000)]
    return depth, trades


class Blaster:
    def __init__(self, symbols: list[str]):
        self.symbols = symbols
        self.depth, self.trades = sample_levels()
        self.last_u = {s: 1_000_000 for s in symbols}
        self.sent = 0
        self.connected = asyncio.Event()

    async def ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        streams = request.query.get("streams", "").split("/")
        syms = sorted({s.partition("@")[0] for s in streams})
        self.connected.set()
        depth, trades, i, tid = self.depth, self.trades, 0, 1
        try:
            while not ws.closed:
                for sym in syms:
                    now = int(time.time() * 1000)
                    u0 = self.last_u[sym]
                    u = u0 + 3
                    self.last_u[sym] = u
                    await ws.send_str(
                        f'{{"stream":"{sym}@depth@0ms","data":{{"e":"depthUpdate","E":{now},"T":{now},"s":"'
                        f'{sym.upper()}","U":{u0 + 1},"u":{u},"pu":{u0},{depth[i % len(depth)]}}}}}')
                    await ws.send_str(
                        f'{{"stream":"{sym}@trade","data":{{"e":"trade","E":{now},"T":{now},"s":"{sym.upper()}",'
                        f'"t":{tid},{trades[i % len(trades)]}}}}}')
                    self.sent += 2
                    tid += 1
                i += 1
        except (ConnectionError, RuntimeError):
            pass
        return ws

    async def rest(self, request: web.Request) -> web.Response:
        path = request.path
        if path == "/fapi/v1/time":
            return web.json_response({"serverTime": int(time.time() * 1000)})
        if path == "/fapi/v1/exchangeInfo":
            return web.json_response({"symbols": [{"symbol": s.upper(), "status": "TRADING"} for s in self.symbols]})
        if path == "/fapi/v1/depth":
            sym = request.query["symbol"].lower()
            now = int(time.time() * 1000)
            return web.json_response({"lastUpdateId": self.last_u[sym] + 1, "E": now, "T": now,
                                      "bids": [["60000.0", "1.000"]], "asks": [["60100.0", "1.000"]]})
        return web.json_response({"code": -5000, "msg": "unknown"}, status=404)


def start_collector(symbols, out, ws_url, api_url) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hftbacktest.cli", "collect", "binancefutures", *symbols, "-o", str(out),
           "--stream-url", ws_url, "--api-url", api_url, "--streams", "depth@0ms,trade", "--quiet"]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)


def recorded(out: Path) -> int:
    return sum(json.loads(p.read_text())["messages"] for p in out.glob("*.gz.json"))


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"collector failed: {err.strip()}")


async def bench_blast(symbols: list[str], seconds: float) -> dict:
    blaster = Blaster(symbols)
    app = web.Application()
    app.router.add_get("/stream", blaster.ws)
    app.router.add_route("*", "/{tail:.*}", blaster.rest)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_collector(symbols, tmp, f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}")
        await asyncio.wait_for(blaster.connected.wait(), 60)
        await asyncio.sleep(1.0)  # past start-up
        c0, n0, t0 = cpu_s(proc.pid), blaster.sent, time.perf_counter()
        await asyncio.sleep(seconds)
        c1, n1, t1 = cpu_s(proc.pid), blaster.sent, time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(None, stop, proc)
        total = recorded(Path(tmp))
        size = sum(p.stat().st_size for p in Path(tmp).glob("*.gz"))
    await runner.cleanup()
    n = n1 - n0
    return {"mode": "blast", "symbols": len(symbols), "msgs_per_s": round(n / (t1 - t0)),
            "cpu_s_per_100k": round((c1 - c0) / n * 1e5, 3), "cpu_share": round((c1 - c0) / (t1 - t0), 2),
            "recorded": total, "sent": blaster.sent, "gz_bytes_per_msg": round(size / max(1, total), 1)}


def bench_emulator(symbols: list[str], seconds: float, speed: float) -> dict:
    cmd = [sys.executable, "-m", "hftbacktest.cli", "emulator", "--speed", str(speed), "--weight-limit", "1000000"]
    for s in symbols:
        cmd += ["--market", f"synthetic:{s.upper()}"]
    emu = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        rest = emu.stdout.readline().split()[1]
        ws = emu.stdout.readline().split()[1]
        with tempfile.TemporaryDirectory() as tmp:
            proc = start_collector(symbols, tmp, ws, rest)
            while not list(Path(tmp).glob("*.gz.json")):
                time.sleep(0.05)
            time.sleep(1.0)
            c0, n0, t0 = cpu_s(proc.pid), flushed_lines(Path(tmp)), time.perf_counter()
            time.sleep(seconds)
            c1, n1, t1 = cpu_s(proc.pid), flushed_lines(Path(tmp)), time.perf_counter()
            stop(proc)
            total = recorded(Path(tmp))
    finally:
        emu.send_signal(signal.SIGINT)
        emu.wait(30)
    n = max(1, n1 - n0)
    return {"mode": "emulator", "symbols": len(symbols), "speed": speed, "msgs_per_s": round(n / (t1 - t0)),
            "cpu_s_per_100k": round((c1 - c0) / n * 1e5, 3), "cpu_share": round((c1 - c0) / (t1 - t0), 2),
            "recorded": total}


def flushed_lines(out: Path) -> int:
    """Lines in the complete gzip members written so far (what a crash would keep); a member still being
    written is not counted."""
    n = 0
    for path in out.glob("*.gz"):
        data = path.read_bytes()
        while data:
            d = zlib.decompressobj(wbits=31)
            lines = d.decompress(data).count(b"\n")
            if not d.eof:
                break
            n += lines
            data = d.unused_data
    return n


REF_SNIPPET = """
import contextlib, hashlib, io, json, sys
from hftbacktest.data.utils import binancefutures
with contextlib.redirect_stdout(io.StringIO()):
    data = binancefutures.convert(sys.argv[1])
print(json.dumps({"rows": len(data), "sha256": hashlib.sha256(data.tobytes()).hexdigest()}))
"""


def ref_check(seconds: float) -> dict:
    """Record from the emulator, kill -9 the collector, convert the file with hftbacktest 2.4.4 and with ours."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _ref

    emu = subprocess.Popen([sys.executable, "-m", "hftbacktest.cli", "emulator", "--speed", "3",
                            "--market", "synthetic:BTCUSDT"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    try:
        rest = emu.stdout.readline().split()[1]
        ws = emu.stdout.readline().split()[1]
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.Popen([sys.executable, "-m", "hftbacktest.cli", "collect", "binancefutures", "btcusdt",
                                     "-o", tmp, "--stream-url", ws, "--api-url", rest, "--quiet",
                                     "--flush-interval", "0.5"])
            time.sleep(seconds)
            proc.kill()  # SIGKILL: the file ends at its last complete member
            proc.wait()
            (path,) = Path(tmp).glob("*.gz")
            out = {name: _ref.run_snippet(py, REF_SNIPPET, str(path)).lines[0]
                   for name, py in _ref.interpreters().items()}
    finally:
        emu.send_signal(signal.SIGINT)
        emu.wait(30)
    return {"mode": "refcheck", **out, "identical": out["ours"] == out["ref"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--mode", choices=("blast", "emulator", "both", "refcheck"), default="blast",
                    help="refcheck: convert a kill -9'd recording with hftbacktest 2.4.4 and ours, compare")
    ap.add_argument("--speed", type=float, default=5.0, help="emulator replay speed (emulator mode)")
    args = ap.parse_args()
    symbols = [f"sym{i:02d}usdt" for i in range(args.symbols)]
    print(json.dumps({"load_avg": os.getloadavg(), "cores": os.cpu_count(), "assumed_binance_peak_msgs_per_s":
                      ASSUMED_PEAK}))
    if args.mode in ("blast", "both"):
        res = asyncio.run(bench_blast(symbols, args.seconds))
        res["headroom_vs_assumed_peak"] = round(res["msgs_per_s"] / ASSUMED_PEAK, 2)
        print(json.dumps(res))
    if args.mode in ("emulator", "both"):
        print(json.dumps(bench_emulator(symbols, args.seconds, args.speed)))
    if args.mode == "refcheck":
        print(json.dumps(ref_check(args.seconds)))


if __name__ == "__main__":
    main()
