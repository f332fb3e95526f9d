"""The synthetic market the reconciliation proof runs on (tests/e2e/test_reconcile_emulator.py): its "quiet"
option keeps the price still, so resting orders are filled by trades at their price and queue position decides."""
from __future__ import annotations

import itertools

import numpy as np
import orjson
import pytest

from hftbacktest.data.synthetic import MARKETS, FeedConfig, SyntheticFeed, market_config
from hftbacktest.emulator.market import ASK, BID, open_feed
from hftbacktest.errors import ConfigError, DataError


def _touch_and_trades(cfg: FeedConfig):
    """(best bid ticks, best ask ticks) per bookTicker, and per trade whether it printed at the touch then."""
    bids, asks, at_touch = [], [], []
    for _, msg in SyntheticFeed(cfg).messages():
        d = msg.get("data", {})
        if d.get("e") == "bookTicker":
            bids.append(round(float(d["b"]) / cfg.tick_size))
            asks.append(round(float(d["a"]) / cfg.tick_size))
        elif d.get("e") == "trade" and bids:
            side = bids if d["m"] else asks  # buyer is maker: a sell hitting the bid
            at_touch.append(round(float(d["p"]) / cfg.tick_size) == side[-1])
    return np.array(bids), np.array(asks), np.array(at_touch)


def test_quiet_market_stays_at_its_touch_and_trades_there():
    cfg = market_config("quiet", minutes=1.0, seed=5)
    bids, asks, at_touch = _touch_and_trades(cfg)
    start = round(cfg.initial_price / cfg.tick_size)
    assert np.mean((bids == start - 1) & (asks == start)) > 0.9  # the same two prices nearly all the time
    assert bids.min() >= start - 10 and asks.max() <= start + 10
    # trades hit the touch, they do not trade through it (the few others: the touch of the bookTicker before the
    # trade is not the one the trade met, as the streams' latencies reorder them a little)
    assert len(at_touch) > 1000 and at_touch.mean() > 0.95
    # the default market drifts through many ticks over the same minute, with trades beyond the touch
    bids, asks, at_touch = _touch_and_trades(FeedConfig(minutes=1.0, seed=5))
    assert bids.max() - bids.min() > 100 and at_touch.mean() < 0.8


def test_quiet_market_queues_turn_over_without_trades():
    """Between two trades the best level's queue shrinks (cancels) and grows (joins): what the queue models
    disagree about."""
    cfg = market_config("quiet", minutes=0.5, seed=5)
    best_bid = round(cfg.initial_price / cfg.tick_size) - 1
    qty, shrink, grow = None, 0, 0
    for _, msg in SyntheticFeed(cfg).messages():
        d = msg.get("data", msg)
        if d.get("e") == "trade":
            qty = None  # a trade's own decrease is not a cancel
        elif d.get("e") == "depthUpdate":
            for p, q in d["b"]:
                if round(float(p) / cfg.tick_size) == best_bid:
                    q = round(float(q) / cfg.lot_size)
                    if qty is not None and 0 < q < qty:
                        shrink += 1
                    elif qty is not None and q > qty:
                        grow += 1
                    qty = q
    assert shrink > 50 and grow > 50
    base = [orjson.loads(line.partition(" ")[2]) for line in SyntheticFeed(FeedConfig(minutes=0.5, seed=5)).lines()]
    assert base == [orjson.loads(line.partition(" ")[2])
                    for line in SyntheticFeed(market_config("default", minutes=0.5, seed=5)).lines()]


def test_unknown_market_is_a_config_error():
    assert MARKETS["default"] == {}
    with pytest.raises(ConfigError, match="unknown synthetic market 'loud'.*quiet"):
        market_config("loud")


def test_the_emulator_selects_the_quiet_market():
    def trades(source):
        items = itertools.islice(open_feed(source, seed=5).iter_items(), 3000)
        return [item for _, item in items if item[0] == "trade"]

    def at_start(trades):  # share of the trades at the initial touch, 60999.9 / 61000.0
        return np.mean([tick in (609_999, 610_000) for _, tick, _, _ in trades])

    quiet = trades("synthetic:BTCUSDT:2:quiet")
    assert len(quiet) > 500 and at_start(quiet) > 0.9
    assert trades("synthetic:BTCUSDT:quiet") == quiet  # the length is optional
    assert at_start(trades("synthetic:BTCUSDT:2")) < 0.1
    snapshot = open_feed("synthetic:BTCUSDT:quiet", seed=5).snapshot
    assert {side for side, _, _ in snapshot} == {BID, ASK}
    for bad in ("synthetic:BTCUSDT:2:loud", "synthetic:BTCUSDT:loud", "synthetic:BTCUSDT:2:quiet:3"):
        with pytest.raises(DataError, match="synthetic:SYMBOL\\[:minutes\\]\\[:MARKET\\].*quiet"):
            open_feed(bad)
