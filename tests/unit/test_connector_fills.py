"""Fills reach the bot from TRADE_LITE (earlier) or ORDER_TRADE_UPDATE, whichever comes first, exactly once."""
from __future__ import annotations

import itertools

import pytest

from hftbacktest.connector.orders import OrderManager
from hftbacktest.live.ipc.codec import WireOrder
from hftbacktest.types import BUY, CANCELED, FILLED, GTX, LIMIT, NEW, NONE, PARTIALLY_FILLED, REPLACED


def _order(qty=0.002):
    return WireOrder(qty, qty, 0.0, 0, 600000, 0.1, 0, 123, 1, False, LIMIT, NEW, NEW, BUY, GTX)


def _lite(cid, t, l, T):
    return {"e": "TRADE_LITE", "E": T, "T": T, "s": "BTCUSDT", "q": "0.002", "p": "60000.0", "m": True, "c": cid,
            "S": "BUY", "L": "60000.0", "l": str(l), "t": t, "i": 9}


def _update(cid, t, l, z, T):
    X = "FILLED" if z >= 0.002 else "PARTIALLY_FILLED"
    return {"s": "BTCUSDT", "c": cid, "S": "BUY", "o": "LIMIT", "f": "GTX", "q": "0.002", "p": "60000.0",
            "x": "TRADE", "X": X, "z": str(z), "l": str(l), "L": "60000.0", "T": T, "m": True, "t": t, "n": "0"}


def _placed():
    om = OrderManager("hbt-")
    rec = om.submit(7, "btcusdt", _order())
    om.on_rest_order(rec, {"status": "NEW", "origQty": "0.002", "executedQty": "0", "updateTime": 1000})
    return om, rec


def _feed(om, rec, events):
    """Apply events; return the forwarded (exec_qty, status) pairs."""
    out = []
    for kind, ev in events:
        got = om.on_trade_lite(ev) if kind == "lite" else om.on_ws_update(ev, ev["T"])
        if got is not None:
            out.append((got.order.exec_qty, got.order.status))
    return out


TWO_FILLS = [("lite", lambda c: _lite(c, 11, 0.001, 2000)), ("lite", lambda c: _lite(c, 12, 0.001, 2001)),
             ("upd", lambda c: _update(c, 11, 0.001, 0.001, 2000)), ("upd", lambda c: _update(c, 12, 0.001, 0.002, 2001))]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_each_fill_is_counted_once_in_any_arrival_order(order):
    om, rec = _placed()
    events = [(TWO_FILLS[i][0], TWO_FILLS[i][1](rec.client_id)) for i in order]
    out = _feed(om, rec, events)
    assert sum(q for q, _ in out) == pytest.approx(0.002)
    assert [q for q, _ in out if q > 0] == [0.001, 0.001]  # two fills, each forwarded once
    statuses = [s for _, s in out]
    first_end = statuses.index(FILLED)
    assert set(statuses[first_end:]) == {FILLED}  # once dead, a late fill is still counted but revives nothing
    assert om.find_live("btcusdt", 1) is None  # the bot's order id is free again


def test_trade_lite_delivers_the_fill_before_the_order_update():
    om, rec = _placed()
    first = om.on_trade_lite(_lite(rec.client_id, 11, 0.001, 2000))
    assert first.order.exec_qty == 0.001 and first.order.status == PARTIALLY_FILLED
    assert first.order.leaves_qty == pytest.approx(0.001) and first.order.exec_price_tick == 600000
    assert om.on_ws_update(_update(rec.client_id, 11, 0.001, 0.001, 2000), 2000) is None  # nothing new
    assert om.on_trade_lite(_lite(rec.client_id, 11, 0.001, 2000)) is None  # a duplicate frame


def test_late_fill_of_a_cancelled_order_from_trade_lite_keeps_it_cancelled():
    om, rec = _placed()
    om.on_rest_order(rec, {"status": "CANCELED", "origQty": "0.002", "executedQty": "0", "updateTime": 1500})
    late = om.on_trade_lite(_lite(rec.client_id, 11, 0.001, 1400))
    assert late is not None and late.order.exec_qty == 0.001 and late.order.status == CANCELED
    assert om.on_ws_update(_update(rec.client_id, 11, 0.001, 0.001, 1400), 1400) is None


def test_trade_lite_of_a_foreign_order_is_ignored():
    om, _ = _placed()
    assert om.on_trade_lite(_lite("someone-else", 11, 0.001, 2000)) is None


def test_a_terminal_user_stream_update_ends_the_pending_request():
    """The user stream can beat the request's own reply (typical over the WS API): a GTX amended across the spread
    is cancelled; the bot must see it dead with no request pending, and the late reply changes nothing."""
    om, rec = _placed()
    om.mark_request(rec, REPLACED, 99)
    cancelled = {**_update(rec.client_id, None, 0, 0, 3000), "x": "CANCELED", "X": "CANCELED", "l": "0"}
    fwd = om.on_ws_update(cancelled, 3000)
    assert fwd.order.status == CANCELED and fwd.order.req == NONE
    assert om.on_rest_order(rec, {"status": "CANCELED", "origQty": "0.002", "executedQty": "0",
                                  "updateTime": 3000}) is None
    om2, rec2 = _placed()
    om2.mark_request(rec2, REPLACED, 99)
    filled = om2.on_trade_lite({**_lite(rec2.client_id, 11, 0.002, 2000), "q": "0.002"})
    assert filled.order.status == FILLED and filled.order.req == NONE


def test_liquidation_fills_reach_the_bots_once_as_filled_orders():
    from hftbacktest.connector.orders import EXCHANGE_FILL_ID
    from hftbacktest.types import SELL

    om = OrderManager("hbt-")
    lite = {**_lite("autoclose-1700000000000", 51, 0.002, 5000), "S": "SELL", "i": 77, "m": False}
    fill = om.on_exchange_fill(lite, 0.1, 5000)
    assert fill is not None and fill.order_id == EXCHANGE_FILL_ID + 77 and fill.status == FILLED
    assert (fill.exec_qty, fill.exec_price_tick, fill.side, fill.maker, fill.req) == (0.002, 600000, SELL, False, NONE)
    upd = {**_update("autoclose-1700000000000", 51, 0.002, 0.002, 5000), "S": "SELL", "i": 77}
    assert om.on_exchange_fill(upd, 0.1, 5000) is None  # the same trade from ORDER_TRADE_UPDATE
    assert om.on_exchange_fill({**upd, "t": 52, "c": "adl_autoclose"}, 0.1, 5001).exec_qty == 0.002
    assert om.on_exchange_fill({**upd, "x": "NEW", "t": None, "l": "0"}, 0.1, 5000) is None  # no execution
    assert om.on_exchange_fill({**upd, "c": "web_123", "t": 53}, 0.1, 5000) is None  # another tool's order


def test_the_user_streams_new_event_answers_a_pending_submit():
    om = OrderManager("hbt-")
    rec = om.submit(7, "btcusdt", _order())
    new = {**_update(rec.client_id, None, 0, 0, 900), "x": "NEW", "X": "NEW", "l": "0", "L": "0"}
    fwd = om.on_ws_update(new, 900)
    assert fwd.order.status == NEW and fwd.order.req == NONE and fwd.order.exec_qty == 0
    om.mark_request(rec, CANCELED, 950)  # the bot, answered, cancels before the submit's own reply arrived
    late = om.on_rest_order(rec, {"status": "NEW", "origQty": "0.002", "executedQty": "0", "updateTime": 900}, NEW)
    assert late is None and rec.order.req == CANCELED  # it neither answers nor ends the cancel
    done = om.on_rest_order(rec, {"status": "CANCELED", "origQty": "0.002", "executedQty": "0", "updateTime": 960},
                            CANCELED)
    assert done.status == CANCELED and done.req == NONE


def _rest(executed, status, T, avg="60000.0"):
    return {"status": status, "origQty": "0.002", "executedQty": str(executed), "avgPrice": avg,
            "price": "60000.0", "updateTime": T}


@pytest.mark.parametrize("rest_after", [1, 2])  # the REST answer saw one fill or both
@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
@pytest.mark.parametrize("rest_at", range(5))
def test_a_fill_seen_by_rest_before_the_user_stream_is_counted_once(order, rest_at, rest_after):
    """A cancel refused with -2011 (the order filled meanwhile), a submit timeout or a reconciliation asks
    GET /fapi/v1/order; under load its answer can be ahead of the user stream, whose TRADE_LITE and
    ORDER_TRADE_UPDATE of the same fills then arrive after it. Every execution reaches the bot exactly once."""
    om, rec = _placed()
    stream = [(TWO_FILLS[i][0], TWO_FILLS[i][1](rec.client_id)) for i in order]
    if rest_after == 1:
        stream = [e for e in stream if e[1]["t"] == 11]  # the REST answer is older than the second fill
    body = _rest(0.001 * rest_after, "FILLED" if rest_after == 2 else "PARTIALLY_FILLED", 2000 + rest_after)
    rest_at = min(rest_at, len(stream))
    out = _feed(om, rec, stream[:rest_at])
    fwd = om.on_rest_catch_up(rec, body)
    if fwd is not None:
        out.append((fwd.exec_qty, fwd.status))
    out += _feed(om, rec, stream[rest_at:])
    if rest_after == 1:
        out += _feed(om, rec, [(TWO_FILLS[i][0], TWO_FILLS[i][1](rec.client_id)) for i in order if i % 2])
    assert sum(q for q, _ in out) == pytest.approx(0.002)
    assert rec.cum_qty == pytest.approx(0.002)
    assert om.find_live("btcusdt", 1) is None


def test_fills_the_user_stream_lost_come_from_rest_and_later_ones_from_the_stream():
    """A user-stream gap swallowed the first fill: REST supplies it, the stream the second one, each once."""
    om, rec = _placed()
    fwd = om.on_rest_catch_up(rec, _rest(0.001, "PARTIALLY_FILLED", 2000))
    assert fwd.exec_qty == pytest.approx(0.001)
    out = _feed(om, rec, [("lite", _lite(rec.client_id, 12, 0.001, 2001)),
                          ("upd", _update(rec.client_id, 12, 0.001, 0.002, 2001))])
    assert [q for q, _ in out if q > 0] == [0.001] and rec.order.status == FILLED


def test_a_fill_reported_after_both_channels_ended_the_order_still_counts():
    """The last fill's ORDER_TRADE_UPDATE and a REST reply both say FILLED while the first fill's reports are still
    on their way: the record stays until they came, so that fill is not lost."""
    om, rec = _placed()
    assert om.on_ws_update(_update(rec.client_id, 12, 0.001, 0.002, 2001), 2001).order.exec_qty == 0.001
    om.on_rest_order(rec, _rest(0.002, "FILLED", 2001), CANCELED)  # a cancel's reply: the order filled meanwhile
    late = om.on_trade_lite(_lite(rec.client_id, 11, 0.001, 2000))
    assert late is not None and late.order.exec_qty == 0.001 and late.order.status == FILLED
    assert om.on_ws_update(_update(rec.client_id, 11, 0.001, 0.001, 2000), 2000) is None
    assert rec.client_id not in om.by_client  # every execution forwarded: forgotten
