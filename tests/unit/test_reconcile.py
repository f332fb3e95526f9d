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


def feed_rows(extra=(), second_trade=3.0):
    rows = [(BOTH | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, 1 * S, 100.0, 5.0),
            (BOTH | DEPTH_SNAPSHOT_EVENT | SELL_EVENT, 1 * S, 100.1, 5.0),
            (BOTH | TRADE_EVENT | SELL_EVENT, 3 * S, 100.0, 3.0),
            (BOTH | TRADE_EVENT | SELL_EVENT, 4 * S, 100.0, second_trade),
            (BOTH | TRADE_EVENT | SELL_EVENT, 5 * S + S // 2, 99.9, 10.0),
            (BOTH | DEPTH_EVENT | BUY_EVENT, 20 * S, 99.0, 1.0), *extra]
    rows.sort(key=lambda r: r[1])
    arr = np.zeros(len(rows), event_dtype)
    for i, (ev, ts, px, qty) in enumerate(rows):
        arr[i] = (ev, T0 + ts, T0 + ts + FEED_LATENCY, px, qty, 0, 0, 0.0)
    return arr


def write_feed(path, extra=(), second_trade=3.0):
    np.savez(path, data=feed_rows(extra, second_trade))
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


def test_queue_model_decides_and_calibrate_ranks_by_agreement(tmp_path):
    """After the first trade leaves 2 ahead of order 1, the level at 100.0 grows to 8 (3.2 s: all behind) and
    shrinks to 2 (3.5 s: 6 cancelled); the second trade there is 2. risk_averse keeps 2 ahead (min(2, 2)): the
    trade does not overrun the queue and order 1 fills only when the sell at 99.9 trades through it at 5.5 s,
    while live says 4 s: agreement 0 of 2. power_prob:2 puts 1 - 6^2/(6^2+2^2) = 10 % of the cancels ahead
    (2 - 0.6 = 1.4 ahead), the trade of 2 overruns it by 0.6 lot, rounded to a fill at 4 s: 1 of 2. power_prob:3
    puts 3.6 % ahead (1.78 left): overrun 0.22 lot, no fill, as risk_averse."""
    from hftbacktest.reconcile import calibrate, reconcile

    journal = write_journal(tmp_path / "j.jsonl", session_lines())
    feed = write_feed(tmp_path / "f.npz", extra=[(BOTH | DEPTH_EVENT | BUY_EVENT, 3200 * MS, 100.0, 8.0),
                                                 (BOTH | DEPTH_EVENT | BUY_EVENT, 3500 * MS, 100.0, 2.0)],
                      second_trade=2.0)
    averse = reconcile(journal, feed, CONFIG, window_ms=100)
    assert averse.summary["agreement"] == 0.0 and averse.summary["backtest_only"] == 2
    assert averse.fills.filter(pl.col("order_id") == 1)["bt_ts"].drop_nulls().to_list() == [T0 + 5500 * MS]
    assert reconcile(journal, feed, CONFIG, window_ms=100, queue="power_prob:2").summary["agreement"] == 0.5
    table = calibrate(journal, feed, CONFIG, ["risk_averse", "power_prob:3,2"], window_ms=100)
    assert table["queue"].to_list() == ["power_prob:2", "risk_averse", "power_prob:3"]  # ties keep the given order
    assert table["agreement"].to_list() == [0.5, 0.0, 0.0] and table["rank"].to_list() == [1, 2, 3]


def test_requests_refused_before_matching_are_not_replayed(tmp_path):
    """A submit refused for the order rate (-1015) never reached the book: replaying it would fill it (an order at
    99.9 is filled by the trade at 5.5 s). A post-only refusal (-5022) is the matching's outcome: it is replayed
    and the backtest's book decides (here it rests, and fills)."""
    from hftbacktest.reconcile import reconcile

    base = session_lines()[:8]
    rejected = [req(2 * S + 800 * MS, 7, price=99.9),
                {"event": "rejection", "local_ts": T0 + 2 * S + 803 * MS, "symbol": "btcusdt", "order_id": 7,
                 "client_id": "c7", "action": "submit", "code": -1015, "msg": "Too many new orders"}]
    s = reconcile(write_journal(tmp_path / "a.jsonl", base + rejected), write_feed(tmp_path / "f.npz"), CONFIG,
                  window_ms=100).summary
    assert s["backtest_requests"]["refused_live"] == 1
    assert (s["backtest_fills"], s["backtest_only"]) == (2, 1)  # orders 1 and 3 only: 7 was never placed
    rejected[1]["code"] = -5022
    s = reconcile(write_journal(tmp_path / "b.jsonl", base + rejected), tmp_path / "f.npz", CONFIG,
                  window_ms=100).summary
    assert s["backtest_requests"]["refused_live"] == 0 and (s["backtest_fills"], s["backtest_only"]) == (3, 2)


def test_a_cancel_refused_because_the_order_filled_arrives_after_the_fill(tmp_path):
    """Order 1 fills live at 4 s; the bot's cancel sent at 3.99 s was refused (-2011: already filled), the refusal
    received at 4.005 s. The neighbours' latency (1 ms each way) would bring the cancel in at 3.991 s, before the
    fill; the refusal places it one median response latency before it reached the connector, at 4.004 s, after
    the trade: the backtest fills order 1 too. Without the refusal line the cancel is in time and the backtest
    loses the fill."""
    from hftbacktest.reconcile import reconcile

    lines = session_lines()
    cancel = req(3990 * MS, 1, action="cancel")
    refusal = {"event": "rejection", "local_ts": T0 + 4005 * MS, "symbol": "btcusdt", "order_id": 1,
               "client_id": "c1", "action": "cancel", "code": -2011, "msg": "Unknown order sent."}
    feed = write_feed(tmp_path / "f.npz")
    with_refusal = lines[:6] + [cancel, lines[6], refusal] + lines[7:]
    s = reconcile(write_journal(tmp_path / "a.jsonl", with_refusal), feed, CONFIG, window_ms=100).summary
    assert (s["live_fills"], s["matched_fills"], s["backtest_fills"]) == (2, 1, 2)
    s = reconcile(write_journal(tmp_path / "b.jsonl", lines[:6] + [cancel] + lines[6:]), feed, CONFIG,
                  window_ms=100).summary
    assert (s["live_fills"], s["matched_fills"], s["backtest_fills"]) == (2, 0, 1)


def test_feed_gap_excludes_the_orders_it_meets(tmp_path):
    """A collector gap 4.5 s .. 5.2 s meets orders 2 and 3 (alive then) but not order 1 (filled at 4 s): only
    order 1 is compared, and it agrees."""
    from hftbacktest.reconcile import reconcile

    feed = write_feed(tmp_path / "f.npz")
    (tmp_path / "f.npz.json").write_text(json.dumps({"symbol": "btcusdt", "gaps": [
        {"kind": "ws_reconnect", "stream": "btcusdt@trade", "start_ns": T0 + 4 * S + S // 2, "end_ns": T0 + 5200 * MS}]}))
    res = reconcile(write_journal(tmp_path / "j.jsonl", session_lines()), feed, CONFIG, window_ms=100)
    s = res.summary
    assert s["orders_excluded"] == 2 and len(s["excluded_intervals"]) == 1
    assert s["excluded_intervals"][0]["kind"] == "ws_reconnect"
    assert (s["live_fills"], s["matched_fills"], s["agreement"]) == (1, 1, 1.0)
    assert res.fills.filter(pl.col("excluded"))["order_id"].to_list() == [2, 3]
    assert res.excluded.height == 1


def test_journal_starting_before_the_feed_is_warned_and_that_interval_excluded(tmp_path):
    from hftbacktest.reconcile import reconcile

    lines = [req(-S, 9, price=95.0), *session_lines()]  # a second before the feed's first row
    res = reconcile(write_journal(tmp_path / "j.jsonl", lines), write_feed(tmp_path / "f.npz"), CONFIG)
    assert any("starts before the feed" in w for w in res.summary["warnings"])
    assert res.summary["orders_excluded"] == 1
    assert res.summary["excluded_intervals"][0]["kind"] == "before the feed"


@pytest.mark.parametrize("case, message", [
    ("symbol", "the journal is of BTCUSDT, the feed"),
    ("period", "does not overlap the feed"),
    ("overlap", "overlap in time"),
    ("duplicate", "duplicates"),
    ("twice", "journal given twice"),
    ("malformed", "j.jsonl:11: not a JSON line"),
    ("missing", "j.jsonl:1: missing key 'order_id'"),
    ("side", "j.jsonl:1: key 'side': unknown value 'LONG'"),
])
def test_bad_input_is_a_data_error_naming_the_culprit(tmp_path, case, message):
    from hftbacktest.reconcile import reconcile

    feed = write_feed(tmp_path / "f.npz")
    lines = session_lines()
    journals = [tmp_path / "j.jsonl"]
    if case == "symbol":
        (tmp_path / "f.npz.json").write_text(json.dumps({"symbol": "ethusdt", "gaps": []}))
    elif case == "period":
        for x in lines:
            x["local_ts"] += 86_400 * S
            if "exch_ts" in x:
                x["exch_ts"] += 86_400 * S
    elif case in ("overlap", "duplicate"):
        second = lines[4:] if case == "duplicate" else [dict(x, order_id=x["order_id"] + 10) for x in lines[4:]]
        journals.append(write_journal(tmp_path / "k.jsonl", second))
    elif case == "twice":
        journals.append(tmp_path / "j.jsonl")
    elif case == "missing":
        del lines[0]["order_id"]
    elif case == "side":
        lines[0]["side"] = "LONG"
    write_journal(journals[0], lines)
    if case == "malformed":
        with open(journals[0], "ab") as fh:
            fh.write(b'{"event": "fill", "local_ts": 1\n')
    with pytest.raises(DataError, match=message):
        reconcile(journals, feed, CONFIG)


def test_unknown_queue_model_is_named_with_a_suggestion(files):
    from hftbacktest.reconcile import calibrate, reconcile

    journal, feed = files
    with pytest.raises(ConfigError, match="unknown queue model 'risk_avers', did you mean 'risk_averse'"):
        calibrate(journal, feed, CONFIG, ["power_prob:2", "risk_avers"])
    with pytest.raises(ConfigError, match="'power_prob': n must be a finite number > 0"):
        reconcile(journal, feed, CONFIG, queue="power_prob:0")


def test_cli_writes_report_json_csv_and_errors_in_one_line(files, tmp_path, capsys):
    from hftbacktest.cli import main

    journal, feed = files
    cfg = tmp_path / "bt.toml"
    cfg.write_text('[[asset]]\ntick_size = 0.1\nlot_size = 1.0\nqueue = { model = "risk_adverse" }\n')
    out = tmp_path / "out" / "r.html"
    out.parent.mkdir()
    assert main(["reconcile", "--journal", str(journal), "--feed", str(feed), "--config", str(cfg), "-o", str(out),
                 "--csv", str(tmp_path / "fills.csv"), "--window-ms", "100"]) == 0
    text = capsys.readouterr().out
    assert "fill agreement 50.00 % (1 of 2 live fills)" in text
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["agreement"] == 0.5 and summary["queue"] == "risk_averse"
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Unmatched fills (2)" in page and "plotly" in page
    assert pl.read_csv(tmp_path / "fills.csv").height == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.html", "r.json"]  # no temporary left behind

    table = tmp_path / "cal.csv"
    assert main(["calibrate", "--journal", str(journal), "--feed", str(feed), "--config", str(cfg), "--queue",
                 "risk_averse", "power_prob:2,3", "-o", str(table)]) == 0
    assert "best: " in capsys.readouterr().out
    assert pl.read_csv(table)["queue"].to_list()[0] in ("risk_averse", "power_prob:2", "power_prob:3")

    assert main(["calibrate", "--journal", str(journal), "--feed", str(feed), "--config", str(cfg), "--queue",
                 "log_prb", "-o", str(table)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown queue model 'log_prb', did you mean 'log_prob'")


def test_same_millisecond_order_and_trade_are_ordered_by_their_receive_times(tmp_path):
    """Binance's millisecond stamps: a sell at 100.1 answered at 3000 ms (reply received 0.5 ms later) and a buy
    trade of 10 at 100.1 stamped 3000 ms too but received 1.0 ms later (feed delay 0.3 ms). Live, the order was in
    the book first and the trade overran the 5 ahead of it. Read by the receive times (3.0000 s vs 3.0007 s) the
    backtest does the same; by the stamps alone it would apply the trade first and never fill the order."""
    from hftbacktest.reconcile import reconcile

    us = 1000
    rows = [(BOTH | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, 1000 * MS, 1000 * MS + 300 * us, 100.0, 5.0),
            (BOTH | DEPTH_SNAPSHOT_EVENT | SELL_EVENT, 1000 * MS, 1000 * MS + 300 * us, 100.1, 5.0),
            (BOTH | TRADE_EVENT | BUY_EVENT, 3000 * MS, 3001 * MS, 100.1, 10.0),
            (BOTH | DEPTH_EVENT | BUY_EVENT, 10_000 * MS, 10_000 * MS + 300 * us, 99.0, 1.0)]
    arr = np.zeros(len(rows), event_dtype)
    for i, (ev, ets, lts, px, qty) in enumerate(rows):
        arr[i] = (ev, T0 + ets, T0 + lts, px, qty, 0, 0, 0.0)
    np.savez(tmp_path / "f.npz", data=arr)
    lines = [req(2999 * MS + 500 * us, 1, side="SELL", price=100.1, tif="GTX"),
             exch("ack", 3000 * MS + 500 * us, 1, 3000 * MS, side="SELL", price=100.1),
             fill(3001 * MS + 200 * us, 1, 3000 * MS, "SELL", 100.1, 1.0)]
    res = reconcile(write_journal(tmp_path / "j.jsonl", lines), tmp_path / "f.npz", CONFIG, window_ms=100)
    assert (res.summary["matched_fills"], res.summary["agreement"]) == (1, 1.0)


def test_strategy_replay_reruns_a_strategy_with_the_live_latency_log(files, tmp_path):
    """A plain-Python strategy (the API is the same from @njit code) that joins the bid at the session's start:
    the feed fills it at 4 s as live filled order 1; live also sold order 2, so the positions differ by 1."""
    from hftbacktest import GTC, LIMIT
    from hftbacktest.reconcile import strategy_replay

    journal, feed = files
    log = tmp_path / "latency.jsonl"
    log.write_bytes(orjson.dumps({"req_ts": T0 + 2 * S, "exch_ts": T0 + 2 * S + MS, "resp_ts": T0 + 2 * S + 2 * MS,
                                  "req": "NEW"}) + b"\n")

    def strategy(hbt, recorder):
        hbt.submit_buy_order(0, 1, 100.0, 1.0, GTC, LIMIT, False)
        while hbt.elapse(500_000_000) == 0 and hbt.current_timestamp < T0 + 8 * S:
            recorder.record(hbt)

    res = strategy_replay(journal, feed, CONFIG, log, strategy)
    s = res.summary
    assert s["mode"] == "strategy replay" and (s["live_fills"], s["backtest_fills"]) == (2, 1)
    assert (s["live_position"], s["backtest_position"]) == (0.0, 1.0)
    assert res.paths["ts"][0] == T0 + 2 * S + 500 * MS  # started where the live session did
    assert res.paths.filter(pl.col("ts") > T0 + 4 * S)["bt_position"].unique().to_list() == [1.0]
    out = res.write_html(tmp_path / "s.html", charts="images")
    assert "Live vs strategy re-run" in out.read_text() and "data:image/png;base64" in out.read_text()


def test_answers_are_refined_within_their_millisecond_beside_a_refusals_estimate():
    """Answers stamped 5 ms and received at 5.9 ms, 7.5 ms and 9 ms (the quickest answer took 0.2 ms): within
    their millisecond they keep the order of arrival, at late / (late + 1 ms) of it (late: 0.7, 2.3 and 3.8 ms),
    not all on its last nanosecond. A refusal's row carries an estimated, sub-millisecond exchange time and is left
    as it is, without stopping the others' refinement (any time off the millisecond grid reads as an exchange with
    finer stamps)."""
    from hftbacktest.reconcile.session import refine_answers

    rows = np.array([[1 * MS, 3 * MS, 3 * MS + 200_000, 0],
                     [2 * MS, 5 * MS, 5 * MS + 900_000, 0],
                     [2 * MS, 5 * MS, 7 * MS + 500_000, 0],
                     [2 * MS, 5 * MS, 9 * MS, 0],
                     [4 * MS, 6 * MS + 123_456, 7 * MS, 1]], np.int64)
    out = refine_answers(rows)
    assert out[:, 1].tolist() == [3 * MS, 5 * MS + 411_764, 5 * MS + 696_969, 5 * MS + 791_666, 6 * MS + 123_456]
    assert refine_answers(rows[:, :3])[:, 1].tolist() == rows[:, 1].tolist()  # without the flag: finer stamps


def test_a_late_fill_of_a_reused_order_id_belongs_to_its_own_order(tmp_path):
    """The bot submits id 1 again at 3.9 s; the exchange had filled the first order 1 at 3.8 s, reported at 4 s
    with that order's client id: the fill is the first order's, the second one has none."""
    from hftbacktest.reconcile.session import load_journals

    lines = session_lines()[:2] + [req(3900 * MS, 1), fill(4 * S, 1, 3800 * MS, "BUY", 100.0, 1.0),
                                   exch("ack", 4 * S + MS, 1, 3901 * MS, client_id="c1-again")]
    s = load_journals(write_journal(tmp_path / "j.jsonl", lines))
    assert len(s.orders) == 2 and [f.inst for f in s.fills] == [0]
    assert [r.exch_ts - T0 for r in s.requests] == [2 * S + MS, 3901 * MS]  # each submit answered by its own ack
