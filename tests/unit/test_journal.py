"""The order journal: requests, the exchange's order updates (fees, maker flag, exchange time) and refusals."""
from __future__ import annotations

import asyncio

import orjson

from hftbacktest.connector.config import ConnectorConfig
from hftbacktest.connector.journal import JournalingConnector
from hftbacktest.live.ipc.codec import WireOrder
from hftbacktest.types import BUY, GTX, LIMIT, NEW, NONE


class _Ipc:
    def __init__(self):
        self.sent = []

    def send(self, bot_id, payload):
        self.sent.append(bot_id)


def test_journal_lines_for_request_fill_and_refusal(tmp_path):
    path = tmp_path / "j" / "orders.jsonl"
    cfg = ConnectorConfig(stream_url="ws://127.0.0.1:1/ws", api_url="http://127.0.0.1:1", order_prefix="j-",
                          journal=str(path))
    c = JournalingConnector("j-unit", cfg)  # no credentials: a submit is refused by the connector itself
    c.ipc = _Ipc()
    order = WireOrder(0.002, 0.002, 0.0, 0, 600_000, 0.1, 0, 5, 42, False, LIMIT, NEW, NONE, BUY, GTX)
    asyncio.run(c._submit(3, "btcusdt", order))
    rec = c.orders.submit(3, "btcusdt", order)  # as if it had been sent: the exchange reports a maker fill
    frame = {"e": "ORDER_TRADE_UPDATE", "E": 1_700_000_000_123, "T": 1_700_000_000_120, "o": {
        "s": "BTCUSDT", "c": rec.client_id, "S": "BUY", "o": "LIMIT", "f": "GTX", "q": "0.002", "p": "60000.0",
        "x": "TRADE", "X": "PARTIALLY_FILLED", "i": 9, "l": "0.001", "z": "0.001", "L": "60000.0", "N": "USDT",
        "n": "-0.00600000", "T": 1_700_000_000_120, "t": 77, "m": True, "rp": "0"}}
    c._on_user(orjson.dumps(frame))
    c.journal.close()
    lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    assert [x["event"] for x in lines] == ["request", "rejection", "fill"]
    req, refusal, fill = lines
    assert (req["action"], req["order_id"], req["side"], req["tif"], req["price"], req["qty"]) == \
        ("submit", 42, "BUY", "GTX", 60000.0, 0.002)
    assert refusal["action"] == "submit" and refusal["order_id"] == 42 and refusal["msg"] == "no credentials"
    assert (fill["order_id"], fill["client_id"], fill["fill_qty"], fill["fill_price"], fill["maker"], fill["fee"],
            fill["trade_id"], fill["exch_ts"]) == (42, rec.client_id, 0.001, 60000.0, True, -0.006, 77,
                                                   1_700_000_000_120_000_000)
    assert all(x["local_ts"] > 0 for x in lines)


def test_a_cancel_of_an_order_already_done_is_journaled_as_refused(tmp_path):
    """A cancel that reaches the exchange after the order filled gets -2011: the journal keeps that refusal and
    when it arrived (reconcile replays the cancel as arriving after the fill, not before it)."""
    from hftbacktest.connector.rest import RestReply
    from hftbacktest.types import CANCELED

    path = tmp_path / "orders.jsonl"
    cfg = ConnectorConfig(stream_url="ws://127.0.0.1:1/ws", api_url="http://127.0.0.1:1", order_prefix="j-",
                          journal=str(path))
    c = JournalingConnector("j-unit", cfg)
    c.ipc = _Ipc()
    order = WireOrder(0.002, 0.002, 0.0, 0, 600_000, 0.1, 0, 5, 42, False, LIMIT, NEW, NONE, BUY, GTX)
    rec = c.orders.submit(3, "btcusdt", order)
    resolved = []

    async def gone(method, params):
        return RestReply(400, code=-2011, msg="Unknown order sent.")

    async def resolve(rec, is_submit, answers=None, reconciling=False):
        resolved.append(answers)

    c._order_request, c._resolve = gone, resolve
    asyncio.run(c._cancel(3, "btcusdt", order))
    c.journal.close()
    lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    assert [(x["event"], x["action"]) for x in lines] == [("request", "cancel"), ("rejection", "cancel")]
    assert (lines[1]["code"], lines[1]["order_id"], lines[1]["client_id"]) == (-2011, 42, rec.client_id)
    assert resolved == [CANCELED]  # and the connector still asks for the order's real state
