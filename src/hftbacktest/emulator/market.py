"""Market side of the emulator: symbol specs, the emulator's own L2 book, and feed sources.

A feed source yields `(offset_ns, item)` pairs, where `offset_ns` is the time since the start of the feed and
`item` is one of the small tuples below (already in integer ticks / lots, so the replay loop does no parsing):

* `("depth", [(side, tick, lots), ...])` — absolute level quantities, side +1 bid / -1 ask, 0 lots removes;
* `("bbo", bid_tick, bid_lots, ask_tick, ask_lots)` — a bookTicker: sets both touch levels, removes crossed levels;
* `("trade", tick, lots, buyer_is_maker)`.

Recorded files are parsed once into a list; the synthetic generator is consumed lazily while it is replayed.

The emulator never forwards the recorded update ids: it applies every item to its own book and re-emits the
changes under its own `U`/`u`/`pu` chain, so snapshots and diffs are always consistent with each other.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import orjson

from ..binance import wire
from ..binance.numbers import to_steps
from ..binance.symbols import SymbolSpec
from ..errors import DataError

BID, ASK = 1, -1


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

    def mid_tick(self) -> float | None:
        if self.best_bid is None or self.best_ask is None:
            return None
        return (self.best_bid + self.best_ask) / 2.0


@dataclass
class Feed:
    """A market source: the starting snapshot and the timed items after it (`iter_items()` restarts it)."""

    symbol: str
    spec: SymbolSpec
    snapshot: list[tuple[int, int, int]]  # (side, tick, lots)
    make_items: Callable[[], Iterator[tuple[int, tuple]]]
    source: str

    def iter_items(self) -> Iterator[tuple[int, tuple]]:
        return self.make_items()


class _Converter:
    """Binance message dicts -> replay items in integer ticks/lots (price/qty strings repeat: cache them)."""

    def __init__(self, spec: SymbolSpec):
        self.tick, self.lot = spec.tick_size, spec.lot_size
        self.px_cache: dict[str, int] = {}
        self.qty_cache: dict[str, int] = {}

    def px(self, text: str) -> int:
        v = self.px_cache.get(text)
        if v is None:
            v = self.px_cache[text] = to_steps(text, self.tick)
        return v

    def qty(self, text: str) -> int:
        v = self.qty_cache.get(text)
        if v is None:
            v = self.qty_cache[text] = to_steps(text, self.lot)
        return v

    def snapshot(self, snap: dict) -> list[tuple[int, int, int]]:
        out = []
        for side, key in ((BID, "bids"), (ASK, "asks")):
            for px, qty in snap.get(key, ()):
                lots = self.qty(qty)
                if lots > 0:
                    out.append((side, self.px(px), lots))
        return out

    def items(self, rows, t0: int, last_id: int) -> Iterator[tuple[int, tuple]]:
        px, qty = self.px, self.qty
        for ts, data in rows:
            kind = data.get("e")
            if kind == wire.DEPTH_UPDATE:
                if data.get("u", 0) < last_id:
                    continue  # already contained in the snapshot
                changes = [(BID, px(p), qty(q)) for p, q in data.get("b", ())]
                changes += [(ASK, px(p), qty(q)) for p, q in data.get("a", ())]
                yield ts - t0, ("depth", changes)
            elif kind == wire.BOOK_TICKER:
                yield ts - t0, ("bbo", px(data["b"]), qty(data["B"]), px(data["a"]), qty(data["A"]))
            elif kind == wire.TRADE and wire.is_market_trade(data):
                yield ts - t0, ("trade", px(data["p"]), qty(data["q"]), bool(data["m"]))


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


def _data(msg, source: str) -> dict:
    data = msg.get("data", msg) if isinstance(msg, dict) else None
    if not isinstance(data, dict):
        raise DataError(f"{source}: expected JSON objects, got {type(msg).__name__}")
    return data


@lru_cache(maxsize=8)
def load_recorded(path: str, tick_size: float | None = None, lot_size: float | None = None) -> Feed:
    """Parse a raw Binance USD-M collector file (`<19-digit ns> <json>` per line, gzip or plain), eagerly.

    Replay starts at the first REST depth snapshot; earlier stream messages are skipped (the book has no base
    before it). Without any snapshot the book is built from the diffs alone, starting empty.
    """
    rows: list[tuple[int, dict]] = []
    symbol = None
    snapshot_index = None
    for ts, msg in _read_collector(path):
        data = _data(msg, path)
        if "lastUpdateId" in data:
            if snapshot_index is None:
                snapshot_index = len(rows)
                rows.append((ts, data))
            continue
        if symbol is None and "s" in data:
            symbol = data["s"].upper()
        rows.append((ts, data))
    symbol = symbol or Path(path).name.split("_")[0].upper()
    spec = spec_for(symbol, tick_size, lot_size)
    conv = _Converter(spec)
    if snapshot_index is not None:
        snap_ts, snap = rows[snapshot_index]
        snapshot, last_id, rest = conv.snapshot(snap), snap["lastUpdateId"], rows[snapshot_index + 1:]
    else:
        snap_ts, snapshot, last_id, rest = (rows[0][0] if rows else 0), [], 0, rows
    items = sorted(conv.items(rest, snap_ts, last_id), key=lambda it: it[0])  # stable; collector is monotonic
    return Feed(symbol, spec, snapshot, lambda: iter(items), str(path))


def synthetic_feed(symbol: str, minutes: float = 1440.0, seed: int = 1, market: str = "default") -> Feed:
    """The data package's synthetic Binance feed (Hawkes trades, random-walk book), generated lazily while it
    is replayed, deterministic per seed (default: a day long, so paper trading sees no loop seam). `market`
    names one of `hftbacktest.data.synthetic.MARKETS`."""
    from ..data.synthetic import SyntheticFeed, market_config

    spec = spec_for(symbol)
    price = {"BTCUSDT": 61_000.0, "ETHUSDT": 2_600.0}.get(spec.symbol, 100.0)
    config = market_config(market, symbol=spec.symbol, minutes=minutes, seed=seed, tick_size=spec.tick_size,
                           lot_size=spec.lot_size, initial_price=price, mark_price=False)
    source = f"synthetic:{spec.symbol}"
    conv = _Converter(spec)

    def start():
        messages = SyntheticFeed(config).messages()
        for ts, msg in messages:
            data = _data(msg, source)
            if "lastUpdateId" in data:
                return ts, data, ((t, _data(m, source)) for t, m in messages)
        raise DataError(f"{source}: the generator produced no depth snapshot")

    t0, snap, _ = start()

    def make_items():
        t0, snap, rows = start()
        return conv.items(rows, t0, snap["lastUpdateId"])

    return Feed(spec.symbol, spec, conv.snapshot(snap), make_items, source)


def open_feed(source: str, seed: int = 1) -> Feed:
    """`source` is a collector file path or `synthetic:SYMBOL[:minutes][:MARKET]`."""
    if source.startswith("synthetic:"):
        parts = source.split(":")
        from ..data.synthetic import MARKETS

        market = parts.pop() if len(parts) > 2 and parts[-1] in MARKETS else "default"
        try:
            if len(parts) > 3:
                raise ValueError
            minutes = float(parts[2]) if len(parts) > 2 else 1440.0
        except ValueError:
            raise DataError(f"{source}: expected synthetic:SYMBOL[:minutes][:MARKET] "
                            f"(markets: {', '.join(MARKETS)})") from None
        return synthetic_feed(parts[1], minutes, seed, market)
    return load_recorded(str(source))
