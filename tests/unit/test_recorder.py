"""Recorder against a stand-in bot exposing the public bot API (a jitclass here, like hftbacktest 2.x's own bot)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from numba import float64, int64, njit, types
from numba.experimental import jitclass

from hftbacktest.errors import ConfigError
from hftbacktest.recorder import Recorder
from hftbacktest.stats import LinearAssetRecord
from hftbacktest.types import order_latency_dtype


@jitclass([("best_bid", float64), ("best_ask", float64)])
class FakeDepth:
    def __init__(self, bid, ask):
        self.best_bid = bid
        self.best_ask = ask


@jitclass([("position", float64), ("balance", float64), ("fee", float64), ("num_trades", int64),
           ("trading_volume", float64), ("trading_value", float64)])
class FakeState:
    def __init__(self):
        self.position = 0.0
        self.balance = 0.0
        self.fee = 0.0
        self.num_trades = 0
        self.trading_volume = 0.0
        self.trading_value = 0.0


@jitclass([("current_timestamp", int64), ("num_assets", int64),
           ("depths", types.ListType(FakeDepth.class_type.instance_type)),
           ("states", types.ListType(FakeState.class_type.instance_type))])
class FakeBot:
    """Two assets; each step advances time by 1 s, moves asset a's mid by a+1 and buys a+1 units."""

    def __init__(self, depths, states):
        self.current_timestamp = 1_000_000_000
        self.num_assets = len(depths)
        self.depths = depths
        self.states = states

    def depth(self, asset_no):
        return self.depths[asset_no]

    def state_values(self, asset_no):
        return self.states[asset_no]


def make_bot(num_assets=2):
    from numba.typed import List

    depths, states = List(), List()
    for a in range(num_assets):
        depths.append(FakeDepth(100.0 * (a + 1), 100.0 * (a + 1) + 1.0))
        states.append(FakeState())
    return FakeBot(depths, states)


@njit
def step_and_record(hbt, recorder, steps):
    for _ in range(steps):
        hbt.current_timestamp += 1_000_000_000
        for a in range(hbt.num_assets):
            d = hbt.depth(a)
            d.best_bid += a + 1
            d.best_ask += a + 1
            s = hbt.state_values(a)
            s.position += a + 1
            s.balance -= (a + 1) * d.best_ask
            s.fee += 0.01
            s.num_trades += 1
            s.trading_volume += a + 1
            s.trading_value += (a + 1) * d.best_ask
        recorder.record(hbt)


@pytest.fixture(scope="module")
def bot_factory():
    return make_bot


def test_records_every_asset_state_and_mid(bot_factory):
    rec = Recorder(2, 10)
    step_and_record(bot_factory(), rec.recorder, 3)
    assert rec.recorder.i == 3
    for a in range(2):
        rows = rec.get(a)
        k = np.arange(1, 4)
        assert list(rows["timestamp"]) == list(1_000_000_000 + k * 1_000_000_000)
        assert list(rows["price"]) == pytest.approx(100.0 * (a + 1) + 0.5 + k * (a + 1))
        assert list(rows["position"]) == pytest.approx(k * (a + 1))
        assert list(rows["num_trades"]) == list(k)
        assert list(rows["fee"]) == pytest.approx(0.01 * k)
        assert rows["balance"][-1] == pytest.approx(-rows["trading_value"][-1])


def test_full_recorder_raises_without_writing_past_the_end(bot_factory):
    rec = Recorder(2, 4)
    bot = bot_factory()
    step_and_record(bot, rec.recorder, 4)  # exactly the capacity: fine (the reference already raises here)
    before = rec.recorder.records.copy()
    with pytest.raises(IndexError, match="Recorder is full"):
        step_and_record(bot, rec.recorder, 1)
    assert rec.recorder.i == 4 and rec.recorder.records.shape == (4, 2)
    assert rec.recorder.records.tobytes() == before.tobytes()


def test_grow_doubles_capacity_and_keeps_rows(bot_factory):
    rec = Recorder(2, 2, grow=True)
    step_and_record(bot_factory(), rec.recorder, 9)
    assert rec.recorder.i == 9 and rec.recorder.records.shape == (16, 2)
    assert list(rec.get(1)["position"]) == pytest.approx(2.0 * np.arange(1, 10))


def test_bot_with_more_assets_than_the_recorder_is_refused(bot_factory):
    rec = Recorder(1, 8)
    with pytest.raises(IndexError, match="fewer assets"):
        step_and_record(bot_factory(2), rec.recorder, 1)
    assert rec.recorder.i == 0


def test_plain_python_record_call(bot_factory):
    rec = Recorder(2, 4)
    bot = bot_factory()
    rec.recorder.record(bot)
    assert rec.recorder.i == 1 and rec.get(0)["price"][0] == pytest.approx(100.5)


def test_to_npz_round_trip_feeds_stats_and_report_extras(tmp_path, bot_factory):
    rec = Recorder(2, 100)
    step_and_record(bot_factory(), rec.recorder, 30)
    lat = np.zeros(2, order_latency_dtype)
    path = tmp_path / "run.npz"
    rec.to_npz(str(path), config={"strategy": "test"}, order_latency={1: lat})
    with np.load(path) as npz:
        assert sorted(npz.files) == ["0", "1", "config", "order_latency_1"]
        assert npz["0"].tobytes() == rec.get(0).tobytes()
        assert json.loads(str(npz["config"])) == {"strategy": "test"}
        stats = LinearAssetRecord(npz["1"]).resample("5s").stats()
    assert stats.splits[-1]["MaxPositionValue"] > 0


def test_bad_arguments():
    with pytest.raises(ConfigError):
        Recorder(0, 10)
    with pytest.raises(ConfigError):
        Recorder(1, 0)
    with pytest.raises(ConfigError, match="asset_no 3"):
        Recorder(2, 10).get(3)
