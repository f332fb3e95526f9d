"""Perpetual-futures extras on hand-built events: latency per request type, mark price, funding settlement.
Tick 1, lot 1; every expected number is derived in the comments."""
import re

import numpy as np
import pytest

from hftbacktest import GTC, IOC, LIMIT, BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest.errors import DataError
from hftbacktest.types import (
    CANCELED,
    FUNDING_RATE_EVENT,
    MARK_PRICE_EVENT,
    NEW,
    event_dtype,
    order_latency_dtype,
    order_latency_req_dtype as REQ_DTYPE,
)

from _engine_data import BOTH, ask, bid



def events(*items):
    """items: (ev, exch_ts, local_ts, px, qty[, ival])."""
    out = np.zeros(len(items), event_dtype)
    for i, it in enumerate(items):
        ev, ets, lts, px, qty = it[:5]
        out[i] = (ev, ets, lts, px, qty, 0, it[5] if len(it) > 5 else 0, 0.0)
    return out


def mark(ts, px, lts=None):
    return (BOTH | MARK_PRICE_EVENT, ts, ts if lts is None else lts, px, 0.0)


def rate(ts, r, funding_time=0, lts=None):
    return (BOTH | FUNDING_RATE_EVENT, ts, ts if lts is None else lts, r, 0.0, funding_time)


BOOK = [bid(1000, 99.0, 5.0), ask(1000, 101.0, 5.0)]


# --- latency lanes ----------------------------------------------------------------------------------------------------
# rows A (0, 50, 150, NEW), B (10, 510, 1510, any), C (2e6, 2e6+500, 2e6+1500, any), D (3e6, 3e6+50, 3e6+150, NEW)
# NEW lane = A, D: entry 50, response 100 everywhere. Shared lane = A..D: between B and C entry 500, response 1000.
LANE_ROWS = [(0, 50, 150, NEW), (10, 510, 1510, 0), (2_000_000, 2_000_500, 2_001_500, 0),
             (3_000_000, 3_000_050, 3_000_150, NEW)]


def _lat_bot(table):
    data = events(*BOOK, bid(9000, 98.0, 1.0), bid(20_000, 97.0, 1.0))
    a = BacktestAsset().data([data]).tick_size(1.0).lot_size(1.0).intp_order_latency(table)
    return HashMapMarketDepthBacktest([a])


def test_latency_lanes_per_request_type_and_shared_fallback():
    hbt = _lat_bot(np.array(LANE_ROWS, REQ_DTYPE))
    hbt.elapse(100)  # 1100
    assert hbt.submit_buy_order(0, 1, 99.0, 1.0, GTC, LIMIT, True) == 0
    # NEW lane: sent 1100, exchange 1100 + 50, reply 1150 + 100
    assert hbt.order_latency(0) == (1100, 1150, 1250) and hbt.current_timestamp == 1250
    hbt.elapse(750)  # 2000
    # no CANCELED rows: the shared lane, between B and C: entry 500 -> 2500, response 1000 -> 3500
    assert hbt.cancel(0, 1, True) == 0
    # (the reply is the exchange's order, which keeps the submit's local_timestamp, as in the reference)
    assert hbt.order_latency(0) == (1100, 2500, 3500) and hbt.current_timestamp == 3500
    assert hbt.orders(0).get(1).status == CANCELED


def test_latency_lanes_submit_and_cancel_differ():
    # NEW rows: entry 100, response 200; CANCELED rows: entry 1000, response 2000 (constant per lane)
    rows = [(0, 100, 300, NEW), (0, 1000, 3000, CANCELED),
            (1_000_000, 1_000_100, 1_000_300, NEW), (1_000_000, 1_001_000, 1_003_000, CANCELED)]
    hbt = _lat_bot(np.array(rows, REQ_DTYPE))
    hbt.elapse(100)
    hbt.submit_buy_order(0, 1, 99.0, 1.0, GTC, LIMIT, True)
    assert hbt.order_latency(0) == (1100, 1200, 1400)
    hbt.elapse(600)  # 2000
    hbt.cancel(0, 1, True)
    assert hbt.order_latency(0) == (1100, 3000, 5000) and hbt.current_timestamp == 5000


def test_table_without_req_column_is_one_shared_lane():
    plain = np.zeros(len(LANE_ROWS), order_latency_dtype)
    for i, (r, x, s, _) in enumerate(LANE_ROWS):
        plain[i] = (r, x, s, 0)
    hbt = _lat_bot(plain)
    hbt.elapse(100)
    hbt.submit_buy_order(0, 1, 99.0, 1.0, GTC, LIMIT, True)
    # shared lane between B and C: entry 500 -> 1600, response at 1600 between B and C: 1000 -> 2600
    assert hbt.order_latency(0) == (1100, 1600, 2600)


def test_unknown_request_type_names_the_row(tmp_path):
    bad = np.array([(0, 50, 150, NEW), (10, 60, 160, 9)], REQ_DTYPE)
    with pytest.raises(DataError, match=r"row 1: unknown request type 9"):
        _lat_bot(bad)
    np.savez(tmp_path / "lat.npz", data=bad)
    with pytest.raises(DataError, match=r"asset 0: .*lat\.npz: row 1: unknown request type 9 in field req"):
        _lat_bot(str(tmp_path / "lat.npz"))


# --- mark price and funding -------------------------------------------------------------------------------------------
T = 10_000  # funding time announced by the rate rows (their `ival`, as converted with mark_price_time='E')


def _feed(r1, r2, funding_time=T):
    return events(
        *BOOK,
        mark(2000, 100.0, lts=2500), rate(2000, r1, funding_time, lts=2500),
        mark(9000, 102.0), rate(9000, r2, funding_time),  # in force at T
        bid(12_000, 98.0, 1.0),  # first exchange event after T: settles it
        rate(13_000, 0.0005, T),  # repeated announcement for a settled time: never paid again
        mark(14_000, 50.0),
        bid(20_000, 97.0, 1.0),
    )


def _fund_bot(data, funding=True, inverse=False):
    a = BacktestAsset().data([data]).tick_size(1.0).lot_size(1.0).constant_order_latency(10, 10)
    if inverse:
        a = a.inverse_asset(100.0)
    if funding:
        a = a.funding(True)
    return HashMapMarketDepthBacktest([a])


def _trade(hbt, side, qty=3.0):
    hbt.elapse(100)  # 1100
    if side > 0:  # taker at the ask 101 (no partial fill: whole qty at the touch)
        hbt.submit_buy_order(0, 1, 101.0, qty, IOC, LIMIT, True)
    else:  # taker at the bid 99
        hbt.submit_sell_order(0, 1, 99.0, qty, IOC, LIMIT, True)


@pytest.mark.parametrize("side, r2, paid", [
    (1, 0.0002, 3 * 102.0 * 0.0002),  # long, positive rate: pays position x mark x rate
    (-1, 0.0002, -3 * 102.0 * 0.0002),  # short, positive rate: receives
    (1, -0.0002, -3 * 102.0 * 0.0002),  # long, negative rate: receives
    (-1, -0.0002, 3 * 102.0 * 0.0002),  # short, negative rate: pays
])
def test_linear_funding_long_short_signs(side, r2, paid):
    hbt = _fund_bot(_feed(0.0001, r2))
    _trade(hbt, side)
    hbt.elapse(10_000)  # up to 11_240: before the settling event at 12_000
    assert hbt.funding(0) == 0.0
    cash = -303.0 if side > 0 else 297.0
    assert hbt.state_values(0).balance == cash
    hbt.elapse(20_000)
    assert hbt.funding(0) == pytest.approx(paid, rel=1e-12)
    assert hbt.state_values(0).balance == pytest.approx(cash - paid, rel=1e-12)
    assert hbt.state_values(0).fee == 0.0  # funding is not a trading fee


def test_flat_pays_nothing_and_default_is_off():
    hbt = _fund_bot(_feed(0.0001, 0.0002))
    hbt.elapse(30_000)
    assert hbt.funding(0) == 0.0 and hbt.state_values(0).balance == 0.0
    off = _fund_bot(_feed(0.0001, 0.0002), funding=False)
    _trade(off, 1)
    off.elapse(30_000)
    assert off.funding(0) == 0.0 and off.state_values(0).balance == -303.0


def test_reference_timestamps_settle_once():
    # reference converter: rate rows carry no ival and exch_ts = the funding time itself
    data = events(*BOOK, mark(T, 101.0), rate(T, 0.0001), mark(T, 103.0), rate(T, 0.0003),
                  bid(12_000, 98.0, 1.0), bid(13_000, 97.0, 1.0), bid(20_000, 96.0, 1.0))
    hbt = _fund_bot(data)
    _trade(hbt, 1)
    hbt.elapse(30_000)
    assert hbt.funding(0) == pytest.approx(3 * 103.0 * 0.0003, rel=1e-12)


def test_inverse_funding_in_coin():
    hbt = _fund_bot(_feed(0.0001, 0.0002), inverse=True)
    _trade(hbt, 1)
    hbt.elapse(30_000)
    paid = 3 * 100.0 / 102.0 * 0.0002  # contracts x contract size / mark x rate, in coin
    assert hbt.funding(0) == pytest.approx(paid, rel=1e-12)
    # inverse balances are negated coin (equity = -balance - position x cs / price): paying raises the balance
    assert hbt.state_values(0).balance == pytest.approx(-300.0 / 101.0 + paid, rel=1e-12)


def test_mark_price_follows_local_rows():
    hbt = _fund_bot(_feed(0.0001, 0.0002), funding=False)
    hbt.elapse(100)
    assert np.isnan(hbt.mark_price(0))
    hbt.elapse(1350)  # 2450: the first mark row is seen locally at 2500
    assert np.isnan(hbt.mark_price(0))
    hbt.elapse(100)
    assert hbt.mark_price(0) == 100.0
    hbt.elapse(20_000)
    assert hbt.mark_price(0) == 50.0


def test_funding_without_funding_rows_is_a_build_error():
    data = events(*BOOK, mark(2000, 100.0), bid(9000, 98.0, 1.0))
    with pytest.raises(DataError, match=r"asset 0: funding\(True\) but <in-memory array> has no funding-rate rows"):
        _fund_bot(data)
    a = BacktestAsset().data([data]).tick_size(1.0).lot_size(1.0).funding(True, lenient=True)
    with pytest.warns(UserWarning, match="<in-memory array> has no funding-rate rows"):
        hbt = HashMapMarketDepthBacktest([a])
    hbt.elapse(20_000)
    assert hbt.funding(0) == 0.0


def test_latency_log_keeps_request_types_for_the_lanes(tmp_path):
    from hftbacktest.live import OrderLatencyLogger, latency_log_to_npz

    log = OrderLatencyLogger(tmp_path / "lat.jsonl")
    for req_ts, exch_ts, resp_ts, _ in [(0, 100, 300, 0), (1_000_000, 1_000_100, 1_000_300, 0)]:
        log.record(req_ts, exch_ts, resp_ts, NEW)
    for req_ts, exch_ts, resp_ts in [(0, 1000, 3000), (1_000_000, 1_001_000, 1_003_000)]:
        log.record(req_ts, exch_ts, resp_ts, CANCELED)
    log.close()
    latency_log_to_npz(tmp_path / "lat.jsonl", tmp_path / "lat.npz")
    hbt = _lat_bot(str(tmp_path / "lat.npz"))
    hbt.elapse(100)
    hbt.submit_buy_order(0, 1, 99.0, 1.0, GTC, LIMIT, True)
    assert hbt.order_latency(0) == (1100, 1200, 1400)
    hbt.elapse(600)
    hbt.cancel(0, 1, True)
    assert hbt.order_latency(0) == (1100, 3000, 5000) and hbt.current_timestamp == 5000
    (tmp_path / "bad.jsonl").write_text('{"req_ts": 1, "exch_ts": 2, "resp_ts": 3, "req": "NEW"}\n'
                                        '{"req_ts": 2, "exch_ts": 3, "resp_ts": 4, "req": "FOO"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: .*unknown request type 'FOO'"):
        latency_log_to_npz(tmp_path / "bad.jsonl", tmp_path / "x.npz")


def _mark_line(E, T):
    import json

    d = {"e": "markPriceUpdate", "E": E, "s": "BTCUSDT", "p": "100.5", "P": "100.6", "i": "100.4",
         "r": "0.00010000", "T": T}
    return f"{E * 1_000_000 + 3_000_000} " + json.dumps({"stream": "btcusdt@markPrice@1s", "data": d},
                                                          separators=(",", ":")) + "\n"


def test_converter_keeps_the_funding_time_with_event_timestamps(tmp_path):
    import contextlib
    import gzip
    import io
    import warnings

    from hftbacktest.data.utils.binancefutures import convert

    E, T = 1_723_075_200_000 - 5000, 1_723_075_200_000
    path = tmp_path / "btcusdt_20240808.gz"  # the symbol matches: lines after the first take the fast parser
    with gzip.open(path, "wt") as fh:
        for k in range(3):
            fh.write(_mark_line(E + 1000 * k, T))
    out = {}
    for when in ("E", "T"):
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[when] = convert(str(path), opt="m", mark_price_time=when)
    rows = out["E"][(out["E"]["ev"] & 0xFF) == FUNDING_RATE_EVENT]
    assert rows["exch_ts"].tolist() == [(E + 1000 * k) * 1_000_000 for k in range(3)]
    assert rows["ival"].tolist() == [T * 1_000_000] * 3 and rows["px"].tolist() == [0.0001] * 3
    ref = out["T"][(out["T"]["ev"] & 0xFF) == FUNDING_RATE_EVENT]
    assert ref["exch_ts"].tolist() == [T * 1_000_000] * 3 and ref["ival"].tolist() == [0] * 3  # reference layout


def test_update_at_the_settlement_instant_announcing_the_next_time():
    # at exactly T Binance has settled: the update stamped T (mark 104) already shows the next funding time
    data = events(*BOOK, mark(2000, 100.0), rate(2000, 0.0002, T), mark(T, 104.0), rate(T, 0.0009, T + 50_000),
                  bid(12_000, 98.0, 1.0), bid(70_000, 97.0, 1.0), bid(80_000, 96.0, 1.0))
    hbt = _fund_bot(data)
    _trade(hbt, 1)
    hbt.elapse(20_000)
    first = 3 * 104.0 * 0.0002  # T: the rate announced for T, the mark in force at T
    assert hbt.funding(0) == pytest.approx(first, rel=1e-12)
    hbt.elapse(70_000)
    assert hbt.funding(0) == pytest.approx(first + 3 * 104.0 * 0.0009, rel=1e-12)  # T + 50_000, settled at 70_000


def test_synthetic_feed_across_a_funding_time(tmp_path):
    import contextlib
    import io
    import warnings

    from hftbacktest.data.synthetic import generate
    from hftbacktest.data.utils.binancefutures import convert
    from hftbacktest.types import EXCH_EVENT

    B = 1_723_161_600_000  # 2024-08-09 00:00 UTC, a funding time
    path = tmp_path / "btcusdt_20240808.gz"
    generate(str(path), start_ms=B - 20_000, minutes=0.5, seed=5)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = convert(str(path), opt="m", mark_price_time="E")
    a = (BacktestAsset().data([data]).tick_size(0.1).lot_size(0.001).constant_order_latency(1_000_000, 1_000_000)
         .funding(True))
    hbt = HashMapMarketDepthBacktest([a])
    hbt.elapse(2_000_000_000)
    hbt.submit_buy_order(0, 1, hbt.depth(0).best_ask, 0.01, IOC, LIMIT, True)
    assert hbt.position(0) == 0.01
    balance = hbt.state_values(0).balance
    hbt.elapse(25_000_000_000)  # past B
    # hand-derived from the rows the exchange side saw up to B: the last mark and the last rate announced for B
    x = data[(data["ev"] & EXCH_EVENT) != 0]
    x = x[np.argsort(x["exch_ts"], kind="stable")]
    upto = x[x["exch_ts"] <= B * 1_000_000]
    mark_b = upto[(upto["ev"] & 0xFF) == MARK_PRICE_EVENT]["px"][-1]
    rates = upto[((upto["ev"] & 0xFF) == FUNDING_RATE_EVENT) & (upto["ival"] == B * 1_000_000)]["px"]
    assert len(rates) > 10
    paid = 0.01 * mark_b * rates[-1]
    assert hbt.funding(0) == pytest.approx(paid, rel=1e-12) and paid != 0.0
    assert hbt.state_values(0).balance == pytest.approx(balance - paid, rel=1e-12)
    assert hbt.position(0) == 0.01 and not np.isnan(hbt.mark_price(0))


def test_recorder_and_report_show_funding(tmp_path):
    from hftbacktest.recorder import Recorder
    from hftbacktest.report import load_record, render

    rec = Recorder(1, 64)
    hbt = _fund_bot(_feed(0.0001, 0.0002))
    _trade(hbt, 1)
    for _ in range(30):
        rec.recorder.record(hbt)
        hbt.elapse(1000)
    paid = 3 * 102.0 * 0.0002
    f = rec.funding(0)
    assert f[0] == 0.0 and f[-1] == pytest.approx(paid, rel=1e-12) and np.all(np.diff(f) >= 0)
    rec.to_npz(str(tmp_path / "run.npz"))
    run = load_record(tmp_path / "run.npz")
    assert run.assets[0].funding[-1] == f[-1]
    page = render(run, resample="1us")
    assert "Funding" in page and '"funding"' in page and "trading PnL" in page
    # a run without funding writes no funding key and keeps the 2-step breakdown
    plain = Recorder(1, 64)
    off = _fund_bot(_feed(0.0001, 0.0002), funding=False)
    _trade(off, 1)
    for _ in range(30):
        plain.recorder.record(off)
        off.elapse(1000)
    plain.to_npz(str(tmp_path / "plain.npz"))
    with np.load(tmp_path / "plain.npz") as npz:
        assert sorted(npz.files) == ["0"]
    assert "trading PnL" not in render(load_record(tmp_path / "plain.npz"), resample="1us")


def test_an_order_reaching_the_exchange_after_the_funding_time_settles_first():
    # no market data between T and 50_000: the closing order reaching the exchange at 20_010 settles T first,
    # with the position held at T
    data = events(*BOOK, mark(2000, 100.0), rate(2000, 0.0002, T), bid(50_000, 98.0, 1.0), bid(60_000, 97.0, 1.0))
    hbt = _fund_bot(data)
    _trade(hbt, 1)
    hbt.elapse(20_000 - hbt.current_timestamp)
    hbt.submit_sell_order(0, 2, 99.0, 3.0, IOC, LIMIT, True)
    assert hbt.position(0) == 0.0
    assert hbt.funding(0) == pytest.approx(3 * 100.0 * 0.0002, rel=1e-12)


HOLD_STRATEGY = '''
from numba import njit
from hftbacktest import IOC, LIMIT


@njit
def buy_and_hold(hbt, recorder):
    bought = False
    while hbt.elapse(100_000_000) == 0:
        depth = hbt.depth(0)
        if not bought and depth.best_ask < 1e12:
            hbt.submit_buy_order(0, 1, depth.best_ask, 0.01, IOC, LIMIT, False)
            bought = True
        recorder.record(hbt)
    return True
'''

HOLD_CONFIG = '''
strategy = "strategy.py:buy_and_hold"
record_size = 100

[[asset]]
name = "BTCUSDT"
data = ["feed.npz"]
tick_size = 0.1
lot_size = 0.001
latency = { model = "constant", entry = 1_000_000, response = 1_000_000 }
fee = { model = "trading_value", maker = -0.00005, taker = 0.0007 }
funding = true
'''


@pytest.fixture(scope="module")
def several_fundings(tmp_path_factory):
    """2.5 minutes of synthetic feed settling funding every minute: funding times B, B + 60 s and B + 120 s."""
    import contextlib
    import io
    import warnings

    from hftbacktest.data.synthetic import generate
    from hftbacktest.data.utils.binancefutures import convert

    d = tmp_path_factory.mktemp("fund")
    B = 1_723_161_600_000
    generate(str(d / "feed.gz"), start_ms=B - 15_000, minutes=2.5, seed=7, funding_interval_ms=60_000)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = convert(str(d / "feed.gz"), opt="m", output_filename=str(d / "feed.npz"))
        convert(str(d / "feed.gz"), output_filename=str(d / "plain.npz"))
    (d / "strategy.py").write_text(HOLD_STRATEGY)
    (d / "run.toml").write_text(HOLD_CONFIG)
    return d, data, [B + k * 60_000 for k in range(3)]


def test_synthetic_feed_across_several_funding_times_stats_and_report(several_fundings, tmp_path):
    from hftbacktest.recorder import Recorder
    from hftbacktest.report import load_record, render
    from hftbacktest.stats import LinearAssetRecord
    from hftbacktest.types import EXCH_EVENT

    d, data, times = several_fundings
    a = (BacktestAsset().data([str(d / "feed.npz")]).tick_size(0.1).lot_size(0.001)
         .constant_order_latency(1_000_000, 1_000_000).trading_value_fee_model(-0.00005, 0.0007).funding(True))
    hbt = HashMapMarketDepthBacktest([a])
    rec = Recorder(1, 2000)
    hbt.elapse(1_000_000_000)
    hbt.submit_buy_order(0, 1, hbt.depth(0).best_ask, 0.01, IOC, LIMIT, True)
    assert hbt.position(0) == 0.01
    while hbt.elapse(100_000_000) == 0:
        rec.recorder.record(hbt)
    assert hbt.position(0) == 0.01
    # hand-derived per funding time: the last mark at or before it, the last rate announced for it
    x = data[(data["ev"] & EXCH_EVENT) != 0]
    x = x[np.argsort(x["exch_ts"], kind="stable")]
    paid = []
    for t in times:
        upto = x[x["exch_ts"] <= t * 1_000_000]
        m = upto[(upto["ev"] & 0xFF) == MARK_PRICE_EVENT]["px"][-1]
        r = upto[((upto["ev"] & 0xFF) == FUNDING_RATE_EVENT) & (upto["ival"] == t * 1_000_000)]["px"][-1]
        paid.append(0.01 * m * r)
    assert len(set(paid)) == 3 and all(p > 0 for p in paid)  # three different settlements (the rate moves)
    assert hbt.funding(0) == pytest.approx(sum(paid), rel=1e-12)
    f = rec.funding(0)
    assert sorted(set(np.round(np.diff(f)[np.diff(f) != 0], 12))) == sorted(np.round(paid, 12))  # one step each

    stats = LinearAssetRecord(rec.get(0)).funding(f).resample("1s").stats()
    row = stats.splits[-1]
    assert list(row)[-2:] == ["Fees", "Funding"]
    assert row["Funding"] == pytest.approx(f[-1] - f[0], rel=1e-9)
    assert row["Fees"] == pytest.approx(rec.get(0)["fee"][-1] - rec.get(0)["fee"][0], rel=1e-9)
    assert "Funding" not in LinearAssetRecord(rec.get(0)).resample("1s").stats().splits[-1]  # 2.x columns
    with pytest.raises(DataError, match="funding: 3 values for a record of"):
        LinearAssetRecord(rec.get(0)).funding(f[:3])

    rec.to_npz(str(tmp_path / "run.npz"))
    page = render(load_record(tmp_path / "run.npz"), resample="1s")
    assert "Funding" in page and "trading PnL" in page


def test_backtest_cli_funding_key(several_fundings, capsys):
    from hftbacktest.cli import main

    d, _, _ = several_fundings
    assert main(["backtest", str(d / "run.toml"), "--record", str(d / "out.npz")]) == 0
    out = capsys.readouterr().out
    shown = re.search(r"Funding\s+│\s+(\S+)", out)
    with np.load(d / "out.npz") as npz:
        f = npz["funding_0"]
    assert shown and float(shown.group(1)) == pytest.approx(f[-1] - f[0], rel=1e-5) and f[-1] > 0, out

    (d / "bad.toml").write_text(HOLD_CONFIG.replace("funding = true", 'funding = "yes"'))
    assert main(["backtest", str(d / "bad.toml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and 'asset[0].funding: expected true, false or "lenient"' in err

    (d / "plain.toml").write_text(HOLD_CONFIG.replace("feed.npz", "plain.npz"))
    assert main(["backtest", str(d / "plain.toml")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "plain.npz has no funding-rate rows" in err and "Traceback" not in err
    (d / "lenient.toml").write_text(HOLD_CONFIG.replace("feed.npz", "plain.npz").replace("= true", '= "lenient"'))
    with pytest.warns(UserWarning, match="plain.npz has no funding-rate rows"):
        assert main(["backtest", str(d / "lenient.toml")]) == 0
