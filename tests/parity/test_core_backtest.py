"""The stepwise exchange core, the emulator's matching and the backtest fill the same orders the same way.

One seeded synthetic event stream (depth changes, touch moves, trades at and through the touch, a clear followed by
a snapshot), or the start of the recorded BTCUSDT sample as the converter hands it to the backtest's exchange, and
one timed order script (submits of every time in force, market orders, modifies, cancels) go through
`kernels.core.ExchangeCore`, through `HashMapMarketDepthBacktest` and (zero latency) through the emulator's `Venue`
as Binance requests. After every step each order's status and open quantity, and the asset's state values
(position, balance, fee, number of fills, volume, value), are identical between core and backtest, and each
emulator order has executed the same quantity; at the end every order's fills (qty, price, maker/taker) are the
same list in the emulator as in the core. The backtest runs with the same entry latency and no response latency,
so its local side sees each reply at the step where the core returned it.
"""
from __future__ import annotations

import numpy as np
import pytest

from hftbacktest import FOK, GTC, GTX, IOC, LIMIT, MARKET, BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest.emulator.matching import ApiError, Venue
from hftbacktest.emulator.market import spec_for
from hftbacktest.kernels.core import CoreConfig, ExchangeCore
from hftbacktest.types import (
    BUY,
    BUY_EVENT,
    CANCELED,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    EXPIRED,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    LOCAL_EVENT,
    SELL,
    SELL_EVENT,
    TRADE_EVENT,
    event_dtype,
)

TICK, LOT = 0.1, 0.001
BOTH = EXCH_EVENT | LOCAL_EVENT
TIFS = {"GTC": GTC, "GTX": GTX, "IOC": IOC, "FOK": FOK}
SV = ("position", "balance", "fee", "num_trades", "trading_volume", "trading_value")


def market_stream(seed: int, steps: int):
    """[(ts, [(kind, side, tick, lots)], (best bid, best ask) after them)], kind depth / snapshot / trade / clear;
    the book stays uncrossed and never empty."""
    rng = np.random.default_rng(seed)
    bids = {600_000 - i: int(rng.integers(1, 40)) for i in range(10)}
    asks = {600_001 + i: int(rng.integers(1, 40)) for i in range(10)}
    out = []
    for k in range(steps):
        ts = 1_000_000 + 1000 * k
        items = []
        bb, ba = max(bids), min(asks)
        r = rng.random()
        if r < 0.45:  # one level changes (sometimes empties)
            side = BUY if rng.random() < 0.5 else SELL
            book = bids if side == BUY else asks
            tick = (bb - int(rng.integers(0, 4))) if side == BUY else (ba + int(rng.integers(0, 4)))
            prev = book.get(tick, 0)
            if prev and rng.random() < 0.6:  # mostly cancels ahead or behind resting orders: queue models differ
                lots = int(rng.integers(0, prev)) if len(book) > 2 else prev
            else:
                lots = prev + int(rng.integers(1, 20))
            if lots:
                book[tick] = lots
            else:
                book.pop(tick, None)
            items.append(("depth", side, tick, lots))
        elif r < 0.9:  # a trade at the touch, sometimes one tick through it
            aggressor = BUY if rng.random() < 0.5 else SELL
            through = int(rng.random() < 0.03)
            tick = ba + through if aggressor == BUY else bb - through
            items.append(("trade", aggressor, tick, int(rng.integers(1, 12))))
        elif r < 0.98:  # the touch moves by 1-2 ticks: the other side's levels it crosses disappear
            d = int(rng.integers(1, 3))
            if rng.random() < 0.5:
                for t in range(bb + 1, bb + d + 1):
                    for a in [a for a in asks if a <= t]:
                        asks.pop(a)
                        items.append(("depth", SELL, a, 0))
                    bids[t] = int(rng.integers(1, 40))
                    items.append(("depth", BUY, t, bids[t]))
                if not asks:
                    asks[bb + d + 1] = 5
                    items.append(("depth", SELL, bb + d + 1, 5))
            else:
                for t in range(ba - 1, ba - d - 1, -1):
                    for b in [b for b in bids if b >= t]:
                        bids.pop(b)
                        items.append(("depth", BUY, b, 0))
                    asks[t] = int(rng.integers(1, 40))
                    items.append(("depth", SELL, t, asks[t]))
                if not bids:
                    bids[ba - d - 1] = 5
                    items.append(("depth", BUY, ba - d - 1, 5))
        else:  # clear and snapshot (levels re-drawn)
            items.append(("clear", 0, 0, 0))
            for book, side in ((bids, BUY), (asks, SELL)):
                for t in list(book):
                    book[t] = int(rng.integers(1, 40))
                    items.append(("snapshot", side, t, book[t]))
        out.append((ts, items, (max(bids), min(asks))))
    return out


def recorded_stream(path, steps: int):
    """The first `steps` exchange timestamps of a recorded Binance feed (as the converter gives it to the
    backtest's exchange side), in the stream format above; the touch is the book's after each step."""
    from hftbacktest.data.utils import binancefutures

    data = binancefutures.convert(str(path), combined_stream=True)
    rows = data[(data["ev"] & EXCH_EVENT) != 0]
    assert np.all(np.diff(rows["exch_ts"]) >= 0)
    books = {BUY: {}, SELL: {}}
    out, items, ts = [], [], None
    for row in rows:
        t = int(row["exch_ts"])
        if t != ts and items:
            out.append((ts, items, (max(books[BUY]), min(books[SELL]))))
            items = []
            if len(out) == steps:
                break
        ts = t
        ev = int(row["ev"])
        side = BUY if ev & BUY_EVENT else SELL if ev & SELL_EVENT else 0
        tick, lots = round(float(row["px"]) / TICK), round(float(row["qty"]) / LOT)
        kind = ev & 0xFF
        if kind == TRADE_EVENT:
            items.append(("trade", side, tick, lots))
        elif kind == DEPTH_CLEAR_EVENT:
            book = books[side]
            for level in [x for x in book if (x >= tick if side == BUY else x <= tick)]:
                del book[level]
            items.append(("clear", side, tick, 0))
        else:
            if lots:
                books[side][tick] = lots
            else:
                books[side].pop(tick, None)
            items.append(("snapshot" if kind == DEPTH_SNAPSHOT_EVENT else "depth", side, tick, lots))
    return out


def to_rows(stream):
    rows = []
    for ts, items, _ in stream:
        for kind, side, tick, lots in items:
            sb = BUY_EVENT if side == BUY else SELL_EVENT
            if kind == "depth":
                rows.append((BOTH | DEPTH_EVENT | sb, ts, ts, tick * TICK, lots * LOT))
            elif kind == "snapshot":
                rows.append((BOTH | DEPTH_SNAPSHOT_EVENT | sb, ts, ts, tick * TICK, lots * LOT))
            elif kind == "trade":
                rows.append((BOTH | TRADE_EVENT | sb, ts, ts, tick * TICK, lots * LOT))
            else:  # clear: both sides (side 0), or one side from the touch to `tick`
                rows.append((BOTH | DEPTH_CLEAR_EVENT | (sb if side else 0), ts, ts, tick * TICK, 0.0))
    rows.append((BOTH | DEPTH_EVENT | BUY_EVENT, ts + 10**9, ts + 10**9, 1.0, LOT))  # the data outlives the run
    arr = np.zeros(len(rows), event_dtype)
    for i, (ev, ets, lts, px, qty) in enumerate(rows):
        arr[i] = (ev, ets, lts, px, qty, 0, 0, 0.0)
    return arr


class Tape:
    """Every reply of the core, per order: last status and open quantity, and its fills in order."""

    def __init__(self):
        self.status: dict[int, int] = {}
        self.leaves: dict[int, float] = {}
        self.fills: dict[int, list] = {}
        self.n_fills = 0
        self.settled: set[int] = set()  # finished alike in core and backtest (compare skips them)

    def add(self, replies):
        for r in replies:
            if r.rejected:  # a cancel / modify of an order that no longer rests: nothing changes
                continue
            self.status[r.order_id] = r.status
            self.leaves[r.order_id] = r.leaves_qty
            if r.fill_qty:
                self.fills.setdefault(r.order_id, []).append((r.fill_qty, r.exec_price_tick, r.maker))
                self.n_fills += 1


def feed_core(core, tape, ts, items):
    for kind, side, tick, lots in items:
        if kind in ("depth", "snapshot"):
            tape.add(core.depth(side, tick, lots * LOT, ts))
        elif kind == "trade":
            tape.add(core.trade(side, tick, lots * LOT, ts))
        else:
            tape.add(core.clear(ts, side, tick))


class Emulated:
    """The emulator's venue driven with the same stream (as the replay applies it) and the same orders."""

    def __init__(self, queue, exchange):
        self.now = 0
        self.venue = Venue([spec_for("BTCUSDT")], now_ms=lambda: self.now // 1_000_000, queue=queue,
                           exchange=exchange)
        self.account = self.venue.add_account("k", "s", balance=1e9, maker_fee=-0.0001, taker_fee=0.0004)
        self.market = self.venue.markets["BTCUSDT"]
        self.orders = {}  # script id -> emulator Order

    def feed(self, ts, items):
        self.now = ts
        for kind, side, tick, lots in items:
            if kind == "clear":
                for sd in ((side,) if side else (BUY, SELL)):
                    gone = [t for t in self.market.book.side(sd)
                            if not side or (t >= tick if sd == BUY else t <= tick)]
                    for t in gone:
                        self.market.book.set(sd, t, 0)
                self.venue._sync(self.market)  # book changes the core has not seen yet go before the clear
                # (the replay never clears; the core's clear is the backtest's)
                self.market.core.clear(ts, side, tick)
            elif kind == "trade":
                self.venue.on_trade(self.market, tick, lots, buyer_is_maker=side == SELL)
            else:
                self.market.book.set(side, tick, lots)
                self.venue.on_depth(self.market, [(side, tick, lots)])

    def submit(self, oid, side, tick, lots, tif, otype):
        params = {"symbol": "BTCUSDT", "side": "BUY" if side == BUY else "SELL", "type": otype,
                  "quantity": f"{lots * LOT:.3f}", "newClientOrderId": f"o{oid}"}
        if otype == "LIMIT":
            params.update(price=f"{tick * TICK:.1f}", timeInForce=tif)
        try:
            self.orders[oid] = self.venue.place_order(self.account, params)[0]
        except ApiError as err:
            assert err.code == -5022, err  # Binance rejects a crossing post-only order; the backtest expires it

    def cancel(self, oid):
        self.venue.cancel_order(self.account, {"symbol": "BTCUSDT", "origClientOrderId": f"o{oid}"})

    def modify(self, oid, tick, lots):
        o = self.orders[oid]
        self.venue.modify_order(self.account, {"symbol": "BTCUSDT", "origClientOrderId": f"o{oid}",
                                               "side": "BUY" if o.side == BUY else "SELL",
                                               "quantity": f"{(o.executed + lots) * LOT:.3f}",
                                               "price": f"{tick * TICK:.1f}"})

    def fills(self):
        out = {}
        for e in self.account.ledger:
            if e["event"] == "TRADE":
                oid = int(e["clientOrderId"][1:])
                out.setdefault(oid, []).append((round(e["lastQty"] / LOT), round(e["lastPrice"] / TICK), e["maker"]))
        return out


def run(queue: str, exchange: str, latency: int, seed: int = 7, steps: int = 1500, stream=None):
    stream = stream or market_stream(seed, steps)
    a = (BacktestAsset().data([to_rows(stream)]).tick_size(TICK).lot_size(LOT).constant_order_latency(latency, 0)
         .trading_value_fee_model(-0.0001, 0.0004))
    name, _, n = queue.partition(":")
    a = a.risk_adverse_queue_model() if name == "risk_averse" else a.power_prob_queue_model(float(n))
    a = a.partial_fill_exchange() if exchange == "partial_fill" else a.no_partial_fill_exchange()
    hbt = HashMapMarketDepthBacktest([a])
    core = ExchangeCore(CoreConfig.from_names(TICK, LOT, queue, exchange, maker_fee=-0.0001, taker_fee=0.0004,
                                              entry_latency=latency))
    emu = Emulated(queue, exchange) if latency == 0 else None
    rng = np.random.default_rng(seed + 1)
    ids: list[int] = []
    tape = Tape()
    for k, (ts, items, touch) in enumerate(stream):
        hbt.elapse(0 if k == 0 else ts - hbt.current_timestamp)
        assert hbt.current_timestamp == ts
        tape.add(core.advance(ts - 1))  # requests arriving before this step's events
        feed_core(core, tape, ts, items)
        tape.add(core.advance(ts))  # then those arriving with them (a tie goes to the market event)
        if emu:
            emu.feed(ts, items)
        compare(hbt, core, tape, ids, k, latency == 0, emu)
        if rng.random() < 0.3:
            act(hbt, core, tape, rng, ids, ts, touch, emu)
    if emu:
        want = {oid: [(round(q / LOT), t, mk) for q, t, mk in f] for oid, f in tape.fills.items()}
        assert emu.fills() == want
    statuses = set(tape.status.values())
    assert tape.n_fills > 50 and {FILLED, CANCELED, EXPIRED} <= statuses, (tape.n_fills, statuses)
    assert sum(len(f) > 1 for f in tape.fills.values()) > (3 if exchange == "partial_fill" else -1)
    return tape


def act(hbt, core, tape, rng, ids, ts, touch, emu):
    bb, ba = touch
    r = rng.random()
    if r < 0.6 or not ids:
        oid = len(ids) + 1
        side = BUY if rng.random() < 0.5 else SELL
        tif = str(rng.choice(["GTC", "GTC", "GTX", "IOC", "FOK"]))
        otype = "MARKET" if rng.random() < 0.08 else "LIMIT"
        off = int(rng.choice([-2, -1, 0, 0, 0, 1]))
        tick = bb + off if side == BUY else ba - off
        lots = int(rng.integers(2, 25))  # >= 2 lots: Binance's minimum notional at this price
        submit = hbt.submit_buy_order if side == BUY else hbt.submit_sell_order
        assert submit(0, oid, tick * TICK, lots * LOT, TIFS[tif], MARKET if otype == "MARKET" else LIMIT, False) == 0
        ids.append(oid)
        tape.add(core.submit(oid, side, tick, lots * LOT, tif, otype, ts))
        if emu:
            emu.submit(oid, side, tick, lots, tif, otype)
        return
    # cancel an open order, modify an unfilled one: the backtest's local side counts the last fill once more on
    # any reply with status FILLED / PARTIALLY_FILLED (a rejected cancel of a filled order, the acknowledgement of
    # a modify of a partly filled one), where the exchange's own state, and the core, count it once
    orders = hbt.orders(0)
    want = (NEW, PARTIALLY_FILLED) if r < 0.85 else (NEW,)
    live = [i for i in ids if orders.get(i).status in want and orders.get(i).req == 0]
    if not live:
        return
    oid = int(rng.choice(live))
    if r < 0.85:
        if hbt.cancel(0, oid, False) == 0:  # not refused locally (a request of it still in flight)
            tape.add(core.cancel(oid, ts))
            if emu:
                emu.cancel(oid)
    else:
        o = orders.get(oid)
        # a new price: the order re-enters the queue in the backtest, the core and the emulator (which re-queues
        # every amendment, as Binance does)
        tick = o.price_tick + int(rng.choice([-2, -1, 1, 2]))
        lots = int(rng.integers(2, 25))
        if o.order_type == LIMIT and hbt.modify(0, oid, tick * TICK, lots * LOT, False) == 0:
            tape.add(core.modify(oid, tick, lots * LOT, ts))
            if emu:  # (a post-only order the amendment makes cross: canceled there, expired in the backtest)
                emu.modify(oid, tick, lots)


def compare(hbt, core, tape, ids, k, same_state, emu):
    sv_b, sv_c = hbt.state_values(0), core.state_values()
    got_b, got_c = tuple(float(sv_b[f]) for f in SV), tuple(float(sv_c[f]) for f in SV)
    if same_state:
        assert got_b == got_c, f"step {k}: backtest {got_b} != core {got_c}"
    else:
        assert sv_b["num_trades"] >= sv_c["num_trades"], f"step {k}: backtest {got_b}, core {got_c}"
    assert int(sv_c["num_trades"]) == tape.n_fills, f"step {k}: {tape.n_fills} fills replied, {got_c}"
    orders = hbt.orders(0)
    for oid in ids:
        if oid in tape.settled:
            continue
        o = orders.get(oid)
        if o.req != 0:  # a request in flight: the local record shows what was asked, not what is
            continue
        if o.status in (FILLED, CANCELED, EXPIRED) and tape.status.get(oid) == o.status:
            tape.settled.add(oid)  # checked once more below, then it cannot change any more
        mine = (tape.status.get(oid), tape.leaves.get(oid))
        assert (o.status, o.leaves_qty) == mine, f"step {k}: order {oid} backtest {(o.status, o.leaves_qty)}, core {mine}"
        if emu and oid in emu.orders:
            e = emu.orders[oid]
            assert round(e.executed * LOT, 9) == round(o.qty - o.leaves_qty, 9) or o.status == 0, \
                f"step {k}: order {oid} executed {e.executed} lots in the emulator, backtest {o.qty - o.leaves_qty}"
        fills = tape.fills.get(oid)
        if fills and o.exec_price_tick:  # (a re-queued modify's reply shows no execution in the backtest)
            assert (o.exec_price_tick, bool(o.maker)) == fills[-1][1:], f"step {k}: order {oid} last fill"


@pytest.mark.parametrize("exchange", ["no_partial_fill", "partial_fill"])
@pytest.mark.parametrize("queue", ["risk_averse", "power_prob:2"])
def test_core_fills_like_the_backtest(queue, exchange):
    run(queue, exchange, latency=0)


@pytest.fixture(scope="module")
def recorded(sample_data_dir):
    return recorded_stream(sample_data_dir / "btcusdt_20240808.gz", 4000)


@pytest.mark.parametrize("queue, exchange", [("risk_averse", "partial_fill"), ("power_prob:2", "no_partial_fill")])
def test_recorded_feed_fills_alike_in_backtest_core_and_emulator(recorded, queue, exchange):
    run(queue, exchange, latency=0, stream=recorded)


@pytest.mark.parametrize("exchange", ["no_partial_fill", "partial_fill"])
def test_core_with_entry_latency_fills_like_the_backtest(exchange):
    # 2000 ns = two event steps: requests arrive exactly at a later event's time (data goes first there).
    # Orders match step by step; the backtest's local state values may count a fill twice when a cancel or
    # modify races it (see `act`), so they are not compared here.
    run("power_prob:3", exchange, latency=2000, seed=11)
