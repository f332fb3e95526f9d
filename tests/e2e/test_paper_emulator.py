"""Paper trading end to end: the grid strategy through a LiveBot and a paper-mode connector whose market data is
the emulator's stream. Fills happen, the bot's position equals the paper venue's, the order journal lists every
fill the bot was told about, and not one request reaches the emulator's order or account endpoints.

The strategy trades a minute of market: the emulator replays its synthetic feed at 3x, so the minute passes in
20 s of wall time (faster replay makes the paper venue, which matches every market event, the bottleneck on a
loaded 2-core machine). Every clock the bot and the connector see stays the wall clock (the emulator stamps `E`/`T`
when it sends), so only the amount of market per second grows, not any time that could disagree.
"""
from __future__ import annotations

import os
import signal
import sys
from collections import Counter

import orjson
import pytest
from test_live_emulator import ADMIN, Proc, Venue, _bot, _cancel_all, _load_example, _open_orders

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PREFIX = "pp-"
SPEED = 3  # market seconds per wall second


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper")
    emu = Proc([sys.executable, "-m", "hftbacktest.cli", "emulator", "--market", "synthetic:BTCUSDT", "--seed", "11",
                "--speed", str(SPEED), "--admin"], "stdout", {"HFTBACKTEST_EMU_ADMIN_TOKEN": ADMIN["X-EMU-ADMIN-TOKEN"]})
    rest = emu.wait_for("REST ", start=True).split()[1]
    ws = emu.wait_for("WS ", start=True).split()[1]
    journal = tmp / "orders.jsonl"
    cfg = tmp / "paper.toml"
    cfg.write_text(f'stream_url = "{ws}"\napi_url = "{rest}"\norder_prefix = "{PREFIX}"\njournal = "{journal}"\n'
                   '[paper]\nqueue = "power_prob:2"\nexchange = "partial_fill"\nmaker_fee = -0.0001\n'
                   'taker_fee = 0.0004\nbalance = 50000.0\n')
    name = f"pp{os.getpid()}"
    v = Venue(rest, ws, name, None, emu)
    v.connector_args = [sys.executable, "-m", "hftbacktest.connector", "--name", name, "--connector",
                        "binancefutures", "--config", str(cfg)]
    v.journal = journal
    v.start_connector()
    try:
        yield v
    finally:
        v.connector.stop()
        emu.stop()


def _journal(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_grid_strategy_paper_trades_on_the_emulator_market(paper, tmp_path):
    from hftbacktest import Recorder
    from hftbacktest.live import ErrorKind, latency_log_to_npz

    grid = _load_example("gridtrading")
    errors = []
    latency = tmp_path / "latency.jsonl"
    hbt = _bot(paper, errors, latency)
    try:
        recorder = Recorder(1, 10_000)
        market_start = paper.get("/_emu/state")["books"]["BTCUSDT"]["feed_s"]
        market_s = 0.0
        for _ in range(20):  # 10 s of wall per round; a loaded machine replays slower than SPEED: more rounds
            assert grid.gridtrading(hbt, recorder.recorder, 100, 100_000_000, 3, 1, 1, 0.002, 0.01) == 100
            market_s = paper.get("/_emu/state")["books"]["BTCUSDT"]["feed_s"] - market_start
            if market_s >= 60.0:
                break
        assert market_s >= 60.0, f"the grid saw {market_s:.1f} s of market"
        _cancel_all(hbt)
        for _ in range(20):  # the last updates in flight
            hbt.elapse(100_000_000)
        assert not _open_orders(hbt)
        bot_position = hbt.position(0)
        assert not [e for e in errors if e.kind == ErrorKind.CriticalConnectionError]
    finally:
        hbt.close()
    assert paper.connector.stop(signal.SIGTERM) == 0
    line = next(x for x in paper.connector.log if "paper account at shutdown:" in x)
    engine = orjson.loads(line.split("paper account at shutdown:", 1)[1])
    assert engine["fills"] > 0 and engine["orders"] > 5, engine
    assert abs(engine["positions"].get("btcusdt", 0.0) - bot_position) < 1e-9, (engine, bot_position)

    entries = _journal(paper.journal)
    kinds = Counter(e["event"] for e in entries)
    fills = [e for e in entries if e["event"] == "fill"]
    assert len(fills) == engine["fills"]  # every fill of the engine is in the journal
    signed = sum(e["fill_qty"] * (1 if e["side"] == "BUY" else -1) for e in fills)
    assert abs(signed - bot_position) < 1e-9
    assert all(e["fee_asset"] == "USDT" and e["exch_ts"] > 0 and e["local_ts"] > 0 and e["order_id"] is not None
               for e in fills)
    assert all((e["fee"] < 0) == e["maker"] for e in fills)  # maker rebate, taker fee
    submits = [e for e in entries if e["event"] == "request" and e["action"] == "submit"]
    assert kinds["ack"] + kinds["rejection"] >= len(submits) > 5 and kinds["cancel"] > 0, kinds

    # orders never left the machine: the emulator took none, refused none, saw no account
    state = paper.get("/_emu/state")
    assert state["counters"]["orders"] == 0 and state["counters"]["rejections"] == 0, state["counters"]
    assert all(not a["open_orders"] and not a["positions"] for a in state["accounts"].values())
    arr = latency_log_to_npz([latency], tmp_path / "latency.npz")  # the same order-latency log as live
    assert len(arr) >= len(submits) // 2
