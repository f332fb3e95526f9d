"""hftbacktest.reconcile on small hand-built journals and feeds, with the agreement figures derived by hand.

The market (tick 0.1, lot 1): bid 100.0 x 5, ask 100.1 x 5; sells of 3 at 100.0 at 3 s and 4 s, a sell of 10 at
99.9 at 5.5 s, nothing ever trades at 100.2. With risk_averse queues a buy resting at 100.0 behind 5 is filled by
the second trade (5 - 3 - 3 < 0), a buy at 99.9 (an empty level) by the trade there, a sell at 100.2 never.
"""
from __future__ import annotations

import json

import numpy as np
import orjson
import polars as pl
import pytest

from hftbacktest.errors import ConfigError, DataError
from hftbacktest.types import (
    BUY_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, TRADE_EVENT, event_dtype,
)

S = 1_000_000_000
MS = 1_000_000
T0 = 1_780_000_000 * S  # some day in 2026
BOTH = EXCH_EVENT | LOCAL_EVENT
FEED_LATENCY = MS


def feed_rows(extra=()):
    rows = [(BOTH | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, 1 * S, 100.0, 5.0),
            (BOTH | DEPTH_SNAPSHOT_EVENT | SELL_EVENT, 1 * S, 100.1, 5.0),
            (BOTH | TRADE_EVENT | SELL_EVENT, 3 * S, 100.0, 3.0),
            (BOTH | TRADE_EVENT | SELL_EVENT, 4 * S, 100.0, 3.0),
            (BOTH | TRADE_EVENT | SELL_EVENT, 5 * S + S // 2, 99.9, 10.0),
            (BOTH | DEPTH_EVENT | BUY_EVENT, 20 * S, 99.0, 1.0), *extra]
    rows.sort(key=lambda r: r[1])
    arr = np.zeros(len(rows), event_dtype)
    for i, (ev, ts, px, qty) in enumerate(rows):
        arr[i] = (ev, T0 + ts, T0 + ts + FEED_LATENCY, px, qty, 0, 0, 0.0)
    return arr


def write_feed(path, extra=()):
    np.savez(path, data=feed_rows(extra))
    return path


def req(ts, oid, action="submit", side="BUY", price=100.0, qty=1.0, tif="GTC"):
    return {"event": "request", "local_ts": T0 + ts, "symbol": "btcusdt", "order_id": oid, "action": action,
            "side": side, "type": "LIMIT", "tif": tif, "price": price, "qty": qty}


def exch(event, ts, oid, exch_ts, side="BUY", price=100.0, qty=1.0, **kw):
    return {"event": event, "local_ts": T0 + ts, "symbol": "btcusdt", "order_id": oid, "client_id": f"c{oid}",
            "exch_ts": T0 + exch_ts, "status": kw.pop("status", "NEW"), "side": side, "price": price, "qty": qty,
            "filled": 0.0, **kw}


def fill(ts, oid, exch_ts, side, price, qty):
    return exch("fill", ts, oid, exch_ts, side, price, qty, status="FILLED", fill_price=price, fill_qty=qty,
                maker=True, fee=-0.001, fee_asset="USDT", trade_id=1, realized_pnl=0.0)


def session_lines():
    """A fills at 4 s (reproduced), B 'filled' at 5 s at a price never traded (live only), C cancelled live at 6 s
    but filled by the backtest at 5.5 s (backtest only)."""
    return [
        req(2 * S, 1),
        exch("ack", 2 * S + 2 * MS, 1, 2 * S + MS),
        req(2 * S + S // 2, 2, side="SELL", price=100.2),
        exch("ack", 2 * S + S // 2 + 2 * MS, 2, 2 * S + S // 2 + MS, side="SELL", price=100.2),
        req(2 * S + 700 * MS, 3, price=99.9),
        exch("ack", 2 * S + 702 * MS, 3, 2 * S + 701 * MS, price=99.9),
        fill(4 * S + 2 * MS, 1, 4 * S, "BUY", 100.0, 1.0),
        fill(5 * S + 2 * MS, 2, 5 * S, "SELL", 100.2, 1.0),
        req(6 * S, 3, action="cancel", price=99.9),
        exch("cancel", 6 * S + 2 * MS, 3, 6 * S + MS, price=99.9, status="CANCELED"),
    ]


def write_journal(path, lines):
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    return path


CONFIG = {"tick_size": 0.1, "lot_size": 1.0, "queue": {"model": "risk_adverse"}, "exchange": "no_partial_fill"}


@pytest.fixture
def files(tmp_path):
    return write_journal(tmp_path / "journal.jsonl", session_lines()), write_feed(tmp_path / "feed.npz")


def test_hand_built_session_agreement(files):
    from hftbacktest.reconcile import reconcile

    journal, feed = files
    res = reconcile(journal, feed, CONFIG, window_ms=100)
    s = res.summary
    assert (s["live_fills"], s["backtest_fills"], s["matched_fills"]) == (2, 2, 1)
    assert (s["live_only"], s["backtest_only"]) == (1, 1)
    assert s["agreement"] == 0.5 and s["fill_count_error"] == 0.0
    assert s["first_fill_error_ms"] == 0.0  # order 1: both at 4 s exactly
    fills = res.fills
    assert isinstance(fills, pl.DataFrame)
    by_status = {r["order_id"]: r["status"] for r in fills.iter_rows(named=True)}
    assert by_status == {1: "matched", 2: "live_only", 3: "backtest_only"}
    bt3 = fills.filter(pl.col("order_id") == 3).row(0, named=True)
    assert bt3["bt_ts"] == T0 + 5 * S + S // 2 and bt3["bt_price"] == pytest.approx(99.9)
    # live ends long 1 - 1 = 0; the backtest long 2 (orders 1 and 3)
    assert s["live_position"] == 0.0 and s["backtest_position"] == 2.0
    assert res.orders["bt_filled"].to_list() == [1.0, 0.0, 1.0]


def test_window_decides_what_counts_as_the_same_fill(tmp_path):
    from hftbacktest.reconcile import reconcile

    lines = session_lines()
    lines[6] = fill(4 * S + 2 * MS, 1, 4 * S + 300 * MS, "BUY", 100.0, 1.0)  # live says 300 ms later
    journal = write_journal(tmp_path / "j.jsonl", lines)
    feed = write_feed(tmp_path / "feed.npz")
    assert reconcile(journal, feed, CONFIG, window_ms=100).summary["matched_fills"] == 0
    assert reconcile(journal, feed, CONFIG, window_ms=500).summary["matched_fills"] == 1


def test_queue_model_changes_the_figures(files):
    """power_prob:1 advances the queue on the level's own decrease too: with no depth change at 100.0 it fills
    like risk_averse, so both models reproduce order 1; calibrate ranks by agreement, then errors."""
    from hftbacktest.reconcile import calibrate

    journal, feed = files
    table = calibrate(journal, feed, CONFIG, ["risk_averse", "power_prob:1,2"], window_ms=100)
    assert table["queue"].to_list()[0] == "risk_averse" or table["agreement"][0] == table["agreement"][1]
    assert table["rank"].to_list() == [1, 2, 3]
    assert set(table["queue"]) == {"risk_averse", "power_prob:1", "power_prob:2"}
