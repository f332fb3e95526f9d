"""Quality checks of the Binance converter: gaps, duplicates, crossed books, bad input, strict mode."""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import warnings

import numpy as np
import pytest

from hftbacktest.data.check import check_events
from hftbacktest.data.quality import DataQualityWarning
from hftbacktest.data.synthetic import generate
from hftbacktest.data.utils.binancefutures import check_quality, convert
from hftbacktest.errors import DataError, DataQualityError
from hftbacktest.types import DEPTH_CLEAR_EVENT, DEPTH_EVENT, LOCAL_EVENT, event_dtype

TRADE = ('{"stream":"x@trade","data":{"e":"trade","E":1700000000006,"T":1700000000006,"s":"XUSDT","t":%d,'
         '"p":"100.6","q":"0.5","X":"MARKET","m":true}}')


def _quiet_convert(path, **kw):
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data, report = convert(str(path), return_report=True, **kw)
    return data, report, [str(w.message) for w in caught if issubclass(w.category, DataQualityWarning)]


def _write(path, lines, raw: bytes | None = None):
    if raw is not None:
        path.write_bytes(raw)
    else:
        with gzip.open(path, "wt") as f:
            f.write("".join(line + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def faulty_feed(tmp_path_factory):
    path = tmp_path_factory.mktemp("feed") / "faulty.gz"
    feed = generate(str(path), minutes=2, seed=7, gaps=3, duplicates=2, crossed=2, garbage=2)
    return path, feed


@pytest.fixture(scope="module")
def clean_feed(tmp_path_factory):
    path = tmp_path_factory.mktemp("feed") / "clean.gz"
    generate(str(path), minutes=2, seed=8)
    return path


def test_every_injected_fault_is_found(faulty_feed):
    path, feed = faulty_feed
    _, report, warned = _quiet_convert(path)
    lines = {kind: sorted(f.line for f in feed.faults if f.kind == kind) for kind in ("gap", "duplicate",
                                                                                      "crossed", "garbage")}
    assert [g.start_line for g in report.gaps] == lines["gap"]
    assert all(g.kind == "pu_mismatch" and g.end_line > g.start_line for g in report.gaps)  # resynced
    assert report.duplicate_lines == lines["duplicate"]
    # the default output keeps levels a gap left stale until the next snapshot: more crossings than injected
    assert set(lines["crossed"]) <= set(report.crossed_book_lines) and "--gap-policy resync" in warned[0]
    _, resynced, _ = _quiet_convert(path, gap_policy="resync")
    assert resynced.crossed_book_lines == lines["crossed"]
    assert [n for n, _ in report.malformed] == lines["garbage"]
    assert len(warned) == 1 and f"line {lines['gap'][0]}" in warned[0]


def _diff(ts, U, u, pu, bids, asks):
    data = {"e": "depthUpdate", "E": ts, "T": ts, "s": "XUSDT", "U": U, "u": u, "pu": pu,
            "b": [[f"{p}", f"{q}"] for p, q in bids], "a": [[f"{p}", f"{q}"] for p, q in asks]}
    return f"{ts * 1_000_000 + 500_000} " + json.dumps({"stream": "x@depth@0ms", "data": data}, separators=(",", ":"))


def test_crossed_book_finding_describes_the_output(tmp_path):
    # a snapshot (state after u=20) that arrives after a newer diff: the reference conversion applies it at its
    # arrival, reverting that diff, so the stale ask 101 crosses the book at the next diff; a synced consumer
    # (and gap_policy='resync') applies the snapshot first and never crosses
    snap = {"lastUpdateId": 20, "E": 1700000000002, "T": 1700000000002, "bids": [["100.0", "1"]],
            "asks": [["101.0", "1"]]}
    lines = [_diff(1700000000001, 11, 20, 10, [(100.0, 1)], [(101.0, 1)]),
             _diff(1700000000003, 21, 30, 20, [(100.0, 0), (101.5, 1)], [(101.0, 0), (102.0, 1)]),
             "1700000000004000000 " + json.dumps(snap, separators=(",", ":")),
             _diff(1700000000005, 31, 40, 30, [(101.5, 0), (102.5, 1)], [(102.0, 0), (103.0, 1)])]
    path = _write(tmp_path / "late_snapshot.gz", lines)
    for policy, crossed in (("none", [4]), ("resync", [])):
        data, report, warned = _quiet_convert(path, gap_policy=policy)
        assert report.crossed_book_lines == crossed, policy
        assert any("crossed" in p for p in check_events(data)) == bool(crossed), policy
        assert ("--gap-policy resync" in " ".join(warned)) == bool(crossed)


def test_clean_synthetic_feed_has_no_problem(clean_feed):
    _, report, warned = _quiet_convert(clean_feed)
    assert report.ok, report.summary()
    assert warned == []
    assert len(report.sync_lines) == 1 and report.gaps == []


def test_samples_sync_once_without_gaps(sample_data_dir):
    # spec §6: btc snapshot at line index 54 (1-based 55), 4 stale diffs; eth: 5 stale, 0 gaps
    report = check_quality(str(sample_data_dir / "btcusdt_20240808.gz"))
    assert report.sync_lines == [55] and report.stale_dropped == 4 and report.gaps == []
    assert report.ok, report.summary()


def test_strict_raises_naming_the_first_bad_line(faulty_feed):
    path, feed = faulty_feed
    first = min(f.line for f in feed.faults)
    with pytest.raises(DataQualityError, match=f":{first}: ") as exc, contextlib.redirect_stdout(io.StringIO()):
        convert(str(path), strict=True)
    assert exc.value.line == first


def test_resync_policy_drops_unsynced_diffs_and_clears_whole_book(faulty_feed, clean_feed):
    path, feed = faulty_feed
    default, report, _ = _quiet_convert(path)
    resync, _, _ = _quiet_convert(path, gap_policy="resync")
    clears = resync[(resync["ev"] & 0xFF) == DEPTH_CLEAR_EVENT]
    assert len(clears) > 0 and np.isnan(clears["px"]).all()
    # one clear per side per sync point, each written once or twice (EXCH and LOCAL copies)
    assert 2 * len(report.sync_lines) <= len(clears) <= 4 * len(report.sync_lines)
    # dropped diffs: fewer depth rows on the local (strategy) side; moved bridging diffs may add EXCH-only copies
    local_depth = [np.count_nonzero(((a["ev"] & 0xFF) == DEPTH_EVENT) & ((a["ev"] & LOCAL_EVENT) != 0))
                   for a in (resync, default)]
    assert local_depth[0] < local_depth[1]
    # the default output is untouched by the checks
    assert not np.isnan(default["px"][(default["ev"] & 0xFF) == DEPTH_CLEAR_EVENT]).any()


def test_empty_file_gives_empty_array_and_says_so(tmp_path):
    data, report, warned = _quiet_convert(_write(tmp_path / "e.gz", []))
    assert data.shape == (0,) and data.dtype == event_dtype and warned == [f"{tmp_path / 'e.gz'}: the input is empty"]
    with pytest.raises(DataQualityError, match="e.gz: the input is empty"), contextlib.redirect_stdout(io.StringIO()):
        convert(str(tmp_path / "e.gz"), strict=True)


def test_truncated_gzip_keeps_what_was_read(tmp_path):
    body = "".join("1700000000%09d %s\n" % (i, TRADE % i) for i in range(2000)).encode()
    whole = gzip.compress(body)
    data, report, warned = _quiet_convert(_write(tmp_path / "t.gz", None, whole[: len(whole) // 2]))
    assert report.truncated and 0 < len(data) < 2000 and "truncated" in warned[0]
    with pytest.raises(DataQualityError, match="truncated"), contextlib.redirect_stdout(io.StringIO()):
        convert(str(tmp_path / "t.gz"), strict=True)


def test_microsecond_timestamps_are_detected_and_scaled(tmp_path):
    ns = _write(tmp_path / "ns.gz", ["1700000000123456000 " + TRADE % 1])
    us = _write(tmp_path / "us.gz", ["1700000000123456 " + TRADE % 1])
    a, _, _ = _quiet_convert(ns)
    b, report, warned = _quiet_convert(us)
    assert report.ts_unit == "us" and warned == []
    assert a.tobytes() == b.tobytes()
    c, _, _ = _quiet_convert(us, ts_unit="us")
    assert c.tobytes() == a.tobytes()


def test_mixed_timestamp_units_are_never_mixed_silently(tmp_path):
    path = _write(tmp_path / "m.gz", ["1700000000123456000 " + TRADE % 1, "1700000000123457 " + TRADE % 2])
    data, report, warned = _quiet_convert(path)
    assert len(data) == 1 and report.malformed[0][0] == 2 and "mixed units" in warned[0]


@pytest.mark.parametrize("bad, reason", [
    ("", "blank line"),
    ("not a timestamp", "does not start"),
    ("1700000000000000001 {not json", "invalid JSON"),
    ('1700000000000000001 {"stream":"x@trade","data":{"e":"trade","T":1,"s":"XUSDT","p":"1","q":"1","m":true}}',
     "missing field 'X'"),
    ('1700000000000000001 {"stream":"x@trade","data":{"E":1}}', "without an 'e'"),
    ('1700000000000000001 {"hello":1}', "neither"),
    ('1700000000000000001 [1,2]', "not an object"),
    ('1700000000000000001 {"stream":"x@trade","data":{"e":"trade","T":1,"s":"XUSDT","t":5,"p":"abc","q":"1",'
     '"X":"MARKET","m":true}}', "bad field value"),
])
def test_malformed_lines_are_skipped_counted_and_named(tmp_path, bad, reason):
    path = _write(tmp_path / "bad.gz", ["1700000000000000000 " + TRADE % 1, bad, "1700000000000000002 " + TRADE % 2])
    data, report, warned = _quiet_convert(path)
    assert len(data) == 2
    assert report.malformed == [(2, report.malformed[0][1])] and reason in report.malformed[0][1]
    assert "line 2" in warned[0]
    with pytest.raises(DataQualityError, match=":2: "), contextlib.redirect_stdout(io.StringIO()):
        convert(str(path), strict=True)


def test_symbol_mix_is_reported(tmp_path):
    other = TRADE.replace("XUSDT", "YUSDT")
    path = _write(tmp_path / "s.gz", ["1700000000000000000 " + TRADE % 1, "1700000000000000001 " + other % 2])
    data, report, warned = _quiet_convert(path)
    assert len(data) == 2 and report.symbol_mix_lines == [2] and report.symbols == ["XUSDT", "YUSDT"]


def test_plain_stream_lines_and_envelopes_both_work(tmp_path):
    plain = TRADE[TRADE.index('"data":') + 7:-1]
    a, _, _ = _quiet_convert(_write(tmp_path / "p.gz", ["1700000000000000000 " + plain % 1]), combined_stream=False)
    b, _, _ = _quiet_convert(_write(tmp_path / "c.gz", ["1700000000000000000 " + TRADE % 1]))
    assert len(a) == 1 and a.tobytes() == b.tobytes()


def test_corrupt_gzip_is_a_data_error(tmp_path):
    whole = gzip.compress(b"1700000000000000000 " + (TRADE % 1).encode() + b"\n" * 1000)
    broken = whole[:20] + bytes(b ^ 0xFF for b in whole[20:40]) + whole[40:]
    with pytest.raises((DataError, DataQualityError)), contextlib.redirect_stdout(io.StringIO()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            convert(str(_write(tmp_path / "x.gz", None, broken)), strict=True)


def test_buffer_size_never_overflows(tmp_path):
    path = _write(tmp_path / "b.gz", ["1700000000%09d %s" % (i, TRADE % i) for i in range(500)])
    data, _, _ = _quiet_convert(path, buffer_size=10)
    assert len(data) == 500
