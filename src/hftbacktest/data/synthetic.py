"""Synthetic Binance USD-M raw feed in the collector's exact format, deterministic for a seed.

Price model (the book follows a price it does not know, so resting orders are adversely selected):
* A latent value V moves as a Brownian motion (`daily_volatility`, relative) plus jumps (Poisson,
  `jump_rate_per_min`, exponential size of mean `jump_bps`, random sign). Informed traders know V.
* The fair price F that liquidity providers quote around discovers V gradually (it closes the fraction
  `discovery_rate` of the gap per second) and takes the permanent impact of every noise or informed trade:
  `impact_bps` x sqrt(size / median size) in the aggressor's direction.
* An order book on a tick grid, 1000+ levels a side, quantities in lots drawn from a log-normal (`level_size`).
* Market orders arrive as a Hawkes process (intensity mu + sum alpha*exp(-beta*age), simulated by thinning)
  plus two state-dependent parts: informed flow at `informed_rate` per tick between V and the mid (it buys
  below V, sells above, takes part of the best level), and arbitrage at `arbitrage_rate` per tick that F lies
  beyond the touch (it sweeps every stale level, one trade message per level as on Binance). The rest is
  noise: buy/sell biased towards the previous side (clustering), size lognormal x `trade_size`.
* So the mid moves in the direction of aggressive trades, and keeps moving after informed ones: a passive
  order is filled mostly when the price is about to move through it. With the demo's maker rebate the
  documentation's market maker ends near break-even, sign and size depending on the seed.
* Every `depth_interval_ms` a diff-depth message reports the changed levels: levels hit by trades, liquidity
  providers re-quoting around F (stale levels cancelled with probability `stale_cancel_prob`, the spread
  refilled from the side away from F) and random churn (new quantities and cancellations at geometric distance
  from the top), with update ids U/u/pu chained as on Binance futures (`pu` = previous `u`, `U` jumps).
* bookTicker after every change of the top of the book, markPriceUpdate every second (mark = mid; the funding
  rate announced for the next funding time, every `funding_interval_ms`, reverts slowly to `funding_rate`).
* Local receive time = exchange time + latency (base + exponential jitter) + clock offset; lines are written
  in receive order, as the collector does. The file starts like a real recording: diffs first, then the REST
  snapshot line that the collector fetched (served from the book of its moment: its lastUpdateId is the `u` of
  the latest diff, so no newer diff arrives before it).

Fault injection (for tests): dropped diffs (sequence gaps, followed by a fresh snapshot as the collector would
fetch), duplicated lines, a crossed update (a bid at/above the best ask, withdrawn by the next diff), garbage
lines. `SyntheticFeed.faults` lists what was injected with line numbers once the lines have been produced.
"""
from __future__ import annotations

import gzip
import heapq
import io
import math
import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import orjson

from .. import _atomic
from ..errors import ConfigError


@dataclass
class FeedConfig:
    symbol: str = "BTCUSDT"
    start_ms: int = 1_723_161_600_000  # 2024-08-09 00:00:00 UTC
    minutes: float = 10.0
    seed: int = 1
    tick_size: float = 0.1
    lot_size: float = 0.001
    initial_price: float = 61_000.0
    levels: int = 1200  # levels per side kept in the book (snapshot shows 1000)
    depth_interval_ms: float = 50.0
    trade_mu: float = 8.0  # Hawkes baseline (trades/s)
    trade_alpha: float = 30.0  # jump of the intensity after each trade (1/s)
    trade_beta: float = 60.0  # decay rate (1/s); alpha/beta < 1 keeps it stationary
    churn_per_update: float = 12.0  # mean number of random level changes per diff
    level_size: float = 1.0  # a level holds lognormal(3, 1.3) x level_size lots (median 20 at 1.0)
    trade_size: float = 0.3  # a noise trade takes lognormal(3, 1.3) x trade_size lots (capped by the level)
    daily_volatility: float = 0.03  # of the latent fair price (relative, per sqrt(day))
    impact_bps: float = 0.02  # permanent fair-price move of a median-size trade, in the aggressor's direction
    jump_rate_per_min: float = 0.5
    jump_bps: float = 2.0  # mean absolute jump of the fair price
    discovery_rate: float = 1.0  # 1/s: the quoted fair price closes this fraction of its gap to the value per second
    informed_rate: float = 0.5  # informed trades/s per tick between the value and the mid
    arbitrage_rate: float = 20.0  # extra trades/s per tick the fair price lies beyond the touch
    stale_cancel_prob: float = 0.4  # chance per diff that a quote on the wrong side of the fair price is pulled
    churn_touch: bool = True  # random churn may replace or remove the best levels (False: only the levels behind)
    # queue turnover at the touch: the chance per diff and side that part of the best level's queue is cancelled
    # (a share uniform in [0, touch_cancel_max), at least one lot, the level keeps one), and the same chance that
    # new orders join it (lots drawn as a level's x touch_join_size)
    touch_turnover: float = 0.0
    touch_cancel_max: float = 0.6
    touch_join_size: float = 0.5
    latency_ms: float = 3.0
    latency_jitter_ms: float = 2.0
    clock_offset_ms: float = 0.0  # local clock minus exchange clock (negative: local is behind)
    mark_price: bool = True
    # funding: settlement every funding_interval_ms from the epoch (Binance: 8 h, some symbols 4 h or 1 h; a short
    # interval makes a short feed span several funding times); the rate announced each second reverts to
    # funding_rate with a half-life of funding_half_life_s, deviating by funding_rate_sd in the long run
    funding_interval_ms: int = 28_800_000
    funding_rate: float = 1e-4
    funding_rate_sd: float = 5e-5
    funding_half_life_s: float = 3600.0
    # fault injection counts
    gaps: int = 0
    duplicates: int = 0
    crossed: int = 0
    garbage: int = 0


# Named markets: FeedConfig overrides. "quiet": the value and the fair price stand still (no volatility, jumps,
# impact, informed or arbitrage flow), so the touch stays on the same two prices; noise trades hit it without
# trading through, and orders keep leaving and joining its queues. A resting order is filled when the trades
# reach it in the queue, so the queue model decides which orders fill and when.
MARKETS: dict[str, dict] = {
    "default": {},
    "quiet": {"daily_volatility": 0.0, "jump_rate_per_min": 0.0, "impact_bps": 0.0, "informed_rate": 0.0,
              "arbitrage_rate": 0.0, "churn_touch": False, "touch_turnover": 0.3, "trade_mu": 16.0,
              "trade_size": 0.05, "level_size": 0.5},
}


def market_config(market: str = "default", **kwargs) -> FeedConfig:
    """The FeedConfig of a named market (`MARKETS`); `kwargs` are further FeedConfig fields."""
    if market not in MARKETS:
        raise ConfigError(f"unknown synthetic market {market!r} (known: {', '.join(MARKETS)})")
    return FeedConfig(**{**MARKETS[market], **kwargs})


@dataclass
class Fault:
    kind: str  # gap | duplicate | crossed | garbage
    exch_ms: int
    line: int | None = None  # 1-based line of the first affected line (set when written)
    details: str = ""


@dataclass(order=True)
class _Out:
    local_ns: int
    seq: int
    text: str = field(compare=False)
    fault: Fault | None = field(compare=False, default=None)


class _Draws:
    """Scalar draws from a seeded numpy Generator, taken from pre-drawn blocks: numpy's scalar calls cost
    microseconds each and the simulation makes hundreds of thousands of them. Array draws go straight through."""

    _BLOCK = 8192

    def __init__(self, seed: int):
        self.gen = np.random.default_rng(seed)
        self._u: list[float] = []
        self._n: list[float] = []

    def random(self) -> float:
        if not self._u:
            self._u = self.gen.random(self._BLOCK).tolist()
        return self._u.pop()

    def standard_normal(self) -> float:
        if not self._n:
            self._n = self.gen.standard_normal(self._BLOCK).tolist()
        return self._n.pop()

    def integers(self, low: int, high: int, size=None):
        if size is not None:
            return self.gen.integers(low, high, size)
        return low + int(self.random() * (high - low))

    def exponential(self, scale: float) -> float:
        return -scale * math.log(1.0 - self.random())

    def lognormal(self, mean: float, sigma: float) -> float:
        return math.exp(mean + sigma * self.standard_normal())

    def normal(self, loc: float, scale: float) -> float:
        return loc + scale * self.standard_normal()

    def geometric(self, p: float) -> int:
        return max(1, math.ceil(math.log(1.0 - self.random()) / math.log(1.0 - p)))

    def uniform(self, low: float, high: float, size=None):
        if size is not None:
            return self.gen.uniform(low, high, size)
        return low + (high - low) * self.random()

    def poisson(self, lam: float) -> int:
        return int(self.gen.poisson(lam))


class SyntheticFeed:
    """Generates the feed incrementally: iterate `lines()` or `messages()`, or call `write(path)`."""

    def __init__(self, config: FeedConfig | None = None, **kwargs):
        self.cfg = config or FeedConfig(**kwargs)
        c = self.cfg
        self.rng = _Draws(c.seed)
        self.dec_px = max(0, -int(math.floor(math.log10(c.tick_size) + 1e-9)))
        self.dec_qty = max(0, -int(math.floor(math.log10(c.lot_size) + 1e-9)))
        self.sym_l = c.symbol.lower()
        self.faults: list[Fault] = []
        self._seq = 0
        self._stream_last: dict[str, int] = {}
        self._uid = 5_000_000_000_000 + int(self.rng.integers(0, 1_000_000_000))
        self._last_u = None
        self._rate = c.funding_rate  # the funding rate announced last
        self._trade_id = 4_000_000_000 + int(self.rng.integers(0, 1_000_000))
        self._init_book()

    # -- book ------------------------------------------------------------------------------------------
    def _init_book(self):
        c, rng = self.cfg, self.rng
        mid = int(round(c.initial_price / c.tick_size))
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        for i in range(c.levels):
            if i == 0 or rng.random() < 0.85:
                self.bids[mid - 1 - i] = self._lots()
            if i == 0 or rng.random() < 0.85:
                self.asks[mid + i] = self._lots()
        self.best_bid = mid - 1
        self.best_ask = mid
        self.value = self.fair = mid - 0.5  # latent value and the fair price quoted around, in ticks
        ticks_per_bp = c.initial_price * 1e-4 / c.tick_size
        self._sigma = c.daily_volatility * 1e4 * ticks_per_bp / math.sqrt(86_400.0)  # ticks per sqrt(second)
        self._impact = c.impact_bps * ticks_per_bp
        self._jump = c.jump_bps * ticks_per_bp
        self._median_trade_lots = math.exp(3.0) * c.trade_size
        self._changed_b: dict[int, int] = {}
        self._changed_a: dict[int, int] = {}

    def _lots(self, scale: float | None = None) -> int:
        """A level's quantity (scale `level_size`) or, with a scale, an order's."""
        scale = self.cfg.level_size if scale is None else scale
        return max(1, int(self.rng.lognormal(3.0, 1.3) * scale))

    def _set(self, side_bid: bool, tick: int, lots: int):
        book, changed = (self.bids, self._changed_b) if side_bid else (self.asks, self._changed_a)
        if lots <= 0:
            book.pop(tick, None)
        else:
            book[tick] = lots
            if side_bid and tick > self.best_bid:
                self.best_bid = tick
            elif not side_bid and tick < self.best_ask:
                self.best_ask = tick
        changed[tick] = max(lots, 0)
        self._uid += int(self.rng.integers(1, 40))

    def _refresh_best(self):
        # walk outwards from the old best (the next level is almost always a few ticks away); scan if far
        if self.best_bid not in self.bids:
            for tick in range(self.best_bid - 1, self.best_bid - 64, -1):
                if tick in self.bids:
                    break
            else:
                tick = max(self.bids) if self.bids else self.best_ask - 1
            self.best_bid = tick
        if self.best_ask not in self.asks:
            for tick in range(self.best_ask + 1, self.best_ask + 64):
                if tick in self.asks:
                    break
            else:
                tick = min(self.asks) if self.asks else self.best_bid + 1
            self.best_ask = tick

    def _trim(self):
        """Keep `levels` levels a side (drop far levels silently, like levels leaving the 1000-level view)."""
        c = self.cfg
        lo, hi = self.best_bid - 2 * c.levels, self.best_ask + 2 * c.levels
        for book, far in ((self.bids, lambda t: t < lo), (self.asks, lambda t: t > hi)):
            if len(book) > c.levels * 2:
                for t in [t for t in book if far(t)]:
                    del book[t]

    # -- formatting ----------------------------------------------------------------------------------
    def _px(self, tick: int) -> str:
        return f"{tick * self.cfg.tick_size:.{self.dec_px}f}"

    def _qty(self, lots: int) -> str:
        return f"{lots * self.cfg.lot_size:.{self.dec_qty}f}"

    def _local_ns(self, exch_ms: float, stream: str) -> int:
        """Receive time: exchange time + latency + clock offset, never earlier than the stream's previous
        message (one websocket delivers each stream in order; only different streams interleave)."""
        c = self.cfg
        lat = c.latency_ms + self.rng.exponential(c.latency_jitter_ms) + c.clock_offset_ms
        t = int(exch_ms * 1_000_000 + lat * 1_000_000) + int(self.rng.integers(0, 1000))
        t = max(t, self._stream_last.get(stream, 0) + 1)
        self._stream_last[stream] = t
        return t

    def _push(self, out: list, local_ns: int, obj, raw: str | None = None, fault: Fault | None = None):
        self._seq += 1
        text = raw if raw is not None else orjson.dumps(obj).decode()
        heapq.heappush(out, _Out(local_ns, self._seq, text, fault))

    def _envelope(self, stream: str, data: dict) -> dict:
        return {"stream": f"{self.sym_l}@{stream}", "data": data}

    def snapshot(self, exch_ms: int, last_update_id: int, depth: int = 1000) -> dict:
        """The REST `/fapi/v1/depth?limit=1000` response for the current book."""
        bids = sorted(self.bids, reverse=True)[:depth]
        asks = sorted(self.asks)[:depth]
        return {"lastUpdateId": last_update_id, "E": exch_ms + 1, "T": exch_ms,
                "bids": [[self._px(t), self._qty(self.bids[t])] for t in bids],
                "asks": [[self._px(t), self._qty(self.asks[t])] for t in asks]}

    # -- simulation ----------------------------------------------------------------------------------
    def _mispricing(self) -> float:
        """How far (ticks) the fair price lies beyond the touch; 0 while it is inside the spread."""
        return max(0.0, self.fair - self.best_ask, self.best_bid - self.fair)

    def _advance(self, dt_ms: float):
        """The value diffuses; the quoted fair price discovers it gradually."""
        if dt_ms > 0:
            self.value += self._sigma * math.sqrt(dt_ms / 1000.0) * self.rng.standard_normal()
            self.fair += (self.value - self.fair) * -math.expm1(-self.cfg.discovery_rate * dt_ms / 1000.0)

    def _trade(self, out, t_ms: float, buy: bool, kind: int):
        """A market order. An arbitrage one (kind 2) sweeps every level on the wrong side of the fair price (up to
        20); noise (0) and informed (1) ones take part of the best level and move the fair price (impact).
        One trade message per level, as Binance's trade stream does."""
        T = int(t_ms)
        for _ in range(20 if kind == 2 else 1):
            book = self.asks if buy else self.bids
            tick = self.best_ask if buy else self.best_bid
            avail = book.get(tick, 0)
            if kind == 2:
                if avail <= 0 or (tick >= self.fair if buy else tick <= self.fair):
                    break
                lots = avail
            else:
                lots = min(self._lots(self.cfg.trade_size * (1 + 2 * kind)), avail) if avail else 0
                if lots <= 0:
                    break
            self._set(not buy, tick, avail - lots)
            self._refresh_best()
            if kind != 2:  # arbitrage only aligns the book with the fair price; other flow moves it
                self.fair += (1.0 if buy else -1.0) * self._impact * math.sqrt(lots / self._median_trade_lots)
            self._trade_id += 1
            data = {"e": "trade", "E": T + int(self.rng.integers(0, 3)), "T": T, "s": self.cfg.symbol,
                    "t": self._trade_id, "p": self._px(tick), "q": self._qty(lots), "X": "MARKET", "m": not buy}
            self._push(out, self._local_ns(T, "trade"), self._envelope("trade", data))

    def _churn(self):
        rng, c = self.rng, self.cfg
        for _ in range(rng.poisson(c.churn_per_update)):
            bid = rng.random() < 0.5
            dist = int(rng.geometric(0.08)) - 1
            if dist == 0 and not c.churn_touch:
                continue
            if bid:
                tick = self.best_bid - dist
                if tick >= self.best_ask:
                    continue
            else:
                tick = self.best_ask + dist
                if tick <= self.best_bid:
                    continue
            r = rng.random()
            self._set(bid, tick, 0 if r < 0.3 else self._lots())
        self._requote()
        if c.touch_turnover > 0:
            self._turnover()
        if not self.bids:
            self._set(True, self.best_ask - 1, self._lots())
        if not self.asks:
            self._set(False, self.best_bid + 1, self._lots())
        self._refresh_best()

    def _turnover(self):
        """Orders leave and join the queues at the touch without moving the price (see `touch_turnover`)."""
        rng, c = self.rng, self.cfg
        for bid, tick in ((True, self.best_bid), (False, self.best_ask)):
            lots = (self.bids if bid else self.asks).get(tick, 0)
            r = rng.random()
            if lots > 1 and r < c.touch_turnover:
                gone = max(1, int(lots * rng.uniform(0.0, c.touch_cancel_max)))
                self._set(bid, tick, max(1, lots - gone))
            elif lots and r < 2 * c.touch_turnover:
                self._set(bid, tick, lots + self._lots(c.level_size * c.touch_join_size))

    def _requote(self):
        """Liquidity providers follow the fair price: pull some stale quotes, then quote the tick below the fair
        price (bid) and the tick above it (ask) when that improves the touch, with some levels behind."""
        rng, fair = self.rng, self.fair
        for tick in range(self.best_ask, min(math.ceil(fair), self.best_ask + 4 * self.cfg.levels)):
            if tick in self.asks and rng.random() < self.cfg.stale_cancel_prob:
                self._set(False, tick, 0)
        for tick in range(self.best_bid, max(math.floor(fair), self.best_bid - 4 * self.cfg.levels), -1):
            if tick in self.bids and rng.random() < self.cfg.stale_cancel_prob:
                self._set(True, tick, 0)
        self._refresh_best()
        new_bid = min(math.floor(fair), self.best_ask - 1)
        for tick in range(new_bid, self.best_bid, -1):  # the new touch always, the levels behind it sometimes
            if tick == new_bid or rng.random() < 0.5:
                self._set(True, tick, self._lots())
        self._refresh_best()
        new_ask = max(math.floor(fair) + 1, self.best_bid + 1)
        for tick in range(new_ask, self.best_ask):
            if tick == new_ask or rng.random() < 0.5:
                self._set(False, tick, self._lots())
        self._refresh_best()

    def _depth_msg(self, T: int, first_id: int, extra_b=None) -> dict:
        b = dict(sorted(self._changed_b.items()))
        if extra_b:
            b.update(extra_b)
        a = dict(sorted(self._changed_a.items()))
        self._changed_b, self._changed_a = {}, {}
        u = self._uid
        pu = self._last_u if self._last_u is not None else first_id - int(self.rng.integers(1, 100))
        self._last_u = u
        return {"e": "depthUpdate", "E": T + int(self.rng.integers(0, 3)), "T": T, "s": self.cfg.symbol,
                "U": first_id, "u": u, "pu": pu,
                "b": [[self._px(t), self._qty(q)] for t, q in b.items()],
                "a": [[self._px(t), self._qty(q)] for t, q in a.items()]}

    def _book_ticker(self, out, T: int):
        top = (self.best_bid, self.bids.get(self.best_bid, 0), self.best_ask, self.asks.get(self.best_ask, 0))
        if top == getattr(self, "_last_top", None):
            return
        self._last_top = top
        data = {"e": "bookTicker", "u": self._uid, "s": self.cfg.symbol, "b": self._px(top[0]),
                "B": self._qty(top[1]), "a": self._px(top[2]), "A": self._qty(top[3]), "T": T, "E": T + 1}
        self._push(out, self._local_ns(T, "ticker"), self._envelope("bookTicker", data))

    def _next_funding_rate(self, z: float) -> float:
        """One second of the announced funding rate: AR(1) around funding_rate (z: a standard normal draw)."""
        c = self.cfg
        phi = 0.5 ** (1.0 / c.funding_half_life_s)
        shock = c.funding_rate_sd * math.sqrt(1 - phi * phi) * z
        self._rate = c.funding_rate + phi * (self._rate - c.funding_rate) + shock
        return self._rate

    def _next_jump_gap(self) -> float:
        rate = self.cfg.jump_rate_per_min
        return self.rng.exponential(60_000.0 / rate) if rate > 0 else math.inf

    def _fault_times(self, kind: str, n: int, t0: float, t1: float) -> list[float]:
        # faults start after the first resync window and are spread over the rest of the file
        return sorted(float(x) for x in self.rng.uniform(t0 + 0.1 * (t1 - t0), t1 - 0.05 * (t1 - t0), n))

    def _simulate(self) -> Iterator[_Out]:
        c, rng = self.cfg, self.rng
        t0 = float(c.start_ms)
        t1 = t0 + c.minutes * 60_000.0
        plan = {k: self._fault_times(k, getattr(c, k), t0, t1) for k in ("gaps", "duplicates", "crossed", "garbage")}
        out: list[_Out] = []
        lam_excess = 0.0  # Hawkes excitation above the baseline (1/s)
        last_t = t0
        last_buy = True
        next_depth = t0
        next_mark = t0 + 1000.0 - (t0 % 1000.0)
        # The collector requests the first REST snapshot after a few diffs; the exchange serves it U(80, 200) ms
        # later from its book of that moment, and it travels like any message. So no diff newer than the
        # snapshot arrives before it (a snapshot overtaken by newer diffs would revert them in the reference
        # conversion, which places it at its arrival, and leave stale levels that can cross the book).
        snapshot_at = t0 + c.depth_interval_ms * 3.5 + rng.uniform(80, 200)
        resync_at = None
        crossed_withdraw: dict[int, int] | None = None
        gap_fault: Fault | None = None
        t = t0
        next_jump = t0 + self._next_jump_gap()
        while t < t1:
            # next trade by thinning: the Hawkes part only decays until the next trade and the informed part is
            # held at its value from the last event (piecewise constant), so lam_bar bounds the intensity
            lam_excess *= math.exp(-c.trade_beta * (t - last_t) / 1000.0)
            last_t = t
            lam_arb = min(c.arbitrage_rate * self._mispricing(), 50.0 * c.arbitrage_rate)
            mid = (self.best_bid + self.best_ask) / 2.0
            lam_informed = min(c.informed_rate * max(0.0, abs(self.value - mid) - 0.5), 200.0)
            lam_bar = c.trade_mu + lam_excess + lam_arb + lam_informed
            t_trade = t + rng.exponential(1000.0 / lam_bar)
            t_prev = t
            t = min(t_trade, next_depth, next_mark, next_jump)
            if t >= t1:
                break
            self._advance(t - t_prev)
            if t == t_trade:
                lam_excess *= math.exp(-c.trade_beta * (t - last_t) / 1000.0)
                last_t = t
                u = rng.random() * lam_bar
                if u <= c.trade_mu + lam_excess + lam_arb + lam_informed:
                    if u <= c.trade_mu + lam_excess:
                        buy, kind = rng.random() < (0.7 if last_buy else 0.3), 0
                    elif u <= c.trade_mu + lam_excess + lam_arb:
                        buy, kind = self.fair > self.best_ask, 2
                    else:
                        buy, kind = self.value > mid, 1
                    last_buy = buy
                    lam_excess += c.trade_alpha
                    self._trade(out, t, buy, kind)
                    self._book_ticker(out, int(t))
            elif t == next_jump:
                next_jump += self._next_jump_gap()
                self.value += rng.exponential(self._jump) * (1.0 if rng.random() < 0.5 else -1.0)
            elif t == next_depth:
                next_depth += c.depth_interval_ms * (0.5 + rng.random())
                T = int(t)
                first_id = self._uid + 1
                self._churn()
                self._trim()
                extra = None
                if crossed_withdraw is not None:
                    extra, crossed_withdraw = crossed_withdraw, None
                msg = self._depth_msg(T, first_id, extra)
                line = self._envelope("depth@0ms", msg)
                if plan["gaps"] and t >= plan["gaps"][0]:
                    plan["gaps"].pop(0)
                    gap_fault = Fault("gap", T, details=f"dropped diff U={msg['U']} u={msg['u']}")
                    self.faults.append(gap_fault)  # its line: the next diff written (where pu breaks)
                    # the collector notices at the next diff and requests a snapshot, served U(80, 200) ms later
                    resync_at = t + 150.0 + rng.uniform(80, 200)
                elif plan["crossed"] and t >= plan["crossed"][0] and crossed_withdraw is None:
                    plan["crossed"].pop(0)
                    bad = self.best_ask + int(rng.integers(0, 3))
                    msg["b"].append([self._px(bad), self._qty(self._lots())])
                    crossed_withdraw = {bad: 0}
                    f = Fault("crossed", T, details=f"bid {self._px(bad)} >= best ask {self._px(self.best_ask)}")
                    self.faults.append(f)
                    self._push(out, self._local_ns(T, "depth"), line, fault=f)
                else:
                    local = self._local_ns(T, "depth")
                    self._push(out, local, line, fault=gap_fault)
                    gap_fault = None
                    if plan["duplicates"] and t >= plan["duplicates"][0]:
                        plan["duplicates"].pop(0)
                        f = Fault("duplicate", T, details=f"diff u={msg['u']} repeated")
                        self.faults.append(f)
                        self._push(out, local + 1000, line, fault=f)
                        self._stream_last["depth"] = local + 1000
                self._book_ticker(out, T)
                if (snapshot_at is not None and t >= snapshot_at) or (resync_at is not None and t >= resync_at):
                    self._push(out, self._local_ns(T, "rest"), self.snapshot(T, self._last_u))
                    snapshot_at, resync_at = None, None
            else:
                next_mark += 1000.0
                if c.mark_price:
                    T = int(t)
                    mid = (self.best_bid + self.best_ask) / 2 * c.tick_size
                    index = mid * (1 + rng.normal(0, 2e-5))
                    rate = self._next_funding_rate(rng.standard_normal())
                    data = {"e": "markPriceUpdate", "E": T, "s": c.symbol, "p": f"{mid:.8f}",
                            "P": f"{mid * 1.0001:.8f}", "i": f"{index:.8f}", "r": f"{rate:.8f}",
                            "T": (T // c.funding_interval_ms + 1) * c.funding_interval_ms}
                    self._push(out, self._local_ns(T, "mark"), self._envelope("markPrice@1s", data))
            if plan["garbage"] and t >= plan["garbage"][0]:
                plan["garbage"].pop(0)
                f = Fault("garbage", int(t), details="non-JSON line")
                self.faults.append(f)
                junk = bytes(rng.integers(33, 127, int(rng.integers(5, 60))).astype(np.uint8)).decode()
                self._push(out, int(t * 1_000_000), None, raw='{"stream":"' + junk, fault=f)
            # everything received before now is final: later messages have later exchange times
            while out and out[0].local_ns <= t * 1_000_000 + c.clock_offset_ms * 1_000_000:
                yield heapq.heappop(out)
        while out:
            yield heapq.heappop(out)

    # -- public API ----------------------------------------------------------------------------------
    def lines(self) -> Iterator[str]:
        """Collector lines `<local ns> <json>` (no trailing newline), in receive order."""
        n = 0
        last = 0
        for item in self._simulate():
            n += 1
            last = max(last, item.local_ns)  # the collector stamps in arrival order: never decreasing
            if item.fault is not None and item.fault.line is None:
                item.fault.line = n
            yield f"{last} {item.text}"

    def messages(self) -> Iterator[tuple[int, dict]]:
        """(local receive time in ns, parsed message) in receive order; garbage lines are skipped."""
        for line in self.lines():
            ts, _, body = line.partition(" ")
            try:
                yield int(ts), orjson.loads(body)
            except orjson.JSONDecodeError:
                continue

    def write(self, path: str) -> int:
        """Write the feed (gzip if the name ends with .gz); returns the number of lines."""
        n = 0
        with _atomic.atomic_writer(path, "wb") as raw, io.TextIOWrapper(
                # the gzip header names the final file, not the temporary one
                gzip.GzipFile(os.path.basename(path), "wb", 5, raw) if str(path).endswith(".gz") else raw,
                encoding="utf-8", newline="\n") as f:
            batch = []
            for line in self.lines():
                batch.append(line)
                if len(batch) >= 4096:
                    f.write("\n".join(batch) + "\n")
                    n += len(batch)
                    batch = []
            if batch:
                f.write("\n".join(batch) + "\n")
                n += len(batch)
        return n


def generate(path: str, **kwargs) -> SyntheticFeed:
    """Write a synthetic feed file; `kwargs` are `FeedConfig` fields. Returns the feed (see `.faults`)."""
    feed = SyntheticFeed(FeedConfig(**kwargs))
    feed.write(path)
    return feed
