"""The collector against the local emulator on loopback: what it records converts, rebuilds the emulator's book,
survives faults with every gap marked and resynced, rotates at UTC midnight, and keeps its files readable after
kill -9 or a full disk."""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from hftbacktest.data.collect import DAY_NS, Collector, valid_prefix
from hftbacktest.data.utils import binancefutures
from hftbacktest.emulator import Emulator, EmulatorConfig
from hftbacktest.errors import ConfigError, ConnectorError
from hftbacktest.types import (
    BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, LOCAL_EVENT, SELL_EVENT, TRADE_EVENT,
)

pytestmark = pytest.mark.timeout(120)


class Running:
    """A Collector on its own loop in a background thread."""

    def __init__(self, **kwargs):
        self.c = Collector(**kwargs)
        self.result = self.exc = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.result = asyncio.run(self.c.run())
        except BaseException as exc:  # handed to the test
            self.exc = exc

    def wait_for(self, pred, timeout=30.0, what="condition"):
        deadline = time.monotonic() + timeout
        while not pred():
            if not self.thread.is_alive():
                raise AssertionError(f"collector stopped early: {self.exc!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.c.stats()}")
            time.sleep(0.02)

    def stop(self):
        self.c.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.exc is not None:
            raise self.exc
        return self.result


def _opts(emu, out, **kw):
    base = dict(symbols=["btcusdt"], out_dir=out, stream_url=emu.ws_url, api_url=emu.rest_url, flush_interval_s=0.2,
                status="off", reconnect_delay_s=(0.05, 0.5), fsync=False)
    base.update(kw)
    return base


def _lines(path):
    out = []
    for raw in gzip.decompress(Path(path).read_bytes()).splitlines():
        ts, _, body = raw.partition(b" ")
        out.append((int(ts), orjson.loads(body)))
    return out


def _sidecar(path):
    return json.loads(Path(str(path) + ".json").read_text())


def _by_kind(lines):
    depth = [d["data"] for _, d in lines if "data" in d and d["data"]["e"] == "depthUpdate"]
    trades = [d["data"] for _, d in lines if "data" in d and d["data"]["e"] == "trade"]
    snaps = [(ts, d) for ts, d in lines if "lastUpdateId" in d]
    return depth, trades, snaps


def _replay_done(emu):
    return all(t.done() for t in emu._tasks[:len(emu.streams)])  # the per-symbol replay tasks (loop=False)


def _convert(path):
    with contextlib.redirect_stdout(io.StringIO()):
        return binancefutures.convert(str(path))


def _rebuild(rows, tick, lot):
    """Local-side book from converted rows, with the backtester's clear/snapshot semantics."""
    book = {BUY_EVENT: {}, SELL_EVENT: {}}
    for r in rows[(rows["ev"] & LOCAL_EVENT) != 0]:
        kind, side = int(r["ev"]) & 0xFF, BUY_EVENT if r["ev"] & BUY_EVENT else SELL_EVENT
        levels = book[side]
        t = round(r["px"] / tick)
        if kind == DEPTH_CLEAR_EVENT and levels:
            if side == BUY_EVENT:
                for k in [k for k in levels if k >= t]:
                    del levels[k]
            else:
                for k in [k for k in levels if k <= t]:
                    del levels[k]
        elif kind in (DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT):
            q = round(r["qty"] / lot)
            if q:
                levels[t] = q
            else:
                levels.pop(t, None)
    return book


def test_records_emulator_market_sharded_and_rebuilds_its_book(tmp_path):
    cfg = EmulatorConfig(speed=8.0, loop=False)
    with Emulator.start(feeds=["synthetic:BTCUSDT:0.4", "synthetic:ETHUSDT:0.4"], config=cfg) as emu:
        # 2 symbols x 3 streams with at most 3 streams per connection: one connection per symbol
        run = Running(**_opts(emu, tmp_path, symbols=["btcusdt", "ethusdt"], max_streams_per_connection=3))
        run.wait_for(lambda: emu.state()["ws_connections"] == 2, what="two sharded connections")
        run.wait_for(lambda: _replay_done(emu), what="end of the finite feed")
        published = emu.state()["messages_published"]
        run.wait_for(lambda: sum(s["messages"] for s in run.c.stats()["symbols"].values()) == published,
                     what="every published message recorded")
        stats = run.stop()
        # a 1000-level snapshot does not show the deep book, so compare the top 200 levels of each side
        books = {s: emu.book(s, depth=200) for s in ("BTCUSDT", "ETHUSDT")}
        specs = {s: emu.streams[s].market.spec for s in ("BTCUSDT", "ETHUSDT")}
    assert stats["reconnects"] == 0 and stats["duplicates_dropped"] == 0
    for sym in ("BTCUSDT", "ETHUSDT"):
        _check_recording(tmp_path, sym, books[sym], specs[sym])


def test_records_a_replayed_real_feed(tmp_path, sample_data_dir):
    # the first 15 000 lines of the real BTCUSDT sample (about a minute of market), replayed at 25x
    feed = tmp_path / "feed" / "btcusdt_20240808.gz"
    feed.parent.mkdir()
    with gzip.open(sample_data_dir / "btcusdt_20240808.gz", "rb") as src, gzip.open(feed, "wb", 1) as dst:
        for _, line in zip(range(15_000), src):
            dst.write(line)
    out = tmp_path / "out"
    with Emulator.start(feeds=[str(feed)], config=EmulatorConfig(speed=25.0, loop=False)) as emu:
        run = Running(**_opts(emu, out))
        run.wait_for(lambda: _replay_done(emu), what="end of the replayed feed")
        published = emu.state()["messages_published"]
        run.wait_for(lambda: run.c.stats()["symbols"]["btcusdt"]["messages"] == published,
                     what="every published message recorded")
        run.stop()
        book, spec = emu.book("BTCUSDT", depth=200), emu.streams["BTCUSDT"].market.spec
    _check_recording(out, "BTCUSDT", book, spec)


def _check_recording(folder, sym, book, spec):
    """One symbol's recording: unbroken, monotonic, complete sidecar; converts to the same trades and depth
    levels as were sent; the book rebuilt from the converted rows equals the emulator's (top 200 levels)."""
    (path,) = folder.glob(f"{sym.lower()}_*.gz")
    lines = _lines(path)
    depth, trades, snaps = _by_kind(lines)
    assert len(snaps) == 1 and depth and trades
    # the emulator numbers its own updates consecutively: any loss or double shows here
    assert all(b["pu"] == a["u"] and b["U"] == a["u"] + 1 for a, b in zip(depth, depth[1:]))
    assert [t["t"] for t in trades] == list(range(trades[0]["t"], trades[0]["t"] + len(trades)))
    assert [ts for ts, _ in lines] == sorted(ts for ts, _ in lines)
    meta = _sidecar(path)
    assert meta["complete"] and meta["messages"] == len(lines) and meta["gaps"] == []
    assert meta["streams"] == [f"{sym.lower()}@{s}" for s in ("depth@0ms", "trade", "bookTicker")]
    assert meta["clock_offsets"] and abs(meta["clock_offsets"][0]["offset_ms"]) < 1000

    rows = _convert(path)
    local = rows[(rows["ev"] & LOCAL_EVENT) != 0]
    conv_trades = local[(local["ev"] & 0xFF) == TRADE_EVENT]
    assert [(float(t["p"]), float(t["q"]), t["T"] * 1_000_000, SELL_EVENT if t["m"] else BUY_EVENT)
            for t in trades] == [(r["px"], r["qty"], r["exch_ts"], int(r["ev"]) & (BUY_EVENT | SELL_EVENT))
                                 for r in conv_trades]
    conv_depth = local[(local["ev"] & 0xFF) == DEPTH_EVENT]
    sent = [(float(p), float(q), d["T"] * 1_000_000) for d in depth for side in ("b", "a") for p, q in d[side]]
    assert sorted(sent) == sorted((r["px"], r["qty"], r["exch_ts"]) for r in conv_depth)
    rebuilt = _rebuild(rows, spec.tick_size, spec.lot_size)
    assert sorted(rebuilt[BUY_EVENT].items(), reverse=True)[:200] == [tuple(x) for x in book["bids"]]
    assert sorted(rebuilt[SELL_EVENT].items())[:200] == [tuple(x) for x in book["asks"]]


def test_faults_are_marked_and_every_gap_is_followed_by_a_snapshot(tmp_path):
    cfg = EmulatorConfig(speed=3.0)
    with Emulator.start(feeds=["synthetic:BTCUSDT"], config=cfg) as emu:
        emu.inject("rest_5xx", path="/fapi/v1/depth")
        emu.inject("rest_429", path="/fapi/v1/depth", retry_after=1)
        run = Running(**_opts(emu, tmp_path))
        st = run.c.state["btcusdt"]
        run.wait_for(lambda: st.state == "live", what="first sync after 429 and 503")
        emu.inject("depth_gap")
        run.wait_for(lambda: st.gaps == 1 and st.state == "live", what="resync after a depth gap")
        emu.inject("ws_drop", channel="market", after=5, refuse_s=0.3)  # long enough to miss updates
        run.wait_for(lambda: run.c.reconnects == 1 and st.state == "live" and st.gaps == 2,
                     what="reconnect and resync after a WS drop")
        stats = run.stop()
    assert stats["symbols"]["btcusdt"]["snapshots"] == 3
    (path,) = tmp_path.glob("btcusdt_*.gz")
    meta = _sidecar(path)
    errors = " ".join(e["error"] for e in meta["errors"])
    assert "HTTP 429" in errors and "HTTP 503" in errors
    depth_gaps = [g for g in meta["gaps"] if g["kind"] == "depth"]
    assert len(depth_gaps) == 2 and all(g["end_ns"] is not None for g in depth_gaps)
    assert len(meta["reconnects"]) == 1
    ws_gaps = [g for g in meta["gaps"] if g["kind"] == "ws_reconnect"]
    assert {g["stream"] for g in ws_gaps} >= {"btcusdt@depth@0ms"}

    lines = _lines(path)
    depth, trades, snaps = _by_kind(lines)
    assert len(snaps) == 3
    # the converter finds exactly the gaps the sidecar marked, each one resynced by a later snapshot line
    report = binancefutures.check_quality(str(path))
    assert [g.start_local_ts for g in report.gaps] == [g["start_ns"] for g in depth_gaps]
    assert all(g.end_line is not None for g in report.gaps)
    assert not report.duplicate_lines
    snap_ts = [ts for ts, _ in snaps]
    assert all(any(g["start_ns"] <= t <= g["end_ns"] for t in snap_ts) for g in depth_gaps)
    # outside the marked gaps the depth chain and the trade ids are unbroken
    breaks = [(a, b) for a, b in zip(depth, depth[1:]) if b["pu"] != a["u"]]
    assert len(breaks) == 2
    trade_breaks = [b["t"] - a["t"] - 1 for a, b in zip(trades, trades[1:]) if b["t"] != a["t"] + 1]
    assert all(n > 0 for n in trade_breaks)
    assert sum(trade_breaks) == sum(g.get("missing_trades", 0) for g in ws_gaps)
    # `hftbacktest validate` shows the sidecar next to the gaps it finds in the data
    res = subprocess.run([sys.executable, "-m", "hftbacktest.cli", "validate", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert f"sidecar {path.name}.json: recorded by hftbacktest-py " in res.stdout, res.stdout
    assert f"{meta['messages']:,} messages, complete" in res.stdout
    assert f"2 depth gaps, {len(ws_gaps)} stream gaps at reconnects, 1 reconnects, 0 rollovers, 3 snapshots" \
        in res.stdout
    assert "clock offset to the exchange" in res.stdout


def test_half_open_connection_is_detected_and_replaced(tmp_path):
    with Emulator.start(feeds=["synthetic:BTCUSDT"], config=EmulatorConfig(speed=3.0)) as emu:
        run = Running(**_opts(emu, tmp_path, heartbeat_s=0.4))
        st = run.c.state["btcusdt"]
        run.wait_for(lambda: st.state == "live", what="first sync")
        emu.inject("ws_half_open", channel="market")  # TCP stays up, nothing arrives, pings go unanswered
        run.wait_for(lambda: run.c.reconnects == 1 and st.state == "live" and st.gaps == 1,
                     what="reconnect and resync after a silent connection")
        run.stop()
    (path,) = tmp_path.glob("btcusdt_*.gz")
    assert binancefutures.check_quality(str(path)).gaps[0].end_line is not None


def test_snapshot_older_than_the_stream_is_fetched_again(tmp_path):
    with Emulator.start(feeds=["synthetic:BTCUSDT"], config=EmulatorConfig(speed=3.0)) as emu:
        emu.inject("stale_snapshot", lag=1000)
        run = Running(**_opts(emu, tmp_path))
        st = run.c.state["btcusdt"]
        run.wait_for(lambda: st.state == "live", what="sync from a second snapshot")
        run.stop()
    assert st.snapshots == 2 and st.gaps == 0
    (path,) = tmp_path.glob("btcusdt_*.gz")
    meta = _sidecar(path)
    assert "older than the stream" in meta["errors"][0]["error"]
    assert meta["snapshots"][1]["lastUpdateId"] - meta["snapshots"][0]["lastUpdateId"] >= 1000
    assert binancefutures.check_quality(str(path)).sync_lines  # the converter syncs on the second one


def test_rollover_replacement_connection_loses_and_doubles_nothing(tmp_path):
    # the emulator closes every connection after 1.5 s (Binance: 24 h); the collector replaces it after 0.6 s
    cfg = EmulatorConfig(speed=3.0, max_connection_s=1.5)
    with Emulator.start(feeds=["synthetic:BTCUSDT"], config=cfg) as emu:
        run = Running(**_opts(emu, tmp_path, rollover_s=0.6, overlap_timeout_s=5.0))
        run.wait_for(lambda: run.c.stats()["rollovers"] >= 3, what="three rollovers")
        stats = run.stop()
    assert stats["reconnects"] == 0
    (path,) = tmp_path.glob("btcusdt_*.gz")
    depth, trades, snaps = _by_kind(_lines(path))
    assert len(snaps) == 1
    assert all(b["pu"] == a["u"] for a, b in zip(depth, depth[1:]))
    assert [t["t"] for t in trades] == list(range(trades[0]["t"], trades[0]["t"] + len(trades)))
    meta = _sidecar(path)
    assert len(meta["rollovers"]) == stats["rollovers"] and meta["gaps"] == []
    assert {r["switch"] for r in meta["rollovers"]} == {"overlap"}  # stitched, not cut over on a timer
    assert binancefutures.check_quality(str(path)).ok


def test_rotation_at_utc_midnight_splits_without_loss(tmp_path):
    now = time.time_ns()
    offset = ((now // DAY_NS) + 1) * DAY_NS - now - 1_000_000_000  # our clock reaches midnight in 1 s
    midnight = ((now + offset) // DAY_NS + 1) * DAY_NS
    with Emulator.start(feeds=["synthetic:BTCUSDT"], config=EmulatorConfig(speed=3.0)) as emu:
        run = Running(**_opts(emu, tmp_path, clock=lambda: time.time_ns() + offset))
        st = run.c.state["btcusdt"]
        run.wait_for(lambda: st.snapshots == 2 and st.state == "live", what="snapshot of the new day")
        seen = st.messages
        run.wait_for(lambda: st.messages > seen + 60, what="diffs after that snapshot")
        run.stop()
    day1, day2 = sorted(tmp_path.glob("btcusdt_*.gz"))
    assert day2.name == time.strftime("btcusdt_%Y%m%d.gz", time.gmtime(midnight // 10**9))
    l1, l2 = _lines(day1), _lines(day2)
    assert all(ts < midnight for ts, _ in l1) and all(ts >= midnight for ts, _ in l2)
    d1, t1, _ = _by_kind(l1)
    d2, t2, s2 = _by_kind(l2)
    depth, trades = d1 + d2, t1 + t2
    assert all(b["pu"] == a["u"] for a, b in zip(depth, depth[1:]))
    assert [t["t"] for t in trades] == list(range(trades[0]["t"], trades[0]["t"] + len(trades)))
    assert len(s2) == 1  # each day's file can be rebuilt on its own
    m1, m2 = _sidecar(day1), _sidecar(day2)
    assert m1["complete"] and m2["complete"] and m2["initial_last_u"] == d1[-1]["u"]
    assert binancefutures.check_quality(str(day2)).gaps == []


def _cmd(emu, out, *extra, symbol="btcusdt"):
    return [sys.executable, "-m", "hftbacktest.cli", "collect", "binancefutures", symbol, "-o", str(out),
            "--stream-url", emu.ws_url, "--api-url", emu.rest_url, "--quiet", *extra]


def _cli(emu, out, *extra, preexec=None):
    return subprocess.Popen(_cmd(emu, out, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def _wait_file(proc, path, pred, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not (path.exists() and pred(path)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.02)


def test_kill9_leaves_a_readable_file_missing_at_most_the_last_flush(tmp_path):
    path = tmp_path / time.strftime("btcusdt_%Y%m%d.gz", time.gmtime())
    with Emulator.start(feeds=["synthetic:BTCUSDT"], config=EmulatorConfig(speed=3.0)) as emu:
        proc = _cli(emu, tmp_path, "--flush-interval", "0.2")
        _wait_file(proc, path, lambda p: len(_lines(p)) > 500)
        sizes = set()
        _wait_file(proc, path, lambda p: sizes.add(p.stat().st_size) or len(sizes) >= 4)  # several more flushes
        killed_ns = time.time_ns()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        lines = _lines(path)  # every member is complete: plain gzip reads the whole file
        assert killed_ns - lines[-1][0] < 1_000_000_000
        rows = _convert(path)
        assert len(rows) > len(lines)
        assert _sidecar(path)["complete"] is False
        # a torn member at the end (power cut mid-write) is cut away when recording resumes into the same file
        good = path.stat().st_size
        with open(path, "ab") as f:
            f.write(gzip.compress(b"1 torn")[:12])
        proc = _cli(emu, tmp_path, "--flush-interval", "0.2")
        _wait_file(proc, path, lambda p: valid_prefix(p)[0] > good + 100)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    after = _lines(path)
    assert after[:len(lines)] == lines and len(after) > len(lines)
    meta = _sidecar(path)
    assert meta["complete"] and meta["sessions"][-1]["truncated_torn_tail_bytes"] == 12
    assert len(meta["sessions"]) == 2


def test_full_disk_stops_with_one_line_and_keeps_the_file_readable(tmp_path):
    limit = 120_000

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    path = tmp_path / time.strftime("btcusdt_%Y%m%d.gz", time.gmtime())
    with Emulator.start(feeds=["synthetic:BTCUSDT"], config=EmulatorConfig(speed=5.0)) as emu:
        proc = _cli(emu, tmp_path, "--flush-interval", "0.2", preexec=small_disk)
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and str(path) in lines[0] and "File too large" in lines[0], err
    assert "Traceback" not in err
    assert path.stat().st_size <= limit and valid_prefix(path)[0] == path.stat().st_size
    assert len(_convert(path)) > 0
    meta = _sidecar(path)
    assert meta["complete"] is False and "File too large" in meta["errors"][-1]["error"]


def test_bad_input_names_the_culprit_and_writes_nothing(tmp_path):
    with Emulator.start(feeds=["synthetic:BTCUSDT"], config=EmulatorConfig(speed=1.0)) as emu:
        res = subprocess.run(_cmd(emu, tmp_path / "a", symbol="nosuchusdt"), capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 1 and res.stderr.strip() == (
            f"error: unknown symbol NOSUCHUSDT: not listed by {emu.rest_url}/fapi/v1/exchangeInfo")
        assert not list((tmp_path / "a").iterdir())
        res = subprocess.run(_cmd(emu, tmp_path / "a", "--streams", "trade,depth@7ms"),
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 1 and res.stderr.startswith("error: unknown stream 'depth@7ms'")
        blocker = tmp_path / "file"
        blocker.write_text("")
        res = subprocess.run(_cmd(emu, blocker / "sub"), capture_output=True, text=True, timeout=60)
        assert res.returncode == 1 and res.stderr.strip() == (
            f"error: cannot write to output folder {blocker / 'sub'}: Not a directory")

        # an IP ban on the snapshot stops the collector (no hammering), with the files closed as incomplete
        emu.inject("rest_418", path="/fapi/v1/depth", retry_after=120)
        run = Running(**_opts(emu, tmp_path / "b"))
        run.thread.join(30)
        assert isinstance(run.exc, ConnectorError) and "418" in str(run.exc)
    with pytest.raises(ConfigError, match="one diff-depth stream"):
        Collector(["btcusdt"], tmp_path, streams="depth@0ms,depth@100ms")
    with pytest.raises(ConfigError, match="invalid symbol"):
        Collector(["btc/usdt"], tmp_path)


def test_snapshots_stay_within_the_weight_budget(tmp_path):
    # 3 symbols, a 1000-level snapshot weighs 20 and the budget is 40 a minute: the third one has to wait
    feeds = ["synthetic:BTCUSDT", "synthetic:ETHUSDT", "synthetic:SOLUSDT"]
    with Emulator.start(feeds=feeds, config=EmulatorConfig(speed=1.0)) as emu:
        run = Running(**_opts(emu, tmp_path, symbols=["btcusdt", "ethusdt", "solusdt"], weight_budget=40))
        done = lambda: sorted(s["snapshots"] for s in run.c.stats()["symbols"].values())  # noqa: E731
        run.wait_for(lambda: done() == [0, 1, 1], what="two snapshots")
        time.sleep(0.5)  # the budget frees up only a minute after the first request
        assert done() == [0, 1, 1]
        stats = run.stop()
    assert sorted(s["depth"] for s in stats["symbols"].values()) == ["live", "live", "need_snapshot"]


def test_status_lines_report_rates_gaps_reconnects_and_bytes(tmp_path, caplog):
    caplog.set_level("INFO", logger="hftbacktest.collect")
    pattern = re.compile(r"btcusdt ([\d,]+)/s.* \| reconnects (\d+) \| rollovers 0 \| ([\d.]+) MB written")
    with Emulator.start(feeds=["synthetic:BTCUSDT"], config=EmulatorConfig(speed=3.0)) as emu:
        run = Running(**_opts(emu, tmp_path, status="log", status_interval_s=0.2))
        lines = lambda: [m for r in caplog.records if (m := pattern.search(r.getMessage()))]  # noqa: E731
        run.wait_for(lambda: any(int(m[1].replace(",", "")) > 0 and float(m[3]) > 0 for m in lines()),
                     what="a status line with a rate and bytes written")
        emu.inject("ws_drop", after=0)
        run.wait_for(lambda: any(m[2] == "1" for m in lines()), what="a status line counting the reconnect")
        run.stop()


def test_rich_status_on_a_terminal(tmp_path):
    # TTY_COMPATIBLE=1 makes rich treat the pipe as a terminal, so the live line is drawn as on a console
    ansi = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
    line = re.compile(r"btcusdt [1-9][\d,]*/s \| reconnects 0 \| rollovers 0 \| [\d.]+ MB written")
    chunks: list[str] = []
    with Emulator.start(feeds=["synthetic:BTCUSDT"], config=EmulatorConfig(speed=3.0)) as emu:
        cmd = [a for a in _cmd(emu, tmp_path, "--status", "rich") if a != "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "TTY_COMPATIBLE": "1"})
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not line.search(ansi.sub("", "".join(chunks))):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(chunks)[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        reader.join(10)
    err = ansi.sub("", "".join(chunks))
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "INFO stopped:" in err
