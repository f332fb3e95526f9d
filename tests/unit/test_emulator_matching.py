"""Emulator fill rules on hand-built books: queue position, partial fills, crossing, taker walks, PnL and fees.

Expected values are derived by hand from the backtest's exchange rules (kernels/exchange.py: risk-averse queue,
partial-fill exchange, the emulator's defaults), which the emulator's matching core runs.
"""
from __future__ import annotations

import gzip

import pytest

from hftbacktest.emulator.faults import FaultInjector, parse_fault_spec
from hftbacktest.emulator.market import ASK, BID, load_recorded, spec_for
from hftbacktest.emulator.matching import ApiError, Venue
from hftbacktest.errors import ConfigError, DataError

SPEC = spec_for("BTCUSDT")  # tick 0.1, lot 0.001


@pytest.fixture
def venue():
    events = []
    v = Venue([SPEC], now_ms=lambda: 1_000, notify=lambda account, payload: events.append(payload))
    v.events = events
    v.add_account("a", "s", balance=1_000_000.0, maker_fee=-0.00005, taker_fee=0.0007)
    for tick, lots in ((600_000, 5), (599_999, 7)):
        level(v, BID, tick, lots)
    for tick, lots in ((600_001, 2), (600_002, 3)):
        level(v, ASK, tick, lots)
    return v


def level(v, side, tick, lots):
    """A displayed level changes, as the replay applies it: the book, then the matching core."""
    market = v.markets["BTCUSDT"]
    market.book.set(side, tick, lots)
    v.on_depth(market, [(side, tick, lots)])


def ahead(v, order):
    return v.markets["BTCUSDT"].queue_ahead(order)


def place(v, **params):
    base = {"symbol": "BTCUSDT", "type": "LIMIT", "timeInForce": "GTC", "newOrderRespType": "RESULT"}
    base.update(params)
    return v.place_order(v.accounts["a"], base)[0]


def updates(v, cid):
    return [(e["o"]["x"], e["o"]["X"], e["o"]["l"], e["o"]["L"], e["o"]["m"]) for e in v.events
            if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["c"] == cid]


def test_queue_position_advances_on_trades_and_decreases(venue):
    market = venue.markets["BTCUSDT"]
    order = place(venue, side="BUY", price="60000.0", quantity="0.002", newClientOrderId="q")
    assert order.status == "NEW" and ahead(venue, order) == 5  # behind the displayed 5 lots
    venue.on_trade(market, 600_000, 3, buyer_is_maker=True)  # sell aggressor hits our price: 2 ahead remain
    assert ahead(venue, order) == 2 and order.executed == 0
    level(venue, BID, 600_000, 1)  # cancels ahead of us: risk-averse front = min(front, qty)
    assert ahead(venue, order) == 1
    venue.on_trade(market, 600_000, 2, buyer_is_maker=True)  # overruns the queue by 1 lot
    assert order.executed == 1 and order.status == "PARTIALLY_FILLED" and ahead(venue, order) == 0
    venue.on_trade(market, 600_000, 4, buyer_is_maker=True)
    assert order.status == "FILLED" and order.order_id not in market.resting
    assert updates(venue, "q") == [("NEW", "NEW", "0.000", "0", False),
                                   ("TRADE", "PARTIALLY_FILLED", "0.001", "60000.00", True),
                                   ("TRADE", "FILLED", "0.001", "60000.00", True)]


def test_level_increase_does_not_move_queue_back_and_buyer_trades_ignore_bids(venue):
    market = venue.markets["BTCUSDT"]
    order = place(venue, side="BUY", price="60000.0", quantity="0.002")
    level(venue, BID, 600_000, 50)
    venue.on_trade(market, 600_000, 10, buyer_is_maker=False)  # buyer aggressor trades with asks only
    assert ahead(venue, order) == 5 and order.executed == 0


def test_trade_through_and_opposite_best_fill_whole_order_as_maker(venue):
    market = venue.markets["BTCUSDT"]
    a = place(venue, side="BUY", price="60000.0", quantity="0.004", newClientOrderId="through")
    venue.on_trade(market, 599_999, 1, buyer_is_maker=True)  # a sale below our bid: we would have been hit
    assert a.status == "FILLED" and a.executed == 4 and a.avg_price() == pytest.approx(60000.0)
    b = place(venue, side="SELL", price="60000.2", quantity="0.002", newClientOrderId="reached")
    level(venue, BID, 600_002, 1)  # the best bid rises to our ask
    assert b.status == "FILLED" and updates(venue, "reached")[-1][4] is True


def test_taker_walks_the_book_and_gtc_remainder_fills_at_limit(venue):
    order = place(venue, side="BUY", price="60000.3", quantity="0.006", newClientOrderId="walk")
    fills = [u for u in updates(venue, "walk") if u[0] == "TRADE"]
    assert fills == [("TRADE", "PARTIALLY_FILLED", "0.002", "60000.10", False),
                     ("TRADE", "PARTIALLY_FILLED", "0.003", "60000.20", False),
                     ("TRADE", "FILLED", "0.001", "60000.30", False)]
    assert order.cum_quote == pytest.approx(0.002 * 60000.1 + 0.003 * 60000.2 + 0.001 * 60000.3)
    assert venue.markets["BTCUSDT"].book.qty(ASK, 600_001) == 2  # no market impact


@pytest.mark.parametrize("backlog", [4096, 2])
def test_book_changes_while_nothing_rests_reach_the_core_before_the_next_order(venue, monkeypatch, backlog):
    """An idle core is brought up to date before an order arrives: from the held-back changes, or (past the
    backlog) rebuilt from the book. Either way the order sees the book as displayed."""
    import hftbacktest.emulator.matching as matching

    monkeypatch.setattr(matching, "SYNC_BACKLOG", backlog)
    level(venue, ASK, 600_001, 0)  # the touch leaves, a thinner level and a new one appear
    level(venue, ASK, 600_002, 1)
    level(venue, ASK, 600_004, 6)
    level(venue, BID, 600_000, 8)
    rest = place(venue, side="BUY", price="60000.0", quantity="0.002", newClientOrderId="r")
    assert ahead(venue, rest) == 8
    walk = place(venue, side="BUY", price="60000.3", quantity="0.003", timeInForce="IOC", newClientOrderId="w")
    assert [u[2:4] for u in updates(venue, "w") if u[0] == "TRADE"] == [("0.001", "60000.20")]
    assert walk.status == "EXPIRED"  # nothing at 600_003; 600_004 lies beyond its limit


def test_ioc_fok_market(venue):
    ioc = place(venue, side="BUY", price="60000.1", quantity="0.005", timeInForce="IOC", newClientOrderId="ioc")
    assert ioc.status == "EXPIRED" and ioc.executed == 2
    fok = place(venue, side="BUY", price="60000.2", quantity="0.006", timeInForce="FOK", newClientOrderId="fok")
    assert fok.status == "EXPIRED" and fok.executed == 0  # only 5 lots up to its price: all or none
    mkt = place(venue, side="SELL", type="MARKET", timeInForce=None, quantity="0.013", newClientOrderId="mkt")
    assert mkt.status == "EXPIRED" and mkt.executed == 12  # 5 + 7 displayed lots, then the side is exhausted
    assert updates(venue, "mkt")[-1][:2] == ("EXPIRED", "EXPIRED")


def test_gtx_cross_rejected_without_order_or_event(venue):
    with pytest.raises(ApiError) as err:
        place(venue, side="SELL", price="60000.0", quantity="0.002", timeInForce="GTX", newClientOrderId="gtx")
    assert err.value.code == -5022 and updates(venue, "gtx") == []
    assert venue.accounts["a"].ledger[-1]["event"] == "REJECTED"


def test_position_pnl_and_fees(venue):
    market = venue.markets["BTCUSDT"]
    account = venue.accounts["a"]
    place(venue, side="BUY", type="MARKET", timeInForce=None, quantity="0.002")  # taker 2 lots @ 60000.1
    sell = place(venue, side="SELL", price="60010.0", quantity="0.002", reduceOnly="true")
    level(venue, BID, 600_100, 3)  # maker fill at 60010.0
    assert sell.status == "FILLED"
    taker_fee = 0.002 * 60000.1 * 0.0007
    maker_fee = 0.002 * 60010.0 * -0.00005
    assert account.realized_pnl == pytest.approx(0.002 * (60010.0 - 60000.1))
    assert account.fees == pytest.approx(taker_fee + maker_fee)
    assert account.balance == pytest.approx(1_000_000 + 0.002 * 9.9 - taker_fee - maker_fee)
    assert account.positions["BTCUSDT"].lots == 0
    last = [e for e in venue.events if e["e"] == "ACCOUNT_UPDATE"][-1]["a"]
    assert last["P"][0]["pa"] == "0.000" and last["B"][0]["wb"] == f"{account.balance:.8f}"


def test_flip_position_sets_new_entry(venue):
    place(venue, side="BUY", type="MARKET", timeInForce=None, quantity="0.001")
    place(venue, side="SELL", type="MARKET", timeInForce=None, quantity="0.003")
    pos = venue.accounts["a"].positions["BTCUSDT"]
    assert pos.lots == -2 and pos.entry == pytest.approx(60000.0)


@pytest.mark.parametrize("params,code", [
    ({"side": "SELL", "reduceOnly": "true"}, -2022),
    ({"quantity": "900.000"}, -2019),
    ({"price": "60000.05"}, -4014),
    ({"price": "60000.001"}, -1111),
    ({"quantity": "0.0011"}, -1111),
    ({"quantity": "0.001", "price": "50000.0"}, -4164),
    ({"price": "70000.0"}, -4016),
    ({"quantity": "0"}, -4003),
    ({"timeInForce": "GTD"}, -1115),
    ({"price": "abc"}, -1102),
])
def test_validation_errors(venue, params, code):
    venue.accounts["a"].balance = 1_000.0
    base = {"side": "BUY", "price": "59000.0", "quantity": "0.002"}
    base.update(params)
    with pytest.raises(ApiError) as err:
        place(venue, **base)
    assert err.value.code == code


def test_modify_requeues_on_price_change_and_cancel(venue):
    order = place(venue, side="BUY", price="59999.9", quantity="0.002", newClientOrderId="m")
    assert ahead(venue, order) == 7
    venue.modify_order(venue.accounts["a"], {"symbol": "BTCUSDT", "origClientOrderId": "m", "side": "BUY",
                                             "quantity": "0.002", "price": "60000.0"})
    assert ahead(venue, order) == 5 and order.price_tick == 600_000
    venue.cancel_order(venue.accounts["a"], {"symbol": "BTCUSDT", "orderId": str(order.order_id)})
    assert order.status == "CANCELED"
    with pytest.raises(ApiError) as err:
        venue.cancel_order(venue.accounts["a"], {"symbol": "BTCUSDT", "orderId": str(order.order_id)})
    assert err.value.code == -2011
    assert [u[0] for u in updates(venue, "m")] == ["NEW", "AMENDMENT", "CANCELED"]


def _amend(v, cid, price, qty, side="BUY"):
    return v.modify_order(v.accounts["a"], {"symbol": "BTCUSDT", "origClientOrderId": cid, "side": side,
                                            "quantity": qty, "price": price})


def test_amend_follows_binance_rules(venue):
    # Binance USD-M "Modify Order": amended orders are re-queued; an unchanged amendment is refused (-5027);
    # a filter violation leaves the order as it was; GTX that would cross, or qty <= executed, cancels it.
    order = place(venue, side="BUY", price="60000.0", quantity="0.003", newClientOrderId="q")
    assert ahead(venue, order) == 5
    venue.on_trade(venue.markets["BTCUSDT"], 600_000, 3, True)  # the order advanced: 2 lots ahead of it
    assert ahead(venue, order) == 2
    with pytest.raises(ApiError) as err:
        _amend(venue, "q", "60000.0", "0.003")
    assert err.value.code == -5027
    _amend(venue, "q", "60000.0", "0.002")  # even a smaller quantity loses the place in the queue
    assert ahead(venue, order) == 5 and order.qty == 2  # behind everything the book shows at the price
    level(venue, BID, 600_000, 9)
    _amend(venue, "q", "60000.0", "0.001")
    assert ahead(venue, order) == 9
    with pytest.raises(ApiError) as err:
        _amend(venue, "q", "60000.05", "0.001")
    assert err.value.code == -4014 and order.price_tick == 600_000 and order.status == "NEW"

    gtx = place(venue, side="BUY", price="59999.9", quantity="0.002", timeInForce="GTX", newClientOrderId="g")
    body = _amend(venue, "g", "60000.1", "0.002")  # would take the best ask
    assert body["status"] == "CANCELED" and gtx.status == "CANCELED"
    assert [u[0] for u in updates(venue, "g")] == ["NEW", "CANCELED"]

    part = place(venue, side="SELL", price="60000.1", quantity="0.004", newClientOrderId="p")
    venue.on_trade(venue.markets["BTCUSDT"], 600_001, 3, False)  # 2 lots ahead, 3 traded: 1 lot filled
    assert part.status == "PARTIALLY_FILLED" and part.executed == 1
    body = _amend(venue, "p", "60000.1", "0.001", side="SELL")
    assert body["status"] == "CANCELED"
    assert [u[0] for u in updates(venue, "p")] == ["NEW", "TRADE", "CANCELED"]
    assert venue.counters["amendments"] == 4  # refused amendments do not count


def test_fault_spec_parsing(tmp_path):
    assert parse_fault_spec("depth_gap:every=100;rest_5xx:when=after,status=503") == [
        ("depth_gap", {"every": 100}), ("rest_5xx", {"when": "after", "status": 503})]
    f = tmp_path / "faults.toml"
    f.write_text('[faults.ws_delay]\nms = 50\n\n[faults.clock_skew]\nms = -1500.5\n')
    assert parse_fault_spec(str(f)) == [("ws_delay", {"ms": 50}), ("clock_skew", {"ms": -1500.5})]
    inj = FaultInjector()
    with pytest.raises(ConfigError, match="unknown fault kind"):
        inj.add("meteor_strike")
    with pytest.raises(ConfigError, match="unknown parameter"):
        inj.add("ws_delay", speed=3)
    inj.add("depth_gap", every=3, count=2)
    assert [inj.fire("depth_gap") is not None for _ in range(9)] == [False, False, True, False, False, True,
                                                                     False, False, False]
    assert [e["what"] for e in inj.log] == ["armed", "fired", "fired"]


def test_bad_feed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad_20240808.gz"
    with gzip.open(path, "wt") as f:
        f.write('1723161255030314667 {"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}\n')
        f.write("1723161255030314668 {not json\n")
    with pytest.raises(DataError, match=r"bad_20240808.gz:2"):
        load_recorded(str(path))


@pytest.mark.parametrize("queue, exchange, text", [
    ("power_prob:0", "partial_fill", "n must be a finite number > 0"),
    ("fifo", "partial_fill", "queue model 'fifo'"),
    ("risk_averse", "partial", "exchange model 'partial'"),
])
def test_unknown_or_bad_matching_model_is_refused_at_start(queue, exchange, text):
    with pytest.raises(ConfigError, match=text):
        Venue([SPEC], queue=queue, exchange=exchange)


def test_power_prob_queue_advances_on_cancels_ahead():
    """The chosen queue model is the backtest's: with power_prob a level shrinking moves the order forward by a
    share of the decrease, where risk-averse would keep it at min(front, qty)."""
    v = Venue([SPEC], now_ms=lambda: 1_000, queue="power_prob:2")
    v.add_account("a", "s", balance=1_000_000.0)
    level(v, BID, 600_000, 10)
    level(v, ASK, 600_001, 10)
    order = place(v, side="BUY", price="60000.0", quantity="0.002")
    assert ahead(v, order) == 10
    level(v, BID, 600_000, 12)  # 10 ahead, 2 behind
    level(v, BID, 600_000, 8)  # 4 lots leave somewhere in the queue
    assert 6 < ahead(v, order) < 8  # most of the decrease was ahead of us (risk-averse: min(10, 8) = 8)


def test_order_path_calls_only_kernels_the_warm_up_loaded(venue):
    """`ExchangeCore.warm()` (run before the emulator serves) covers every argument type the venue passes: a
    kernel compiled or loaded on the first order would stall the event loop (tens of ms from the cache, seconds
    cold) while a client waits for its answer."""
    from hftbacktest.kernels import core

    core.ExchangeCore.warm()
    kernels = [getattr(core, name) for name in dir(core) if hasattr(getattr(core, name), "signatures")]
    before = {k: len(k.signatures) for k in kernels}
    market = venue.markets["BTCUSDT"]
    order = place(venue, side="BUY", price="59999.9", quantity="0.002", newClientOrderId="w")
    level(venue, BID, 599_999, 4)  # reaches the core while the order rests
    level(venue, ASK, 600_003, 1)
    venue.on_trade(market, 599_999, 1, buyer_is_maker=True)
    venue.modify_order(venue.accounts["a"], {"symbol": "BTCUSDT", "origClientOrderId": "w", "side": "BUY",
                                             "price": "59999.8", "quantity": "0.002"})
    assert ahead(venue, order) is not None
    venue.cancel_order(venue.accounts["a"], {"symbol": "BTCUSDT", "origClientOrderId": "w"})
    venue.markets["BTCUSDT"].unsynced = None  # a backlog: the next order rebuilds the core from the book
    place(venue, side="SELL", price="60000.0", quantity="0.002", newClientOrderId="x", timeInForce="IOC")
    place(venue, side="BUY", type="MARKET", quantity="0.001", newClientOrderId="y", timeInForce=None)
    assert {k.__name__: len(k.signatures) for k in kernels} == {k.__name__: n for k, n in before.items()}
