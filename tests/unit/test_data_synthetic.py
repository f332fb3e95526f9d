"""Synthetic Binance USD-M feed: collector format, determinism, consistent sequence ids, incremental API."""
from __future__ import annotations

import gzip
import itertools

import numpy as np
import orjson

from hftbacktest.data.synthetic import FeedConfig, SyntheticFeed, generate


def _lines(minutes=0.5, seed=3, **kw):
    return list(SyntheticFeed(FeedConfig(minutes=minutes, seed=seed, **kw)).lines())


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a.gz", tmp_path / "b.gz", tmp_path / "c.gz"
    generate(str(a), minutes=0.5, seed=5)
    generate(str(b), minutes=0.5, seed=5)
    generate(str(c), minutes=0.5, seed=6)
    assert gzip.decompress(a.read_bytes()) == gzip.decompress(b.read_bytes())
    assert gzip.decompress(a.read_bytes()) != gzip.decompress(c.read_bytes())


def test_collector_line_format_and_streams():
    lines = _lines()
    kinds = set()
    last_ts = 0
    snapshot_seen = False
    for line in lines:
        ts, sep, body = line.partition(" ")
        assert sep == " " and len(ts) == 19 and ts.isdigit()
        assert int(ts) >= last_ts  # receive order
        last_ts = int(ts)
        msg = orjson.loads(body)
        if "lastUpdateId" in msg:
            snapshot_seen = True
            assert len(msg["bids"]) == 1000 and len(msg["asks"]) == 1000
            assert float(msg["bids"][0][0]) < float(msg["asks"][0][0])
            continue
        assert set(msg) == {"stream", "data"} and msg["data"]["s"] == "BTCUSDT"
        kinds.add(msg["data"]["e"])
        if msg["data"]["e"] == "trade":
            assert msg["data"]["X"] == "MARKET" and isinstance(msg["data"]["m"], bool)
    assert snapshot_seen
    assert kinds == {"depthUpdate", "trade", "bookTicker", "markPriceUpdate"}


def test_depth_ids_chain_and_first_snapshot_bridges():
    diffs, snap = [], None
    for line in _lines():
        msg = orjson.loads(line.partition(" ")[2])
        if "lastUpdateId" in msg:
            snap = snap or msg
        elif msg["data"]["e"] == "depthUpdate":
            diffs.append(msg["data"])
    assert all(b["pu"] == a["u"] for a, b in zip(diffs, diffs[1:]))
    assert all(d["U"] <= d["u"] for d in diffs)
    assert any(d["U"] <= snap["lastUpdateId"] <= d["u"] for d in diffs)


def test_incremental_messages_match_the_lines():
    feed = SyntheticFeed(FeedConfig(minutes=0.2, seed=9))
    first = list(itertools.islice(feed.messages(), 50))
    lines = _lines(minutes=0.2, seed=9)[:50]
    assert [(ts, orjson.dumps(m).decode()) for ts, m in first] == [
        (int(ln.partition(" ")[0]), ln.partition(" ")[2]) for ln in lines]


def test_other_symbol_and_tick_size():
    line = next(ln for ln in _lines(symbol="ETHUSDT", tick_size=0.01, initial_price=2600.0) if "trade" in ln)
    data = orjson.loads(line.partition(" ")[2])["data"]
    assert data["s"] == "ETHUSDT" and len(data["p"].split(".")[1]) == 2


def _flow_and_mid_changes(feed: SyntheticFeed, interval_ms: int):
    """Signed traded quantity per interval (buyer-initiated positive) and the mid change over each interval."""
    trades, tops = [], []
    for _, msg in feed.messages():
        data = msg.get("data", {})
        if data.get("e") == "trade":
            trades.append((data["T"], -float(data["q"]) if data["m"] else float(data["q"])))
        elif data.get("e") == "bookTicker":
            tops.append((data["T"], (float(data["b"]) + float(data["a"])) / 2.0))
    t_trade, signed = np.array(trades).T
    t_top, mid = np.array(tops).T
    edges = np.arange(t_top[0] + 1000, t_top[-1], interval_ms)
    flow = np.histogram(t_trade, bins=edges, weights=signed)[0]
    mid_at_edges = mid[np.searchsorted(t_top, edges, side="left") - 1]  # last top of book before each edge
    return flow, np.diff(mid_at_edges)


def test_mid_moves_with_aggressive_flow_adverse_selection():
    # The model's point: aggressive buying lifts the mid (impact, sweeps of stale quotes) and informed flow keeps
    # pushing it afterwards, so a resting order tends to be filled just before the price moves through it.
    flow, dmid = _flow_and_mid_changes(SyntheticFeed(FeedConfig(minutes=2, seed=11)), interval_ms=250)
    same = np.corrcoef(flow, dmid)[0, 1]
    following = np.corrcoef(flow[:-1], dmid[1:])[0, 1]
    assert same > 0.5, same
    assert following > 0.2, following
