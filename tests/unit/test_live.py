"""LiveBot against an in-process fake connector (real iceoryx2 channel, no network), plus recorders and builder."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from hftbacktest.errors import ConfigError, DataError
from hftbacktest.live import (
    BotError, ErrorKind, HashMapMarketDepth, Instrument, LiveBotBuilder, OrderLatencyLogger, latency_log_to_npz,
)
from hftbacktest.live.ipc import TO_ALL, ConnectorChannel
from hftbacktest.live.ipc import codec as c
from hftbacktest.types import BUY, CANCELED, EXPIRED, GTX, LIMIT, NEW, NONE, REPLACED

BID = 1 | (1 << 29) | (1 << 30)
ASK = 1 | (1 << 28) | (1 << 30)
CLEAR = 3 | (1 << 30)


class FakeConnector:
    def __init__(self, name):
        self.ch = ConnectorChannel(name)

    def requests(self):
        out = []
        while (got := self.ch.recv()) is not None:
            out.append((got[0], c.decode_request(got[1])))
        return out

    def send(self, bot_id, *msgs):
        for m in msgs:
            self.ch.send(bot_id, c.encode_event(m))

    def batch(self, bot_id, *msgs):
        self.send(bot_id, c.BatchStart(), *msgs, c.BatchEnd())


@pytest.fixture
def rig():
    name = f"tlive{os.getpid()}"
    con = FakeConnector(name)
    errors = []
    hbt = (LiveBotBuilder()
           .register(Instrument(name, "BTCUSDT", 0.1, 0.001, HashMapMarketDepth(0.1, 0.001)))
           .error_handler(errors.append).id(42).build())
    yield con, hbt, errors
    hbt.close()
    con.ch.close()


def feed(ev, px, qty, ts=1_000):
    return c.Feed("btcusdt", (ev, ts, ts + 5, px, qty, 0, 0, 0.0))


def test_registration_feed_orders_and_position_flow_through_compiled_code(rig):
    con, hbt, errors = rig
    reqs = con.requests()
    assert reqs == [(42, c.BotHello(os.getpid())), (42, c.RegisterInstrument("btcusdt", 0.1, 0.001))]  # lowercased
    con.batch(42, feed(CLEAR, 0.0, 0.0), feed(BID, 100.0, 2.0), feed(ASK, 100.1, 3.0))
    con.send(TO_ALL, c.Position("btcusdt", 0.5, 7), c.Position("ethusdt", 9.0, 7), c.Error(ErrorKind.Custom, None, 0))
    assert hbt.wait_next_feed(False, 1_000_000_000) == 2
    depth = hbt.depth(0)
    assert (depth.best_bid_tick, depth.best_ask_tick) == (1000, 1001)
    hbt.elapse(0)
    assert hbt.position(0) == 0.5
    assert hbt.state_values(0).position == 0.5 and hbt.state_values(0)["position"] == 0.5  # attribute, as in backtest
    assert errors == []  # heartbeats never reach the handler

    assert hbt.submit_buy_order(0, 1000, 100.0, 0.002, GTX, LIMIT, False) == 0
    assert hbt.submit_buy_order(0, 1000, 100.0, 0.002, GTX, LIMIT, False) == 10  # id exists
    (bot_id, req), = con.requests()
    assert bot_id == 42 and req.order.req == NEW and req.order.price_tick == 1000 and req.order.side == BUY
    ack = req.order._replace(req=NONE, status=NEW, exch_timestamp=req.order.local_timestamp + 1000)
    con.send(42, c.OrderUpdate("btcusdt", ack))
    assert hbt.wait_order_response(0, 1000, 1_000_000_000) == 3
    order = hbt.orders(0).get(1000)
    assert order.status == NEW and order.req == NONE and order.cancellable
    # the compiled methods from plain Python too, as on the backtest bot
    assert hbt.elapse_bt(1) == 0 and hbt.feed_latency(0) == (1_000, 1_005)
    assert hbt.order_latency(0)[:2] == (req.order.local_timestamp, req.order.local_timestamp + 1000)

    assert hbt.cancel(0, 1000, False) == 0
    (_, creq), = con.requests()
    assert creq.order.req == CANCELED
    con.send(42, c.OrderUpdate("btcusdt", ack._replace(status=CANCELED, exch_timestamp=ack.exch_timestamp + 1)))
    con.send(TO_ALL, c.Error(ErrorKind.OrderError, {"code": -2011, "msg": "Unknown order sent."}))
    assert hbt.wait_order_response(0, 1000, 1_000_000_000) == 3
    assert hbt.orders(0).get(1000).status == CANCELED
    hbt.elapse(0)
    assert errors and errors[-1].kind == ErrorKind.OrderError and errors[-1].value["code"] == -2011
    hbt.clear_inactive_orders(0)
    assert 1000 not in hbt.orders(0)


def test_stale_and_foreign_updates_do_not_revive_dead_orders(rig):
    con, hbt, _ = rig
    con.requests()
    assert hbt.submit_buy_order(0, 7, 100.0, 0.002, GTX, LIMIT, False) == 0
    (_, req), = con.requests()
    dead = req.order._replace(req=NONE, status=EXPIRED, exch_timestamp=0)
    con.send(42, c.OrderUpdate("btcusdt", dead))
    con.send(43, c.OrderUpdate("btcusdt", dead._replace(order_id=8)))  # another bot's order: not ours
    assert hbt.wait_order_response(0, 7, 1_000_000_000) == 3
    con.send(42, c.OrderUpdate("btcusdt", dead._replace(status=NEW, exch_timestamp=5)))
    hbt.elapse(1_000_000)
    assert hbt.orders(0).get(7).status == EXPIRED
    assert 8 not in hbt.orders(0)


def test_handler_exception_stops_the_wait_with_code_19(rig):
    con, hbt, errors = rig

    def boom(err):
        raise BotError("stop trading")

    hbt2 = None
    con.send(TO_ALL, c.Error(ErrorKind.CriticalConnectionError, "connector shutting down"))
    assert hbt.elapse(1_000_000) == 0  # the list.append handler does not raise
    assert errors[-1].kind == ErrorKind.CriticalConnectionError
    name = con.ch.name
    hbt2 = (LiveBotBuilder().register(Instrument(name, "ethusdt", 0.01, 0.001)).error_handler(boom).build())
    try:
        con.send(TO_ALL, c.Error(ErrorKind.CriticalConnectionError, "x"))
        assert hbt2.elapse(100_000_000) == 19
    finally:
        hbt2.close()


def test_builder_validation():
    with pytest.raises(ConfigError, match="Duplicate"):
        (LiveBotBuilder().register(Instrument("bf", "btcusdt", 0.1, 0.001))
         .register(Instrument("bf", "BTCUSDT", 0.1, 0.001)).build())
    with pytest.raises(ConfigError, match="tick_size"):
        Instrument("bf", "btcusdt", 0.0, 0.001)
    with pytest.raises(ConfigError, match="at least one"):
        LiveBotBuilder().build()


def test_latency_log_round_trip_and_errors(tmp_path):
    log = OrderLatencyLogger(tmp_path / "a.jsonl")
    log.record(300, 310, 330, NEW)
    log.record(100, 0, 150, NEW)  # rejection: no exchange time
    log.record(200, 190, 260, CANCELED)  # clock skew: kept
    log.close()
    arr = latency_log_to_npz([tmp_path / "a.jsonl"], tmp_path / "lat.npz")
    assert arr["req_ts"].tolist() == [100, 200, 300]
    loaded = np.load(tmp_path / "lat.npz")["data"]
    assert loaded.dtype.names == ("req_ts", "exch_ts", "resp_ts", "req")  # the request type: one latency lane each
    assert loaded["exch_ts"].tolist() == [0, 190, 310] and loaded["req"].tolist() == [NEW, CANCELED, NEW]
    (tmp_path / "bad.jsonl").write_text('{"req_ts": 1, "exch_ts": 2, "resp_ts": 3}\n{"req_ts": 1}\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        latency_log_to_npz(tmp_path / "bad.jsonl", tmp_path / "x.npz")


def test_live_latencies_that_miss_the_data_are_warned_about(tmp_path):
    """Latencies logged live today, data from another day: the backtest says they do not overlap."""
    import warnings

    from _engine_data import ask, bid, rows

    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

    day = 86_400 * 10**9
    data = rows(bid(1 * day, 100.0, 1.0), ask(1 * day + 10, 100.1, 1.0), bid(1 * day + 20, 100.0, 2.0))
    log = OrderLatencyLogger(tmp_path / "lat.jsonl")
    for k in range(3):
        log.record(5 * day + k, 5 * day + k + 100, 5 * day + k + 200, NEW)
    log.close()
    latency_log_to_npz(tmp_path / "lat.jsonl", tmp_path / "lat.npz")

    def build(lat):
        asset = (BacktestAsset().data([data]).linear_asset(1.0).intp_order_latency(lat).risk_adverse_queue_model()
                 .no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0).tick_size(0.1).lot_size(0.001))
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            HashMapMarketDepthBacktest([asset]).close()
        return [str(w.message) for w in seen if issubclass(w.category, UserWarning)]

    got = build([str(tmp_path / "lat.npz")])
    assert len(got) == 1 and "asset 0: the order latencies (1970-01-06T00:00:00Z .. " in got[0], got
    assert "do not overlap the data (1970-01-02T00:00:00Z .. 1970-01-02T00:00:00Z)" in got[0]
    overlapping = np.load(tmp_path / "lat.npz")["data"].copy()
    overlapping["req_ts"] -= 4 * day
    overlapping["exch_ts"] -= 4 * day
    overlapping["resp_ts"] -= 4 * day
    assert build(overlapping) == []


def _rig_bot(name, errors, **options):
    b = LiveBotBuilder().register(Instrument(name, "btcusdt", 0.1, 0.001)).error_handler(errors.append).id(44)
    if "hook" in options:
        b = b.order_recv_hook(options["hook"])
    if "timeout" in options:
        b = b.request_timeout(options["timeout"])
    return b.build()


def _ack(con, req, **changes):
    order = req.order._replace(req=NONE, status=NEW, exch_timestamp=req.order.local_timestamp + 1000, **changes)
    con.send(44, c.OrderUpdate("btcusdt", order))
    return order


def test_modify_goes_to_the_connector_and_answers_like_the_backtest(rig):
    con, _, _ = rig
    errors, seen = [], []
    hbt = _rig_bot(con.ch.name, errors, hook=lambda prev, new: seen.append((prev.req, new.req, prev.price_tick,
                                                                             new.price_tick)))
    try:
        con.requests()
        assert hbt.modify(0, 5, 100.0, 0.002, False) == 12  # unknown order
        assert hbt.modify(3, 5, 100.0, 0.002, False) == 16  # unknown asset
        assert hbt.submit_buy_order(0, 5, 100.0, 0.002, GTX, LIMIT, False) == 0
        assert hbt.modify(0, 5, 100.1, 0.002, False) == 11  # the submission is still pending
        (_, req), = con.requests()
        ack = _ack(con, req)
        assert hbt.wait_order_response(0, 5, 1_000_000_000) == 3
        assert seen == [(NEW, NONE, 1000, 1000)]  # the hook saw the local order before the update

        assert hbt.modify(0, 5, 100.3, 0.004, False) == 0
        o = hbt.orders(0).get(5)
        assert (o.price_tick, o.qty, o.req) == (1003, 0.004, REPLACED)  # as in the backtest until answered
        (_, mreq), = con.requests()
        assert (mreq.order.req, mreq.order.price_tick, mreq.order.qty) == (REPLACED, 1003, 0.004)
        amended = ack._replace(price_tick=1003, qty=0.004, leaves_qty=0.004, exch_timestamp=ack.exch_timestamp + 1)
        con.send(44, c.OrderUpdate("btcusdt", amended))
        assert hbt.wait_order_response(0, 5, 1_000_000_000) == 3
        o = hbt.orders(0).get(5)
        assert (o.price_tick, o.qty, o.req, o.status) == (1003, 0.004, NONE, NEW)
        assert seen[-1] == (REPLACED, NONE, 1003, 1003)

        # refused (-5027 "No need to modify the order."): the connector sends the order as the exchange has it
        assert hbt.modify(0, 5, 100.5, 0.004, False) == 0
        con.requests()
        con.send(44, c.OrderUpdate("btcusdt", amended))
        con.send(44, c.Error(ErrorKind.OrderError, {"code": -5027, "msg": "No need to modify the order."}))
        assert hbt.wait_order_response(0, 5, 1_000_000_000) == 3
        o = hbt.orders(0).get(5)
        assert (o.price_tick, o.req) == (1003, NONE)
        hbt.elapse(0)
        assert errors[-1].value["code"] == -5027
    finally:
        hbt.close()


def test_order_recv_hook_that_raises_stops_the_wait(rig):
    con, _, _ = rig
    errors = []

    def hook(prev, new):
        raise BotError("unexpected fill")

    hbt = _rig_bot(con.ch.name, errors, hook=hook)
    try:
        con.requests()
        hbt.submit_buy_order(0, 9, 100.0, 0.002, GTX, LIMIT, False)
        (_, req), = con.requests()
        _ack(con, req)
        assert hbt.wait_order_response(0, 9, 1_000_000_000) == 19
    finally:
        hbt.close()


def test_unanswered_request_is_reported_as_custom_1006(rig):
    con, _, _ = rig
    errors = []
    hbt = _rig_bot(con.ch.name, errors, timeout=0.2)
    try:
        con.requests()
        assert hbt.submit_buy_order(0, 11, 100.0, 0.002, GTX, LIMIT, False) == 0
        assert con.requests()  # the request left; nobody answers it
        deadline = time.monotonic() + 10
        while not any(e.kind == ErrorKind.Custom and e.code == 1006 for e in errors):
            assert time.monotonic() < deadline, errors
            hbt.elapse(10_000_000)
        err = next(e for e in errors if e.code == 1006)
        assert err.value["order_id"] == 11 and err.value["req"] == NEW and err.value["waited_s"] >= 0.2
        assert hbt.orders(0).get(11).req == NONE  # given up locally: the order can be cancelled again
        assert hbt.cancel(0, 11, False) == 0
    finally:
        hbt.close()


def test_live_bot_type_name_carries_the_cache_salt(rig):
    """A cached strategy compiled against another package version must not match the live bot's type."""
    import subprocess
    import sys

    import numba

    from hftbacktest._cache_salt import SALT

    _, hbt, _ = rig
    assert numba.typeof(hbt).name == f"hftbacktest.LiveBotType.{SALT}"
    show = "from hftbacktest.live.bot import live_bot_type; print(live_bot_type.name)"
    names = {salt: subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, check=True,
                                  env={**os.environ, "HFTBACKTEST_CACHE_SALT": salt}).stdout.strip()
             for salt in ("aaaa", "bbbb")}
    assert names == {"aaaa": "hftbacktest.LiveBotType.aaaa", "bbbb": "hftbacktest.LiveBotType.bbbb"}


def test_reference_style_live_api_from_the_top_level_package():
    import hftbacktest
    import hftbacktest.live
    from hftbacktest import HashMapMarketDepthLiveBot, LiveInstrument, ROIVectorMarketDepthLiveBot

    assert hftbacktest.ROIVectorMarketDepthLiveBot is hftbacktest.live.ROIVectorMarketDepthLiveBot
    name = f"tref{os.getpid()}"
    con = FakeConnector(name)
    inst = LiveInstrument().connector(name).symbol("ETHUSDT").tick_size(0.01).lot_size(0.001)
    with pytest.raises(ConfigError, match="roi_lb/roi_ub"):
        ROIVectorMarketDepthLiveBot([inst])
    bots = [HashMapMarketDepthLiveBot([inst]), ROIVectorMarketDepthLiveBot([inst.roi_lb(1000.0).roi_ub(5000.0)])]
    try:
        regs = [req for _, req in con.requests() if isinstance(req, c.RegisterInstrument)]
        assert regs == [c.RegisterInstrument("ethusdt", 0.01, 0.001)] * 2
        bid = c.Feed("ethusdt", (BID, 1_000, 1_005, 2000.0, 1.5, 0, 0, 0.0))
        for hbt in bots:
            con.batch(TO_ALL, bid)
            assert hbt.wait_next_feed(False, 1_000_000_000) == 2
            assert hbt.depth(0).best_bid_tick == 200000
    finally:
        for hbt in bots:
            hbt.close()
        con.ch.close()


def test_live_docs_need_nothing_outside_the_repository():
    """docs/live.md's walk-through runs from a fresh clone: no sample data from outside, every file it names exists."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "live.md").read_text()
    assert "../" not in text
    named = set(re.findall(r"\b((?:examples|src/hftbacktest)/[\w/.-]+\.(?:py|toml))\b", text))
    assert "examples/gridtrading.py" in named and all((root / p).is_file() for p in named), named
