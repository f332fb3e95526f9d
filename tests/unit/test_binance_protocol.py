"""The shared Binance-protocol module: its rules, and the converter, collector, connector and emulator all
following the same ones (they used to carry their own copies, which disagreed at the edges)."""
import subprocess
import sys

import numpy as np
import pytest

from hftbacktest.binance import depth, signing, wire
from hftbacktest.binance.numbers import decimals_in, decimals_of, fmt_steps, format_step, on_step, to_steps
from hftbacktest.binance.symbols import SymbolSpec


def test_importing_it_compiles_nothing():
    code = ("import sys, hftbacktest.binance.depth, hftbacktest.binance.wire, hftbacktest.binance.numbers, "
            "hftbacktest.binance.signing, hftbacktest.binance.symbols; print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("step, decimals", [(0.1, 1), (0.001, 3), (1.0, 0), (10.0, 0), (1e-8, 8), (0.00025, 5)])
def test_decimals_of_steps(step, decimals):
    assert decimals_of(step) == decimals


def test_decimal_strings_and_steps():
    assert decimals_in("0.0100") == 2 and decimals_in("61000") == 0 and decimals_in("1.") == 0
    assert to_steps("61800.3", 0.1) == 618003 and to_steps("0.006", 0.001) == 6
    assert on_step(61800.3, 0.1) and not on_step(61800.35, 0.1)
    assert fmt_steps(618003, 0.1) == "61800.3" and fmt_steps(618003, 0.1, 2) == "61800.30"
    assert format_step(0.00000123, 0.00000001) == "0.00000123"  # never scientific


def test_depth_rules_follow_binance_page():
    # drop u < lastUpdateId; the first applied diff straddles it; then pu chains
    assert depth.stale(99, 100) and not depth.stale(100, 100)
    assert depth.bridges(95, 105, 100) and depth.bridges(100, 100, 100)
    assert not depth.bridges(101, 105, 100) and not depth.bridges(90, 99, 100)
    assert depth.next_diff(106, 110, 105, 105, 95) == depth.APPLY
    assert depth.next_diff(96, 105, 95, 105, 95) == depth.REPEAT  # the last diff again
    assert depth.next_diff(80, 90, 79, 105, 95) == depth.REPEAT  # an old one (replayed after a reconnect)
    assert depth.next_diff(112, 115, 111, 110, 105) == depth.GAP
    # a venue's snapshot after diff u is bridged by its next diff and counts as "still in sync"
    assert depth.bridges(depth.snapshot_id(110), 111, depth.snapshot_id(110))
    assert depth.snapshot_continues(depth.snapshot_id(110), 110) and not depth.snapshot_continues(112, 110)


def test_converter_fast_path_applies_what_the_rule_applies():
    """data/quality.py's compiled SYNCED loop is the APPLY case of depth.next_diff."""
    from hftbacktest.data._parse import KIND_DEPTH
    from hftbacktest.data.quality import sync_run

    rng = np.random.default_rng(7)
    for _ in range(300):
        last_u, last_pu = 100, int(rng.integers(90, 101))
        U, u = int(rng.integers(95, 106)), 0
        u = U + int(rng.integers(0, 4))
        pu = int(rng.integers(98, 103))
        apply = np.zeros(1, bool)
        sync_run(np.array([KIND_DEPTH]), np.array([U]), np.array([u]), np.array([pu]), np.array([0]), 0, 0,
                 last_u, last_pu, apply)
        assert bool(apply[0]) == (depth.next_diff(U, u, pu, last_u, last_pu) == depth.APPLY), (U, u, pu, last_pu)


def test_venue_snapshots_keep_every_consumer_in_sync():
    """A snapshot served mid-stream (lastUpdateId = last u + 1, as the emulator serves it) is no gap for the
    converter's report, the collector or the connector."""
    from hftbacktest.connector.marketdata import SymbolBook
    from hftbacktest.data._parse import KIND_DEPTH, KIND_SNAPSHOT
    from hftbacktest.data.quality import DepthSync, QualityReport

    # (kind, U, u, pu): snapshot 100, diffs chained by pu, a second snapshot 111 = last u + 1, more diffs
    msgs = [(KIND_SNAPSHOT, 100, 0, 0), (KIND_DEPTH, 100, 104, 99), (KIND_DEPTH, 105, 110, 104),
            (KIND_SNAPSHOT, 111, 0, 0), (KIND_DEPTH, 111, 113, 110), (KIND_DEPTH, 114, 118, 113)]
    rep = QualityReport(path="x")
    sync = DepthSync(len(msgs), rep)
    cols = np.array([(k, i + 1, i, U, u, pu) for i, (k, U, u, pu) in enumerate(msgs)], np.int64).T
    sync.feed(0, *cols)
    apply, _ = sync.finish()
    assert rep.gaps == [] and apply.tolist() == [False, True, True, False, True, True]

    book = SymbolBook("btcusdt")
    for k, U, u, pu in msgs:
        if k == KIND_SNAPSHOT:
            if book.state != "LIVE":
                book.on_snapshot({"lastUpdateId": U, "bids": [], "asks": []}, 0)
            continue
        book.on_depth({"E": 1, "U": U, "u": u, "pu": pu, "b": [], "a": []}, 0)
    assert book.state == "LIVE" and book.last_u == 118


def test_signatures_cover_the_request_as_sent():
    raw_query = "symbol=BTCUSDT&orderIdList=%5B1%2C2%5D&timestamp=1&signature=abc"
    assert signing.rest_payload(raw_query, "") == "symbol=BTCUSDT&orderIdList=%5B1%2C2%5D&timestamp=1"
    assert signing.rest_payload("a=1", "b=2&signature=x") == "a=1b=2"
    sig = signing.sign("s", "a=1")
    assert signing.valid("s", "a=1", sig.upper()) and not signing.valid("t", "a=1", sig)
    assert signing.ws_payload({"timestamp": 2, "apiKey": "k", "signature": "z", "b": "x y"}) == \
        "apiKey=k&b=x+y&timestamp=2"


def test_exchange_info_round_trips_through_the_emulator_encoding():
    from hftbacktest.emulator.market import KNOWN_SYMBOLS

    for spec in KNOWN_SYMBOLS.values():
        row = {"symbol": spec.symbol, "baseAsset": spec.base_asset, "quoteAsset": spec.quote_asset,
               "pricePrecision": spec.price_decimals, "quantityPrecision": spec.qty_decimals,
               "filters": spec.filters()}
        back = SymbolSpec.from_exchange_info(row)
        assert (back.tick_size, back.lot_size, back.min_qty, back.max_qty, back.market_max_qty, back.min_notional,
                back.max_num_orders, back.percent_up, back.percent_down) == \
            (spec.tick_size, spec.lot_size, spec.min_qty, spec.max_qty, spec.market_max_qty, spec.min_notional,
             spec.max_num_orders, spec.percent_up, spec.percent_down)
        assert back.fmt_price(618003) == spec.fmt_price(618003)


def test_stream_routes_and_names():
    assert wire.stream_route("btcusdt@depth@100ms") == "public" and wire.stream_route("btcusdt@kline_1m") == "market"
    assert wire.normalize_stream("BTCUSDT@aggTrade") == "btcusdt@aggTrade"
    assert wire.is_market_trade({"X": "MARKET"}) and not wire.is_market_trade({"X": "INSURANCE_FUND"})
