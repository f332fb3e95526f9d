"""Differential fuzzing of the converter's line parser (numba fast path + Python fallback).

Lines from the real samples are mutated (byte flips, cuts, insertions, deletions, field swaps). For every line
that the reference semantics (spec §2.2, written here with json.loads/float/int) turn into rows, ours must give
exactly the same rows, unless a number is one no feed may hold (then ours skips the line); every other line
must be skipped and counted, never crash. Deterministic: hypothesis
runs derandomized with a bounded number of examples.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hftbacktest.data.quality import bad_values
from hftbacktest.data.utils.binancefutures import _Converter
from hftbacktest.types import event_dtype

EV = {"depth_b": (1 << 29) | 1, "depth_a": (1 << 28) | 1, "trade_b": (1 << 29) | 2, "trade_s": (1 << 28) | 2}


SKIP = "skip"


def reference_rows(raw: bytes, opt: str):
    """Rows the reference would emit for one line, None when it would raise, SKIP when a number is one no feed
    may hold (ours skips the line, the reference would keep it)."""
    try:
        local = int(raw[0:19])
        msg = json.loads(raw[20:])
        d = msg.get("data")
        rows = []
        if d is not None:
            e = d["e"]
            if e == "trade":
                if d["X"] != "MARKET":
                    return []
                rows.append((EV["trade_s"] if d["m"] else EV["trade_b"], int(d["T"]) * 1_000_000, local,
                             float(d["p"]), float(d["q"])))
            elif e == "depthUpdate":
                x = int(d["T"]) * 1_000_000
                rows += [(EV["depth_b"], x, local, float(p), float(q)) for p, q in d["b"]]
                rows += [(EV["depth_a"], x, local, float(p), float(q)) for p, q in d["a"]]
            elif e == "markPriceUpdate" and "m" in opt:
                x = int(d["T"]) * 1_000_000
                rows += [(100, x, local, float(d["i"]), 0.0), (101, x, local, float(d["p"]), 0.0),
                         (102, x, local, float(d["r"]), 0.0)]
            elif e == "bookTicker" and "t" in opt:
                x = int(d["T"]) * 1_000_000
                rows += [(103, x, local, float(d["b"]), float(d["B"])), (104, x, local, float(d["a"]), float(d["A"]))]
        elif "code" in msg:
            return []
        else:
            x = int(msg["T"]) * 1_000_000
            for side, key in ((1 << 29, "bids"), (1 << 28, "asks")):
                if len(msg[key]) > 0:
                    rows.append((side | 3, x, local, float(msg[key][-1][0]), 0.0))
                    rows += [(side | 4, x, local, float(p), float(q)) for p, q in msg[key]]
        np.array([r[1:3] for r in rows], np.int64)  # the reference stores into int64: overflow raises
        ev, px, qty = (np.array([r[i] for r in rows], t) for i, t in ((0, np.uint64), (3, float), (4, float)))
        if rows and bad_values(ev, px, qty).any():
            return SKIP
        return rows
    except Exception:
        return None


@pytest.fixture(scope="module")
def corpus(sample_data_dir):
    lines, seen = [], {}
    with gzip.open(sample_data_dir / "btcusdt_20240808.gz", "rb") as f:
        for raw in f:
            kind = b"snapshot" if b"lastUpdateId" in raw[:60] else raw[40:80].split(b'"e":"')[-1][:6]
            if seen.get(kind, 0) < 15:
                seen[kind] = seen.get(kind, 0) + 1
                if kind == b"snapshot":  # keep it short: 3 levels a side
                    msg = json.loads(raw[20:])
                    msg["bids"], msg["asks"] = msg["bids"][:3], msg["asks"][:3]
                    raw = raw[:20] + json.dumps(msg, separators=(",", ":")).encode() + b"\n"
                lines.append(raw.rstrip(b"\n"))
            if len(seen) >= 4 and all(v >= 15 for v in seen.values()):
                break
    lines.append(b'1723161255030314667 {"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate",'
                 b'"E":1723161256000,"s":"BTCUSDT","p":"61800.12345678","P":"61801.1","i":"61799.5",'
                 b'"r":"-0.00012345","T":1723190400000}}')
    return lines


MUTATIONS = st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "delete", "dup"]),
                               st.integers(0, 10_000), st.integers(0, 255)), min_size=0, max_size=3)


def mutate(line: bytes, ops) -> bytes:
    b = bytearray(line)
    for op, pos, val in ops:
        if not b:
            break
        i = pos % len(b)
        if op == "flip":
            b[i] = val
        elif op == "cut":
            del b[i:]
        elif op == "insert":
            b.insert(i, val)
        elif op == "delete":
            del b[i]
        elif op == "dup":
            b[i:i] = b[i:i + 12]
    return bytes(b).replace(b"\n", b" ")


@settings(max_examples=120, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.integers(0, 10_000), MUTATIONS), min_size=1, max_size=6),
       opt=st.sampled_from(["", "mt"]))
def test_mutated_lines_match_reference_semantics_or_are_skipped(corpus, tmp_path, picks, opt):
    lines = [mutate(corpus[i % len(corpus)], ops) for i, ops in picks]
    path = tmp_path / "fuzz.gz"
    path.write_bytes(gzip.compress(b"".join(ln + b"\n" for ln in lines)))
    conv = _Converter(str(path), opt, True, "ns", False, "T")
    with contextlib.redirect_stdout(io.StringIO()):
        conv.run()
    rows = conv.rows.reshape(-1).view(event_dtype)
    msg_line, msg_row = conv.msgs[:, 0].tolist(), conv.msgs[:, 7].tolist()
    ends = msg_row[1:] + [len(rows)]
    by_line = {ln: (a, b) for ln, a, b in zip(msg_line, msg_row, ends)}
    malformed = {n for n, _ in conv.report.malformed}
    assert conv.report.lines == len(lines)
    for n, raw in enumerate(lines, start=1):
        expected = reference_rows(raw, opt)
        if expected is None:
            continue  # the reference raises: ours may skip it (counted) or read it leniently
        if expected is SKIP:
            assert n in malformed, raw
            continue
        assert n not in malformed, (raw, conv.report.malformed)
        a, b = by_line.get(n, (0, 0))
        got = [(int(r["ev"]), int(r["exch_ts"]), int(r["local_ts"]), float(r["px"]), float(r["qty"]))
               for r in rows[a:b]]
        assert np.array(got, dtype=object).tolist() == expected or (
            [g[:3] for g in got] == [e[:3] for e in expected]
            and all(np.float64(g[3]).tobytes() == np.float64(e[3]).tobytes()
                    and np.float64(g[4]).tobytes() == np.float64(e[4]).tobytes() for g, e in zip(got, expected))), raw
