"""The public tape of one symbol: recent trades and 1-minute candles built from the replayed trades.

Serves `GET /fapi/v1/trades`, `/aggTrades`, `/klines`, `/ticker/24hr`, `/ticker/price` and the `@kline_<i>`,
`@ticker`, `@miniTicker` streams. Own fills of emulator accounts do not print here (they never change the
replayed market either). Candles are kept for `KEEP_MINUTES`; intervals above 1 m are folded from them.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

KEEP_TRADES = 1000  # GET /fapi/v1/trades limit max
KEEP_MINUTES = 7 * 1440
MINUTE_MS = 60_000
INTERVAL_MS = {"1m": MINUTE_MS, "3m": 3 * MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS,
               "30m": 30 * MINUTE_MS, "1h": 60 * MINUTE_MS, "2h": 120 * MINUTE_MS, "4h": 240 * MINUTE_MS,
               "6h": 360 * MINUTE_MS, "8h": 480 * MINUTE_MS, "12h": 720 * MINUTE_MS, "1d": 1440 * MINUTE_MS,
               "3d": 3 * 1440 * MINUTE_MS, "1w": 7 * 1440 * MINUTE_MS}  # 1M (calendar month) is not served


@dataclass
class Candle:
    open_ms: int
    open: int  # ticks
    high: int
    low: int
    close: int
    volume: int = 0  # lots
    quote: float = 0.0
    count: int = 0
    taker_buy: int = 0
    taker_buy_quote: float = 0.0
    first_id: int = 0
    last_id: int = 0

    def merge(self, other: "Candle") -> None:
        self.high, self.low, self.close = max(self.high, other.high), min(self.low, other.low), other.close
        self.volume += other.volume
        self.quote += other.quote
        self.count += other.count
        self.taker_buy += other.taker_buy
        self.taker_buy_quote += other.taker_buy_quote
        self.last_id = other.last_id


class Tape:
    def __init__(self, tick_size: float, lot_size: float):
        self.unit = tick_size * lot_size
        self.trades: collections.deque = collections.deque(maxlen=KEEP_TRADES)  # (id, tick, lots, ms, m)
        self.minutes: collections.deque[Candle] = collections.deque(maxlen=KEEP_MINUTES)
        self.version = 0  # bumped on every trade: streams publish only what changed

    def add(self, trade_id: int, tick: int, lots: int, ms: int, buyer_is_maker: bool) -> None:
        self.trades.append((trade_id, tick, lots, ms, buyer_is_maker))
        self.version += 1
        start = ms - ms % MINUTE_MS
        c = self.minutes[-1] if self.minutes else None
        if c is None or c.open_ms < start:
            c = Candle(start, tick, tick, tick, tick, first_id=trade_id, last_id=trade_id)
            self.minutes.append(c)  # (a clock_skew fault moving time back keeps adding to the last candle)
        c.high, c.low, c.close = max(c.high, tick), min(c.low, tick), tick
        quote = tick * lots * self.unit
        c.volume += lots
        c.quote += quote
        c.count += 1
        c.last_id = trade_id
        if not buyer_is_maker:
            c.taker_buy += lots
            c.taker_buy_quote += quote

    def last(self):
        return self.trades[-1] if self.trades else None

    def candles(self, interval_ms: int, start_ms: int | None = None, end_ms: int | None = None,
                limit: int = 500) -> list[Candle]:
        """Candles of `interval_ms` (folded from minutes), oldest first, the newest `limit` within the range."""
        out: list[Candle] = []
        for m in self.minutes:
            if (start_ms is not None and m.open_ms + MINUTE_MS <= start_ms) or (end_ms is not None and m.open_ms > end_ms):
                continue
            open_ms = m.open_ms - m.open_ms % interval_ms
            if out and out[-1].open_ms == open_ms:
                out[-1].merge(m)
            else:
                out.append(Candle(open_ms, m.open, m.high, m.low, m.close, m.volume, m.quote, m.count, m.taker_buy,
                                  m.taker_buy_quote, m.first_id, m.last_id))
        if start_ms is not None and end_ms is None:
            return out[:limit]
        return out[-limit:] if limit else out

    def window(self, now_ms: int, span_ms: int = 1440 * MINUTE_MS) -> Candle | None:
        """One candle folding the last `span_ms` (the rolling 24 h ticker; minute resolution)."""
        acc = None
        for m in self.minutes:
            if m.open_ms + MINUTE_MS <= now_ms - span_ms:
                continue
            if acc is None:
                acc = Candle(m.open_ms, m.open, m.high, m.low, m.close, m.volume, m.quote, m.count, m.taker_buy,
                             m.taker_buy_quote, m.first_id, m.last_id)
            else:
                acc.merge(m)
        return acc
