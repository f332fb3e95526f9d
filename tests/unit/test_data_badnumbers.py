"""Bad numbers and repeated messages in feeds: every bad value is a counted, named skip (or a strict error
naming file:line), never a non-finite or negative price/quantity in the output; repeated trades and depth diffs
are dropped by default; a huge line or a gzip bomb stays bounded; non-finite quantities are refused at load."""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from hftbacktest.data.quality import DataQualityWarning
from hftbacktest.data.synthetic import generate
from hftbacktest.data.utils import binancefutures as bf
from hftbacktest.errors import DataError, DataQualityError


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "feed.txt"
    generate(str(path), minutes=0.3, seed=11)
    return path.read_text().splitlines()


def _first(lines, needle: str, after: int = 0) -> int:
    return next(i for i, s in enumerate(lines) if i >= after and needle in s)


def _write(path, lines):
    with gzip.open(path, "wt") as f:
        f.write("".join(s + "\n" for s in lines))
    return str(path)


def _convert(path, **kw):
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data, report = bf.convert(path, return_report=True, **kw)
    return data, report, [str(w.message) for w in caught if issubclass(w.category, DataQualityWarning)]


def _field(line: str, key: str) -> str:
    return line.split(f'"{key}":', 1)[1].split(",", 1)[0]


# (message kind, JSON field to spoil, replacement, words naming the problem)
CASES = [
    ("trade", "q", '"nan"', "quantity is nan"),
    ("trade", "p", '"inf"', "price is inf"),
    ("trade", "p", '"-61000.5"', "price -61000.5 is not positive"),
    ("trade", "p", '"0.0"', "price 0.0 is not positive"),
    ("trade", "p", '"9000000000000000"', "out of range"),  # taken by the fast fixed-layout parser
    ("trade", "q", '"1e300"', "out of range"),
    ("trade", "p", "NaN", "bare NaN is not a JSON number"),
    ("depthUpdate", "b", '[["61000.1","-0.5"]]', "quantity -0.5 is negative"),
    ("depthUpdate", "a", '[["Infinity","0.5"]]', "price is inf"),
]


@pytest.mark.parametrize("kind,key,value,words", CASES)
def test_bad_number_is_a_named_skip_and_never_reaches_the_output(lines, tmp_path, kind, key, value, words):
    i = _first(lines, f'"e":"{kind}"', after=len(lines) // 2)  # mid-file: the fast parser has read lines before it
    old = _field(lines[i], key) if key not in "ab" else lines[i].split(f'"{key}":', 1)[1].split("]]", 1)[0] + "]]"
    bad = lines[:i] + [lines[i].replace(f'"{key}":{old}', f'"{key}":{value}', 1)] + lines[i + 1:]
    assert bad[i] != lines[i]
    data, report, warned = _convert(_write(tmp_path / "bad.gz", bad))
    assert report.malformed == [(i + 1, report.malformed[0][1])] and words in report.malformed[0][1]
    assert f"line {i + 1}: " in warned[0] and words in warned[0]
    assert np.isfinite(data["px"]).all() and np.isfinite(data["qty"]).all()
    assert (data["px"] > 0).all() and (data["qty"] >= 0).all()
    if kind == "trade":  # a skipped trade line leaves exactly the rows of the file without it
        without, _, _ = _convert(_write(tmp_path / "without.gz", lines[:i] + lines[i + 1:]))
        assert data.tobytes() == without.tobytes()
    with pytest.raises(DataQualityError, match=f"bad.gz:{i + 1}: .*{words.split()[-1]}"), \
            contextlib.redirect_stdout(io.StringIO()):
        bf.convert(str(tmp_path / "bad.gz"), strict=True)


def test_several_bad_lines_in_one_parser_call(lines, tmp_path):
    trades = [i for i, s in enumerate(lines) if '"e":"trade"' in s][5:40:7]
    bad = list(lines)
    for i in trades:
        bad[i] = bad[i].replace(f'"q":{_field(bad[i], "q")}', '"q":"-1.000"', 1)
    data, report, _ = _convert(_write(tmp_path / "bad.gz", bad))
    assert [n for n, _ in report.malformed] == [i + 1 for i in trades]
    without, _, _ = _convert(_write(tmp_path / "without.gz", [s for i, s in enumerate(lines) if i not in trades]))
    assert data.tobytes() == without.tobytes()


def test_negative_funding_rate_is_kept(tmp_path):
    line = ('1700000000003000000 {"stream":"x@markPrice@1s","data":{"e":"markPriceUpdate","E":1700000000008,'
            '"s":"XUSDT","p":"100.55","P":"100.5","i":"100.54","r":"-0.00012345","T":1700000000008}}')
    data, report, _ = _convert(_write(tmp_path / "m.gz", [line]), opt="m")
    assert report.malformed == [] and data["px"][(data["ev"] & 0xFF) == 102].tolist() == [-0.00012345]


def test_repeated_trades_and_diffs_are_dropped_by_default(lines, tmp_path):
    t = _first(lines, '"e":"trade"', after=100)
    d = _first(lines, '"e":"depthUpdate"', after=t + 1)
    t2 = _first(lines, '"e":"trade"', after=d + 1)
    t3 = _first(lines, '"e":"trade"', after=t2 + 1)
    # a repeated trade, a repeated depth diff, and a replay of two older trades after a newer one
    dup = lines[: t + 1] + [lines[t]] + lines[t + 1: d + 1] + [lines[d]] + lines[d + 1: t3 + 1] + [lines[t2], lines[t]] \
        + lines[t3 + 1:]
    path = _write(tmp_path / "dup.gz", dup)
    data, report, warned = _convert(path)
    want = [t + 2, d + 3, t3 + 4, t3 + 5]
    assert report.duplicate_lines == want and "4 duplicate message(s) dropped" in warned[0]
    clean, _, _ = _convert(_write(tmp_path / "clean.gz", lines))
    assert data.tobytes() == clean.tobytes()
    kept, report_kept, warned_kept = _convert(path, duplicates="keep")  # the reference's behaviour
    assert report_kept.duplicate_lines == want and "kept" in warned_kept[0]
    assert len(kept) > len(clean)
    with pytest.raises(ValueError, match="duplicates"):
        bf.convert(path, duplicates="maybe")


def test_cli_keep_duplicates_switch(lines, tmp_path):
    t = _first(lines, '"e":"trade"', after=100)
    path = _write(tmp_path / "dup.gz", lines[: t + 1] + [lines[t]] + lines[t + 1:])
    counts = []
    for extra in ([], ["--keep-duplicates"]):
        out = str(tmp_path / f"out{len(extra)}.npz")
        run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "hftbacktest"), "convert",
                              "binancefutures", path, "-o", out, *extra], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert ("kept" if extra else "dropped") in run.stderr
        counts.append(len(np.load(out)["data"]))
    assert counts[1] > counts[0]


def test_overlong_line_is_skipped_in_bounded_memory(lines, tmp_path, monkeypatch):
    monkeypatch.setattr(bf, "MAX_LINE", 1 << 16)  # above the feed's snapshot lines (40 kB)
    monkeypatch.setattr(bf, "_OUT_CHUNK", 1024)  # the long line spans many decompressed chunks
    i = len(lines) // 3
    long = lines[:i] + [lines[i][:40] + "x" * 200_000] + lines[i:]
    data, report, warned = _convert(_write(tmp_path / "long.gz", long))
    assert report.malformed == [(i + 1, "line longer than 65,536 bytes (skipped unread)")]
    assert report.lines == len(long)
    clean, _, _ = _convert(_write(tmp_path / "clean.gz", lines))
    assert data.tobytes() == clean.tobytes()


def test_gzip_bomb_inflates_in_bounded_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(bf, "_OUT_CHUNK", 1 << 16)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(b"0" * (8 << 20)))  # ~8 kB that inflate to 8 MB
    sizes = [len(c) for c in bf._decompressed_chunks(str(path), lambda n: None, bf.QualityReport())]
    assert sum(sizes) == 8 << 20 and max(sizes) <= 2 << 16


def test_histmktdata_csv_bad_number_names_file_and_line(tmp_path):
    from hftbacktest.data.utils import binancehistmktdata as hist

    depth = tmp_path / "d.csv"
    depth.write_text("symbol,timestamp,trans_id,first_update_id,last_update_id,side,update_type,price,qty\n"
                     "BTCUSDT,1700000000000,1,1,1,b,snap,60000.0,0.5\n"
                     "BTCUSDT,1700000000001,2,2,2,a,set,60001.0,nan\n")
    trades = tmp_path / "t.csv"
    trades.write_text("id,price,qty,quote_qty,time,is_buyer_maker\n1,60000.5,abc,1,1700000000003,true\n")
    with pytest.raises(DataQualityError, match=r"d\.csv:3: quantity is nan"), contextlib.redirect_stdout(io.StringIO()):
        hist.convert(str(depth), str(trades))
    depth.write_text(depth.read_text().replace("nan", "0.25"))
    with pytest.raises(DataQualityError, match=r"t\.csv:2: bad number"), contextlib.redirect_stdout(io.StringIO()):
        hist.convert(str(depth), str(trades))


@pytest.mark.parametrize("qty", [np.inf, np.nan])
def test_backtest_refuses_non_finite_quantity_at_load(qty):
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
    from hftbacktest.types import BUY_EVENT, DEPTH_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, event_dtype

    d = np.zeros(4, event_dtype)
    d["ev"] = DEPTH_EVENT | EXCH_EVENT | LOCAL_EVENT | np.array([BUY_EVENT, SELL_EVENT] * 2, np.uint64)
    d["exch_ts"] = d["local_ts"] = [1, 2, 3, 4]
    d["px"], d["qty"] = [100.0, 101.0, 99.0, 102.0], [1.0, 1.0, qty, 1.0]
    asset = BacktestAsset().data([d]).linear_asset(1.0).constant_order_latency(0, 0).no_partial_fill_exchange() \
        .risk_adverse_queue_model().tick_size(0.1).lot_size(0.001)
    with pytest.raises(DataError, match="row 2: quantity is NaN or infinite"):
        HashMapMarketDepthBacktest([asset])
