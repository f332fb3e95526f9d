"""Byte-identity of `binancefutures.convert` with hftbacktest 2.4.4.

Golden digests are sha256 of `convert(...).tobytes()` produced by the reference hftbacktest 2.4.4 installed in
.venv-ref (`.venv-ref/bin/python -c "from hftbacktest.data.utils import binancefutures; import hashlib; ..."`),
run on the same input files on 2026-11-25. benchmarks/parity_convert.py re-derives them side by side.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import warnings

import numpy as np
import pytest

from hftbacktest.data.quality import DataQualityWarning
from hftbacktest.data.utils import binancefutures
from hftbacktest.types import event_dtype

SAMPLE_DIGESTS = {  # (file, opt) -> (rows, sha256 of the reference's array bytes)
    ("btcusdt", ""): (491_973, "239b41a6168b4f6833bbf552d215c672cfdd046a0847bfc5f288171e80995598"),
    ("btcusdt", "m"): (491_973, "239b41a6168b4f6833bbf552d215c672cfdd046a0847bfc5f288171e80995598"),
    ("btcusdt", "t"): (661_379, "0c9fe51ae8162d5442b82f766bb49a6e67b29d3ac0434150f0f5d5260a56305b"),
    ("btcusdt", "mt"): (661_379, "0c9fe51ae8162d5442b82f766bb49a6e67b29d3ac0434150f0f5d5260a56305b"),
    ("ethusdt", ""): (452_115, "1a4360ccedf652dcf4e6c13e49cd3d9ea86d5c70d6734853ba70e6d58e467e5d"),
    ("ethusdt", "m"): (452_115, "1a4360ccedf652dcf4e6c13e49cd3d9ea86d5c70d6734853ba70e6d58e467e5d"),
    ("ethusdt", "t"): (590_215, "7f690b2e844e09f94fb74861fb08fcea2ee6353cd0226e01b70d11df08e7eccc"),
    ("ethusdt", "mt"): (590_215, "7f690b2e844e09f94fb74861fb08fcea2ee6353cd0226e01b70d11df08e7eccc"),
}

# Hand-written raw lines covering the tricky cases of the spec's checklist: empty depth sides, zero qty,
# m true/false, non-MARKET trade, markPrice (T = next funding time), bookTicker, snapshot with an empty ask
# side, REST error line, unknown events, a later line with an earlier T (row written twice), equal
# (exch, local) keys, exponent/long-digit prices.
EDGE_LINES = [
    '1700000000000000000 {"stream":"x@depth@0ms","data":{"e":"depthUpdate","E":1700000000005,"T":1700000000004,"s":"XUSDT","U":10,"u":12,"pu":9,"b":[["100.5","1.000"],["100.4","0.000"]],"a":[]}}',
    '1700000000001000000 {"stream":"x@trade","data":{"e":"trade","E":1700000000006,"T":1700000000006,"s":"XUSDT","t":1,"p":"100.6","q":"0.5","X":"MARKET","m":true}}',
    '1700000000001000000 {"stream":"x@trade","data":{"e":"trade","E":1700000000006,"T":1700000000006,"s":"XUSDT","t":2,"p":"100.6","q":"0.25","X":"MARKET","m":false}}',
    '1700000000002000000 {"stream":"x@trade","data":{"e":"trade","E":1700000000007,"T":1700000000007,"s":"XUSDT","t":3,"p":"100.6","q":"9","X":"INSURANCE_FUND","m":false}}',
    '1700000000003000000 {"stream":"x@markPrice@1s","data":{"e":"markPriceUpdate","E":1700000000008,"s":"XUSDT","p":"100.55000000","P":"100.5","i":"100.54321000","r":"-0.00012345","T":1700006400000}}',
    '1700000000004000000 {"stream":"x@bookTicker","data":{"e":"bookTicker","u":13,"s":"XUSDT","b":"100.5","B":"1.0","a":"100.6","A":"2.5","T":1700000000009,"E":1700000000009}}',
    '1700000000005000000 {"lastUpdateId":12,"E":1700000000003,"T":1700000000002,"bids":[["100.5","1.000"],["100.3","2.000"]],"asks":[]}',
    '1700000000006000000 {"code":-1003,"msg":"Too many requests"}',
    '1700000000007000000 {"stream":"x@aggTrade","data":{"e":"aggTrade","E":1700000000010,"s":"XUSDT"}}',
    '1700000000008000000 {"stream":"x@depth@0ms","data":{"e":"depthUpdate","E":1700000000011,"T":1700000000003,"s":"XUSDT","U":13,"u":14,"pu":12,"b":[],"a":[["100.7","1e-05"],["100.80000000000001","0.123456789012345678"]]}}',
    '1700000000009000000 {"stream":"x@depth@0ms","data":{"e":"depthUpdate","E":1700000000012,"T":1700000000012,"s":"XUSDT","U":15,"u":16,"pu":14,"b":[],"a":[]}}',
    '1700000000009500000 {"stream":"x@trade","data":{"e":"trade","E":1700000000013,"T":1700000000013,"s":"XUSDT","t":4,"p":"100.6","q":"0.1","X":"MARKET","m":false}}',
]
EDGE_DIGESTS = {  # opt -> (rows, sha256) from the reference on EDGE_LINES written with gzip.open("wt")
    "": (15, "f5800f64c41f0f333f93c28962c28df6287f642066bebcaed72e370774466df2"),
    "mt": (23, "9ae54cda74f8ac7482aa1ad6bbb54730ca1d112a487ce2e0fc1437bda6ffbfb4"),
}
# The reference's stdout for EDGE_LINES with opt "" (REST error body, then the progress lines).
EDGE_STDOUT = ("-1003 Too many requests\nCorrecting the latency\n"
               "local_timestamp is ahead of exch_timestamp by 5000000\nCorrecting the event order\n")
# btc sample, opt "": base_latency -> sha256 from the reference (an int shifts exactly, a float rounds through
# float64, so 0.0 and 1.5 give the same bytes and 1000 != 1000.0).
BASE_LATENCY_DIGESTS = [  # a list: 1000 and 1000.0 would be one dict key
    (1000, "5b4fa6554c4a93067af7e86265014b97dd1ed1628953c4268bcaf6598746a948"),
    (1000.0, "9a5afe38d65a0e4e9513639722db6a41e9f1502c234a36a2b9b7abd3829bc1af"),
    (1.5, "1fcf5cd5c10fca5117924e0391d7df66ef1e8f9126ce540d2e28af18c1698ef7"),
]


def _convert(path, **kw):
    kw.setdefault("mark_price_time", "T")  # the reference's timing of markPriceUpdate rows (opt 'm')
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)  # EDGE_LINES has a REST error on purpose
        return binancefutures.convert(str(path), **kw)


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()


@pytest.mark.parametrize("name", ["btcusdt", "ethusdt"])
def test_samples_byte_identical(sample_data_dir, name):
    for opt in ("", "m", "t", "mt"):
        a = _convert(sample_data_dir / f"{name}_20240808.gz", opt=opt)
        rows, digest = SAMPLE_DIGESTS[(name, opt)]
        assert a.dtype == event_dtype
        assert len(a) == rows, opt
        assert _digest(a) == digest, opt


@pytest.fixture()
def edge_file(tmp_path):
    path = tmp_path / "edge.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(EDGE_LINES) + "\n")
    return path


@pytest.mark.parametrize("opt", sorted(EDGE_DIGESTS))
def test_edge_cases_byte_identical(edge_file, opt):
    rows, digest = EDGE_DIGESTS[opt]
    a = _convert(edge_file, opt=opt)
    assert len(a) == rows
    assert _digest(a) == digest


def test_edge_cases_print_like_reference(edge_file):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.warns(DataQualityWarning, match="line 8: -1003"):
        binancefutures.convert(str(edge_file))
    assert out.getvalue() == EDGE_STDOUT


def test_base_latency_int_vs_float(sample_data_dir):
    path = sample_data_dir / "btcusdt_20240808.gz"
    for base_latency, digest in BASE_LATENCY_DIGESTS:
        assert _digest(_convert(path, base_latency=base_latency)) == digest, repr(base_latency)


def test_output_file_matches_return_value(edge_file, tmp_path):
    a = _convert(edge_file, output_filename=str(tmp_path / "out"))
    stored = np.load(tmp_path / "out.npz")["data"]
    assert stored.dtype == event_dtype and stored.tobytes() == a.tobytes()


def test_unknown_keyword_is_a_type_error(edge_file):
    with pytest.raises(TypeError):
        binancefutures.convert(str(edge_file), compress=True)


# --- binancehistmktdata (CSV) -------------------------------------------------------------------------------
HIST_DEPTH = "symbol,timestamp,trans_id,first_update_id,last_update_id,side,update_type,price,qty\n" + "\n".join(
    f"BTCUSDT,{1700000000000 + (i * 7) % 50},{i},{i},{i},{'b' if i % 3 else 'a'},{'snap' if i < 5 else 'set'},"
    f"{60000 + (i % 11) * 0.1 if i % 3 else 60002 + (i % 7) * 0.1:.1f},{(i * 13) % 9 * 0.001:.3f}" for i in range(60))
HIST_TRADES = "id,price,qty,quote_qty,time,is_buyer_maker\n" + "\n".join(
    f"{i},{60001 + (i % 5) * 0.1:.1f},{0.001 * (i + 1):.3f},1,{1700000000003 + i * 3},{'true' if i % 2 else 'false'}"
    for i in range(30))
# sha256 prefixes from the reference on exactly these files (with and without header rows): convert with
# (feed_latency, base_latency) = (0, 0) and (1.7, 0); convert_snapshot with feed_latency 0 and 2.5.
HIST_CONVERT = {(0, 0): "ef7ce54c7a7faf05", (1.7, 0): "534409c3115748f6"}
HIST_SNAPSHOT = {0: "1a6f427f58f9e3f7", 2.5: "9d2597725b3dd87b"}


def test_binancehistmktdata_matches_reference(tmp_path):
    from hftbacktest.data.utils import binancehistmktdata as hist

    for name, text in (("d", HIST_DEPTH), ("t", HIST_TRADES)):
        (tmp_path / f"{name}.csv").write_text(text)
        (tmp_path / f"{name}_nohdr.csv").write_text(text.split("\n", 1)[1])
    for (feed, base), digest in HIST_CONVERT.items():
        for suffix in ("", "_nohdr"):
            with contextlib.redirect_stdout(io.StringIO()):
                a = hist.convert(str(tmp_path / f"d{suffix}.csv"), str(tmp_path / f"t{suffix}.csv"),
                                 feed_latency=feed, base_latency=base)
            assert _digest(a)[:16] == digest
            assert np.all((a["ev"][(a["ev"] & 0xFF) == 2] & (1 << 28)) != 0)  # reference: every trade is SELL
    for feed, digest in HIST_SNAPSHOT.items():
        with contextlib.redirect_stdout(io.StringIO()):
            s = hist.convert_snapshot(str(tmp_path / "d.csv"), feed_latency=feed)
        assert _digest(s)[:16] == digest
