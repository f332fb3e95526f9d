"""The emulator's public tape (1-minute candles folded into longer intervals, the rolling 24 h window) and
Binance's stream routes."""
from __future__ import annotations

from hftbacktest.binance.wire import stream_route
from hftbacktest.emulator.tape import MINUTE_MS, Tape


def _tape():
    t = Tape(0.1, 0.001)
    base = 1_700_000_000_000 - 1_700_000_000_000 % (5 * MINUTE_MS)
    # (minute offset, tick, lots, buyer_is_maker)
    for i, (minute, tick, lots, m) in enumerate([(0, 100, 2, False), (0, 105, 1, True), (1, 95, 3, False),
                                                 (4, 110, 1, False), (5, 90, 4, True)]):
        t.add(i + 1, tick, lots, base + minute * MINUTE_MS + 1000, m)
    return t, base


def test_minute_candles_and_folding():
    t, base = _tape()
    ones = t.candles(MINUTE_MS, limit=0)
    assert [(c.open_ms - base) // MINUTE_MS for c in ones] == [0, 1, 4, 5]  # minutes without trades: no candle
    first = ones[0]
    assert (first.open, first.high, first.low, first.close, first.volume, first.count) == (100, 105, 100, 105, 3, 2)
    assert first.taker_buy == 2 and first.first_id == 1 and first.last_id == 2
    five = t.candles(5 * MINUTE_MS, limit=0)
    assert [(c.open_ms - base) // MINUTE_MS for c in five] == [0, 5]
    c = five[0]
    assert (c.open, c.high, c.low, c.close, c.volume, c.count, c.first_id, c.last_id) == (100, 110, 95, 110, 7, 4, 1, 4)
    assert abs(c.quote - (100 * 2 + 105 + 95 * 3 + 110) * 0.1 * 0.001) < 1e-12
    assert t.candles(MINUTE_MS, limit=2)[0].open_ms == base + 4 * MINUTE_MS  # the newest `limit`
    assert t.candles(MINUTE_MS, start_ms=base + MINUTE_MS, limit=2)[0].open_ms == base + MINUTE_MS  # oldest first
    assert ones[0].volume == 3, "folding must not modify the stored minutes"


def test_rolling_window():
    t, base = _tape()
    w = t.window(base + 6 * MINUTE_MS, span_ms=2 * MINUTE_MS)
    assert (w.open, w.close, w.count) == (110, 90, 2)
    assert t.window(base + 5 * MINUTE_MS + 1, span_ms=MINUTE_MS).count == 2  # minute resolution: minutes 4 and 5
    assert Tape(0.1, 0.001).window(base) is None


def test_stream_routes():
    public = ["btcusdt@depth", "btcusdt@depth@0ms", "btcusdt@depth5@100ms", "btcusdt@bookTicker", "btcusdt@trade",
              "btcusdt@rpiDepth@500ms"]
    market = ["btcusdt@aggTrade", "btcusdt@markPrice@1s", "btcusdt@kline_1m", "btcusdt@ticker", "btcusdt@miniTicker",
              "btcusdt@forceOrder", "!markPrice@arr"]
    assert {stream_route(s) for s in public} == {"public"} and {stream_route(s) for s in market} == {"market"}
