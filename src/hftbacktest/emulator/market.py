"""Market side of the emulator: symbol specs, the emulator's own L2 book, and feed sources.

A feed source yields `(offset_ns, item)` pairs, where `offset_ns` is the time since the start of the feed and
`item` is one of the small tuples below (already in integer ticks / lots, so the replay loop does no parsing):

* `("depth", [(side, tick, lots), ...])` — absolute level quantities, side +1 bid / -1 ask, 0 lots removes;
* `("bbo", bid_tick, bid_lots, ask_tick, ask_lots)` — a bookTicker: sets both touch levels, removes crossed levels;
* `("trade", tick, lots, buyer_is_maker)`.

The emulator never forwards the recorded update ids: it applies every item to its own book and re-emits the
changes under its own `U`/`u`/`pu` chain, so snapshots and diffs are always consistent with each other.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import orjson

from ..errors import DataError

BID, ASK = 1, -1


@lru_cache(maxsize=64)
def decimals_of(step: float) -> int:
    """Number of decimals needed to print multiples of `step` exactly (0.1 -> 1, 0.001 -> 3, 1 -> 0)."""
    text = f"{step:.12f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


@dataclass(frozen=True)
class SymbolSpec:
    """Trading rules of one symbol, served by exchangeInfo and enforced on orders."""

    symbol: str
    tick_size: float
    lot_size: float
    min_qty: float
    max_qty: float
    market_max_qty: float
    min_notional: float
    max_num_orders: int = 200
    percent_up: float = 1.05
    percent_down: float = 0.95
    base_asset: str = ""
    quote_asset: str = "USDT"
    price_precision: int | None = None  # exchangeInfo pricePrecision (may exceed the tick's decimals)
    qty_precision: int | None = None

    @property
    def price_decimals(self) -> int:
        return decimals_of(self.tick_size) if self.price_precision is None else self.price_precision

    @property
    def qty_decimals(self) -> int:
        return decimals_of(self.lot_size) if self.qty_precision is None else self.qty_precision

    def fmt_price(self, tick: int) -> str:
        return f"{tick * self.tick_size:.{self.price_decimals}f}"

    def fmt_qty(self, lots: int) -> str:
        return f"{lots * self.lot_size:.{self.qty_decimals}f}"


# Binance USD-M values for the symbols we ship samples of (tick/step/min notional as listed by exchangeInfo).
KNOWN_SYMBOLS = {
    "BTCUSDT": SymbolSpec("BTCUSDT", 0.1, 0.001, 0.001, 1000.0, 120.0, 100.0, base_asset="BTC", price_precision=2),
    "ETHUSDT": SymbolSpec("ETHUSDT", 0.01, 0.001, 0.001, 10000.0, 2000.0, 20.0, base_asset="ETH"),
}


def spec_for(symbol: str, tick_size: float | None = None, lot_size: float | None = None) -> SymbolSpec:
    symbol = symbol.upper()
    known = KNOWN_SYMBOLS.get(symbol)
    if known is not None and tick_size is None and lot_size is None:
        return known
    tick = tick_size if tick_size is not None else (known.tick_size if known else 0.01)
    lot = lot_size if lot_size is not None else (known.lot_size if known else 0.001)
    return SymbolSpec(symbol, tick, lot, lot, 1e6, 1e5, known.min_notional if known else 5.0,
                      base_asset=symbol.removesuffix("USDT"))


class Book:
    """Authoritative L2 book in integer ticks/lots. `set` returns the previous quantity."""

    __slots__ = ("bids", "asks", "best_bid", "best_ask")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.best_bid: int | None = None
        self.best_ask: int | None = None

    def side(self, side: int) -> dict[int, int]:
        return self.bids if side == BID else self.asks

    def qty(self, side: int, tick: int) -> int:
        return self.side(side).get(tick, 0)

    def set(self, side: int, tick: int, lots: int) -> int:
        levels = self.bids if side == BID else self.asks
        prev = levels.get(tick, 0)
        if lots > 0:
            levels[tick] = lots
            if side == BID:
                if self.best_bid is None or tick > self.best_bid:
                    self.best_bid = tick
            elif self.best_ask is None or tick < self.best_ask:
                self.best_ask = tick
        elif prev:
            del levels[tick]
            if side == BID and tick == self.best_bid:
                self.best_bid = self._next(levels, tick, -1)
            elif side == ASK and tick == self.best_ask:
                self.best_ask = self._next(levels, tick, 1)
        return prev

    @staticmethod
    def _next(levels: dict[int, int], tick: int, step: int) -> int | None:
        """The next best level after removing `tick`: probe nearby ticks first, scan only if the book is sparse."""
        if not levels:
            return None
        for t in range(tick + step, tick + 64 * step, step):
            if t in levels:
                return t
        return max(levels) if step < 0 else min(levels)

    def levels(self, side: int, limit: int) -> list[tuple[int, int]]:
        levels = self.side(side)
        ticks = sorted(levels, reverse=(side == BID))[:limit]
        return [(t, levels[t]) for t in ticks]

    def walk(self, side: int, limit_tick: int | None):
        """Levels of `side` from the touch outwards, up to `limit_tick` inclusive (None = no limit)."""
        levels = self.side(side)
        if side == ASK:
            ticks = sorted(t for t in levels if limit_tick is None or t <= limit_tick)
        else:
            ticks = sorted((t for t in levels if limit_tick is None or t >= limit_tick), reverse=True)
        return [(t, levels[t]) for t in ticks]

    def mid_tick(self) -> float | None:
        if self.best_bid is None or self.best_ask is None:
            return None
        return (self.best_bid + self.best_ask) / 2.0


@dataclass
class RecordedFeed:
    """A parsed collector file: the starting snapshot and the timed items after it."""

    symbol: str
    spec: SymbolSpec
    snapshot: list[tuple[int, int, int]]  # (side, tick, lots)
    items: list[tuple[int, tuple]]
    duration_ns: int
    source: str


def _ticks(text: str, step: float) -> int:
    return int(round(float(text) / step))


def _read_collector(path: str):
    """(local ns, message) pairs of a collector file, with a typed error naming the bad line."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: feed file not found")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            head, _, body = line.partition(b" ")
            try:
                yield int(head), orjson.loads(body)
            except (ValueError, orjson.JSONDecodeError) as exc:
                raise DataError(f"{path}:{lineno}: malformed collector line ({exc})") from None


@lru_cache(maxsize=8)
def load_recorded(path: str, tick_size: float | None = None, lot_size: float | None = None) -> RecordedFeed:
    """Parse a raw Binance USD-M collector file (`<19-digit ns> <json>` per line, gzip or plain)."""
    symbol_hint = Path(path).name.split("_")[0].upper()
    return build_feed(_read_collector(path), str(path), symbol_hint, tick_size, lot_size)


def build_feed(messages, source: str, symbol_hint: str = "", tick_size: float | None = None,
               lot_size: float | None = None) -> RecordedFeed:
    """Turn collector-format messages into replay items.

    Replay starts at the first REST depth snapshot; earlier stream messages are skipped (the book has no base
    before it). Without any snapshot the book is built from the diffs alone, starting empty.
    """
    rows: list[tuple[int, dict]] = []
    symbol = None
    snapshot_index = None
    for ts, msg in messages:
        data = msg.get("data", msg) if isinstance(msg, dict) else None
        if not isinstance(data, dict):
            raise DataError(f"{source}: expected JSON objects, got {type(msg).__name__}")
        if "lastUpdateId" in data:
            if snapshot_index is None:
                snapshot_index = len(rows)
                rows.append((ts, data))
            continue
        if symbol is None and "s" in data:
            symbol = data["s"].upper()
        rows.append((ts, data))
    symbol = symbol or symbol_hint
    if not symbol:
        raise DataError(f"{source}: cannot tell the symbol (no message carries 's')")
    spec = spec_for(symbol, tick_size, lot_size)
    tick, lot = spec.tick_size, spec.lot_size
    px_cache: dict[str, int] = {}
    qty_cache: dict[str, int] = {}

    def px_tick(text: str) -> int:
        v = px_cache.get(text)
        if v is None:
            v = px_cache[text] = _ticks(text, tick)
        return v

    def qty_lots(text: str) -> int:
        v = qty_cache.get(text)
        if v is None:
            v = qty_cache[text] = _ticks(text, lot)
        return v

    snapshot: list[tuple[int, int, int]] = []
    start = 0
    last_id = 0
    if snapshot_index is not None:
        start = snapshot_index + 1
        snap = rows[snapshot_index][1]
        last_id = snap["lastUpdateId"]
        for side, key in ((BID, "bids"), (ASK, "asks")):
            for px, qty in snap.get(key, ()):
                lots = qty_lots(qty)
                if lots > 0:
                    snapshot.append((side, px_tick(px), lots))
    t0 = rows[snapshot_index][0] if snapshot_index is not None else (rows[0][0] if rows else 0)
    items: list[tuple[int, tuple]] = []
    for ts, data in rows[start:]:
        kind = data.get("e")
        if kind == "depthUpdate":
            if data.get("u", 0) < last_id:
                continue  # already contained in the snapshot
            changes = [(BID, px_tick(px), qty_lots(q)) for px, q in data.get("b", ())]
            changes += [(ASK, px_tick(px), qty_lots(q)) for px, q in data.get("a", ())]
            items.append((ts - t0, ("depth", changes)))
        elif kind == "bookTicker":
            items.append((ts - t0, ("bbo", px_tick(data["b"]), qty_lots(data["B"]),
                                    px_tick(data["a"]), qty_lots(data["A"]))))
        elif kind == "trade":
            if data.get("X", "MARKET") != "MARKET":
                continue
            items.append((ts - t0, ("trade", px_tick(data["p"]), qty_lots(data["q"]), bool(data["m"]))))
    items.sort(key=lambda it: it[0])  # collector timestamps are monotonic; keep a stable order regardless
    duration = items[-1][0] if items else 0
    return RecordedFeed(symbol, spec, snapshot, items, duration, source)


@lru_cache(maxsize=8)
def synthetic_feed(symbol: str, minutes: float = 2.0, seed: int = 1) -> RecordedFeed:
    """The data package's synthetic Binance feed (Hawkes trades, random-walk book), deterministic per seed."""
    from ..data.synthetic import FeedConfig, SyntheticFeed

    spec = spec_for(symbol)
    price = {"BTCUSDT": 61_000.0, "ETHUSDT": 2_600.0}.get(spec.symbol, 100.0)
    config = FeedConfig(symbol=spec.symbol, minutes=minutes, seed=seed, tick_size=spec.tick_size,
                        lot_size=spec.lot_size, initial_price=price, mark_price=False)
    return build_feed(SyntheticFeed(config).messages(), f"synthetic:{spec.symbol}", spec.symbol)


def open_feed(source: str, seed: int = 1) -> RecordedFeed:
    """`source` is a collector file path or `synthetic:SYMBOL[:minutes]`."""
    if source.startswith("synthetic:"):
        parts = source.split(":")
        try:
            minutes = float(parts[2]) if len(parts) > 2 else 2.0
        except ValueError:
            raise DataError(f"{source}: expected synthetic:SYMBOL[:minutes]") from None
        return synthetic_feed(parts[1], minutes, seed)
    return load_recorded(str(source))
