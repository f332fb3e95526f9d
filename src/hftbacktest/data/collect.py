"""Crash-safe Binance USD-M market-data collector (`hftbacktest collect binancefutures ...`).

Writes `<out>/<symbol>_<YYYYMMDD>.gz` per symbol and UTC day in the raw format `binancefutures.convert` reads:
`<local receive ns> <combined-stream JSON as received>\n`, with REST depth snapshots (`{"lastUpdateId":..}`)
interleaved when they arrive. Each file is a sequence of complete gzip members, one per flush (default every
second), so a crash loses at most the unflushed tail and the file stays readable. A sidecar
`<file>.json` records streams, version, clock offsets, reconnects, rollovers, snapshots and gaps.

Python API::

    from hftbacktest.data.collect import Collector, run
    run(["btcusdt"], "data/")                       # blocks until Ctrl-C / SIGTERM, then closes cleanly
    c = Collector(["btcusdt"], "data/", stream_url=..., api_url=...)
    await c.run()   # elsewhere: c.stop()           # inside your own asyncio loop
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
from isal import isal_zlib

from .._atomic import atomic_write_bytes
from ..binance import depth, wire
from ..errors import ConfigError, ConnectorError, DataError, HftBacktestError

log = logging.getLogger("hftbacktest.collect")

MAINNET_STREAM_URL = "wss://fstream.binance.com/stream"
MAINNET_API_URL = "https://fapi.binance.com"
DEFAULT_STREAMS = ("depth@0ms", "trade", "bookTicker")
# Binance USD-M per-symbol stream names (the part after `<symbol>@`)
_STREAM_RE = re.compile(
    r"(depth(@(0|100|250|500)ms)?|depth(5|10|20)(@(100|250|500)ms)?|trade|aggTrade|bookTicker|"
    r"markPrice(@1s)?|forceOrder|miniTicker|ticker|"
    r"kline_(1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M))")
_DIFF_DEPTH_RE = re.compile(r"depth(@(0|100|250|500)ms)?")
_SYMBOL_RE = re.compile(r"[A-Za-z0-9_]{2,30}")
BINANCE_WEIGHT_LIMIT = 2400  # IP request weight per minute on USD-M
DAY_NS = 86_400_000_000_000
FORMAT = "hftbacktest-collect/1"


def depth_weight(limit: int) -> int:
    """Request weight of `GET /fapi/v1/depth` by `limit` (Binance USD-M)."""
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hftbacktest-py")
    except PackageNotFoundError:
        return "unknown"


def _day_str(ts_ns: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(ts_ns // 1_000_000_000))


def sidecar_summary(path) -> str | None:
    """Lines describing the collector's sidecar `<path>.json` for `hftbacktest validate`; None without one."""
    meta_path = Path(str(path) + ".json")
    if not meta_path.exists():
        return None
    try:
        meta = orjson.loads(meta_path.read_bytes())
        gaps = meta["gaps"]
        kinds = {k: sum(g.get("kind") == k for g in gaps) for k in ("depth", "ws_reconnect")}
        offsets = [c["offset_ms"] for c in meta["clock_offsets"]]
        text = (f"  sidecar {meta_path.name}: recorded by hftbacktest-py {meta['package_version']}, "
                f"{meta['messages']:,} messages, {'complete' if meta['complete'] else 'NOT closed (crash or error)'}"
                f"\n    streams {', '.join(meta['streams'])}"
                f"\n    {kinds['depth']} depth gaps, {kinds['ws_reconnect']} stream gaps at reconnects, "
                f"{len(meta['reconnects'])} reconnects, {len(meta['rollovers'])} rollovers, "
                f"{len(meta['snapshots'])} snapshots, {len(meta['errors'])} errors")
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return f"  sidecar {meta_path.name}: unreadable ({type(exc).__name__}: {exc})"
    if offsets:
        text += f"\n    clock offset to the exchange {min(offsets):+.1f} .. {max(offsets):+.1f} ms ({len(offsets)} samples)"
    return text


def valid_prefix(path) -> tuple[int, int]:
    """(bytes, lines) of the longest prefix of a gzip file made of complete members (a torn tail is excluded)."""
    good = lines = 0
    pos = 0
    dec = zlib.decompressobj(31)
    member_lines = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            while chunk:
                try:
                    out = dec.decompress(chunk)
                except zlib.error:
                    return good, lines
                member_lines += out.count(b"\n")
                used = len(chunk) - len(dec.unused_data)
                pos += used
                if dec.eof:
                    good, lines, member_lines = pos, lines + member_lines, 0
                    chunk = dec.unused_data
                    dec = zlib.decompressobj(31)
                else:
                    chunk = b""
    return good, lines


class _DayFile:
    """One `<symbol>_<day>.gz`: lines buffered in memory, written as one complete gzip member per flush."""

    def __init__(self, out_dir: Path, symbol: str, day: str, meta: dict, level: int, fsync: bool):
        self.path = out_dir / f"{symbol}_{day}.gz"
        self.meta_path = out_dir / f"{symbol}_{day}.gz.json"
        self.level, self.fsync = level, fsync
        self.buf: list[bytes] = []
        self.buf_bytes = 0
        self.last_ts = 0
        old = {}
        if self.meta_path.exists():
            try:
                old = orjson.loads(self.meta_path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                old = {}
        recovered = None
        if self.path.exists():
            size = self.path.stat().st_size
            good, _ = valid_prefix(self.path)
            if good < size:  # torn last member from a crash: cut it so appended members stay readable
                recovered = size - good
                os.truncate(self.path, good)
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise DataError(f"cannot write {self.path}: {exc.strerror}") from None
        self.size = self.start_size = os.fstat(self.fd).st_size
        self.meta = {**meta, **{k: old[k] for k in ("clock_offsets", "reconnects", "rollovers", "gaps", "snapshots",
                                                    "sessions", "errors") if k in old}}
        for key in ("clock_offsets", "reconnects", "rollovers", "gaps", "snapshots", "sessions", "errors"):
            self.meta.setdefault(key, [])
        self.meta.update(file=self.path.name, complete=False, closed_ns=None, bytes=self.size,
                         messages=int(old.get("messages", 0)))
        self.meta["sessions"].append({"started_ns": meta["started_ns"], "pid": os.getpid(),
                                      "truncated_torn_tail_bytes": recovered})
        self.write_meta()

    def add(self, ts: int, payload: bytes) -> None:
        if ts < self.last_ts:  # keep local time monotonic within a file (stitched connections, clock steps)
            ts = self.last_ts
        self.last_ts = ts
        line = b"%d %b\n" % (ts, payload)
        self.buf.append(line)
        self.buf_bytes += len(line)
        self.meta["messages"] += 1

    def flush(self) -> None:
        if not self.buf:
            return
        # ISA-L: ~5x zlib's speed at a similar ratio, so compression stays a small part of the cost per message
        comp = isal_zlib.compressobj(self.level, isal_zlib.DEFLATED, 31)
        member = comp.compress(b"".join(self.buf)) + comp.flush()
        self.buf.clear()
        self.buf_bytes = 0
        view = memoryview(member)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(self.fd)
        except OSError as exc:
            # never leave a partial member behind: cut back to the last complete one
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            raise DataError(f"cannot write {self.path}: {exc.strerror or exc} "
                            f"(file kept readable up to its last complete flush)") from None
        self.size += len(member)
        self.meta["bytes"] = self.size

    def write_meta(self) -> None:
        try:
            atomic_write_bytes(self.meta_path, orjson.dumps(self.meta, option=orjson.OPT_INDENT_2))
        except OSError as exc:
            raise DataError(f"cannot write {self.meta_path}: {exc.strerror or exc}") from None

    def close(self, ts: int, complete: bool = True, error: str | None = None) -> None:
        try:
            if error is None:
                self.flush()
        finally:
            os.close(self.fd)
            self.meta.update(complete=complete and error is None, closed_ns=ts)
            if error:
                self.meta["errors"].append({"time_ns": ts, "error": error})
            self.write_meta()


# depth sync states
NEED, BRIDGE, LIVE = "need_snapshot", "bridge", "live"


@dataclass
class _Symbol:
    """Per-symbol recording and U/u/pu bookkeeping (the collector records everything; this only decides when a
    fresh REST snapshot is needed so that every file can be rebuilt into a correct book)."""

    name: str
    depth: bool
    file: _DayFile | None = None
    day: int = -1
    state: str = NEED
    last_u: int | None = None
    snap_id: int | None = None
    pending: list = field(default_factory=list)  # (U, u, pu) seen since the chain broke
    gap: dict | None = None  # open gap record
    messages: int = 0
    rate_count: int = 0
    gaps: int = 0
    snapshots: int = 0
    bytes: int = 0  # written to files of this run (all days)
    backlog: list = field(default_factory=list)  # sidecar entries noted before the file existed


class _Conn:
    def __init__(self, ws, opened: float):
        self.ws = ws
        self.opened = opened
        self.closed = asyncio.Event()
        self.task: asyncio.Task | None = None


class _Shard:
    """One combined-stream connection (plus a replacement during a rollover) for a group of symbols."""

    def __init__(self, collector: "Collector", streams: list[str], index: int):
        self.c = collector
        self.streams = streams
        self.index = index
        self.primary: _Conn | None = None
        self.candidate: _Conn | None = None
        self.cand_buf: list = []
        self.cand_first: dict[str, int] = {}  # first key the replacement connection delivered, per stream
        self.waiting: set[str] = set()  # streams the old connection has not yet covered up to cand_first
        self.switched = asyncio.Event()
        self.last_key: dict[str, int] = {}
        self.last_ts: dict[str, int] = {}
        self.last_text: dict[str, str] = {}
        self.gap_open: dict[str, tuple[int, dict]] = {}  # stream -> (since ns, reconnect record)
        self.reconnects = 0
        self.rollovers = 0

    @property
    def url(self) -> str:
        return f"{self.c.stream_base}/stream?streams={'/'.join(self.streams)}"

    async def _open(self) -> _Conn | None:
        c = self.c
        delay = c.reconnect_delay_s[0]
        while not c.stopping:
            try:
                ws = await asyncio.wait_for(
                    c.session.ws_connect(self.url, heartbeat=c.heartbeat_s, max_msg_size=0), c.connect_timeout_s)
                conn = _Conn(ws, time.monotonic())
                conn.task = asyncio.get_running_loop().create_task(self._reader(conn))
                return conn
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # aiohttp.ClientError, OSError, timeouts, handshake refusals
                log.warning("shard %d: connect failed (%s); retrying in %.1f s", self.index, exc or type(exc).__name__,
                            delay)
                c.note_error(self.streams, f"connect failed (shard {self.index}): {str(exc)[:200]}")
                await c.sleep(delay)
                delay = min(delay * 2, c.reconnect_delay_s[1])
        return None

    async def _reader(self, conn: _Conn) -> None:
        import aiohttp

        clock, on_frame = self.c.clock, self.on_frame
        try:
            async for msg in conn.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    on_frame(conn, clock(), msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    on_frame(conn, clock(), msg.data.decode())
        except asyncio.CancelledError:
            raise
        except HftBacktestError as exc:
            self.c.fail(exc)
        except Exception as exc:
            log.warning("shard %d: connection error %s", self.index, exc)
        finally:
            conn.closed.set()

    async def run(self) -> None:
        c = self.c
        self.primary = await self._open()
        if self.primary is not None and c.depth_stream:
            for sym in dict.fromkeys(c.route(s) for s in self.streams):
                c.request_snapshot(sym)  # only now: a snapshot taken before we listen could not bridge
        while self.primary is not None and not c.stopping:
            conn = self.primary
            due = conn.opened + c.rollover_s - time.monotonic()
            closed = asyncio.ensure_future(conn.closed.wait())
            stop = asyncio.ensure_future(c.stop_event.wait())
            done, _ = await asyncio.wait({closed, stop}, timeout=max(0.0, due), return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            stop.cancel()
            if c.stopping:
                break
            if conn.closed.is_set():
                if self.primary is conn:
                    await self._reconnect(conn)
                continue
            await self._rollover(conn)
        for conn in (self.primary, self.candidate):
            if conn is not None:
                await self._close(conn)

    @staticmethod
    async def _close(conn: _Conn) -> None:
        """Stop reading now (what arrives after a stop or a switch is not ours to record), then close politely."""
        if conn.task is not None:
            conn.task.cancel()
            await asyncio.gather(conn.task, return_exceptions=True)
        try:
            await asyncio.wait_for(conn.ws.close(), 1.0)
        except (asyncio.TimeoutError, OSError, RuntimeError):
            pass
        conn.closed.set()

    async def _reconnect(self, old: _Conn) -> None:
        c = self.c
        now = c.clock()
        code = old.ws.close_code
        log.warning("shard %d: connection closed (code %s); reconnecting", self.index, code)
        self.reconnects += 1
        c.reconnects += 1
        rec = {"time_ns": now, "shard": self.index, "close_code": code}
        for s in self.streams:
            self.gap_open[s] = (self.last_ts.get(s, now), rec)
        self.primary = None
        c.note_reconnect(self.streams, rec)  # on disk now, even if reconnecting takes long
        new = await self._open()
        if new is None:
            return
        rec["reconnected_ns"] = c.clock()
        c.note_reconnect(self.streams, None)
        self.primary = new

    async def _rollover(self, old: _Conn) -> None:
        """Open the replacement before the exchange's 24 h close, record from both, switch once they overlap."""
        c = self.c
        log.info("shard %d: opening the replacement connection (rollover)", self.index)
        self.cand_buf, self.cand_first, self.waiting = [], {}, set(self.last_key)
        self.switched.clear()
        cand = await self._open()
        if cand is None:
            return
        self.candidate = cand
        waits = {asyncio.ensure_future(self.switched.wait()), asyncio.ensure_future(old.closed.wait()),
                 asyncio.ensure_future(cand.closed.wait()), asyncio.ensure_future(c.stop_event.wait())}
        await asyncio.wait(waits, timeout=c.overlap_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if self.candidate is cand and not cand.closed.is_set():
            self._switch(reason="overlap" if self.switched.is_set() else
                         "old closed" if old.closed.is_set() else "timeout")
        elif self.candidate is cand:  # the replacement died before taking over: keep the old one
            self.candidate = None
            self.cand_buf = []
            return
        if old is not self.primary:
            await self._close(old)

    def _switch(self, reason: str) -> None:
        cand, buf = self.candidate, self.cand_buf
        self.candidate, self.cand_buf = None, []
        if self.waiting:  # not proven covered (old connection died or lagged): mark what may be missing
            now = self.c.clock()
            rec = {"time_ns": now, "shard": self.index, "rollover": reason}
            for s in self.waiting:
                self.gap_open[s] = (self.last_ts.get(s, now), rec)
            self.waiting = set()
        for item in buf:
            self._write(*item)  # _write drops what the old connection already delivered
        self.primary = cand
        self.rollovers += 1
        self.c.note_rollover(self.streams, {"time_ns": self.c.clock(), "shard": self.index, "switch": reason})
        self.switched.set()

    def _overlap(self, stream: str) -> None:
        """A stream is covered once the old connection has written up to the replacement's first message."""
        k, f = self.last_key.get(stream), self.cand_first.get(stream)
        if k is not None and (f is None or f > k):
            self.waiting.add(stream)
        else:
            self.waiting.discard(stream)
        if not self.waiting:
            self._switch(reason="overlap")

    def on_frame(self, conn: _Conn, ts: int, text: str) -> None:
        try:
            env = orjson.loads(text)
            stream = env["stream"]
            data = env["data"]
            key = _msg_key(data)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.c.malformed += 1
            if isinstance(text, str) and '"error"' in text:
                self.c.fail(ConfigError(f"exchange refused the subscription: {text[:200]}"))
            return
        if conn is self.primary:
            self._write(ts, stream, key, text, data)
            if self.candidate is not None:
                self._overlap(stream)
        elif conn is self.candidate:
            self.cand_buf.append((ts, stream, key, text, data))
            if key is not None:
                self.cand_first.setdefault(stream, key)
            self._overlap(stream)

    def _write(self, ts: int, stream: str, key, text: str, data: dict) -> None:
        last = self.last_key.get(stream)
        if key is not None:
            if last is not None and (key < last or key == last and (data.get("e") in _ID_KEYS
                                                                    or text == self.last_text.get(stream))):
                self.c.duplicates += 1  # an id already written, or the very same event-time message again
                return
            self.last_key[stream] = key
            self.last_text[stream] = text
        self.last_ts[stream] = ts
        gap = self.gap_open.pop(stream, None) if self.gap_open else None
        sym = self.c.route(stream)
        if gap is not None:
            self.c.note_stream_gap(sym, stream, gap[0], ts, gap[1], last, data)
        self.c.record(sym, ts, text.encode(), stream, data)


_ID_KEYS = {wire.DEPTH_UPDATE: "u", wire.TRADE: "t", wire.AGG_TRADE: "a", wire.BOOK_TICKER: "u"}


def _msg_key(data: dict):
    """Monotonic key of a stream message (update/trade id, else event time E) to drop duplicates and to stitch
    two overlapping connections. Equal ids are the same message; equal event times only if the text is equal."""
    name = _ID_KEYS.get(data.get("e"))
    if name is not None:
        return data.get(name) or None  # trade id 0: a non-MARKET print without an id
    return data.get("E")


class Collector:
    """Records Binance USD-M public streams for `symbols` into `out_dir`; `await run()`, `stop()` from anywhere."""

    def __init__(self, symbols, out_dir, *, streams=DEFAULT_STREAMS, stream_url: str = MAINNET_STREAM_URL,
                 api_url: str = MAINNET_API_URL, flush_interval_s: float = 1.0, snapshot_limit: int = 1000,
                 weight_budget: int = 1200, max_streams_per_connection: int = 200,
                 rollover_s: float = 23.5 * 3600, overlap_timeout_s: float = 10.0, clock_check_s: float = 600.0,
                 reconnect_delay_s: tuple[float, float] = (0.25, 30.0), heartbeat_s: float = 30.0,
                 connect_timeout_s: float = 10.0, rest_timeout_s: float = 10.0, compresslevel: int = 3,
                 fsync: bool = True, clock=time.time_ns, status: str = "auto", status_interval_s: float = 60.0):
        if isinstance(symbols, str):
            symbols = [symbols]
        if isinstance(streams, str):
            streams = [s for s in streams.split(",") if s.strip()]
        self.symbols = []
        for s in symbols:
            s = str(s).strip().lower()
            if not _SYMBOL_RE.fullmatch(s):
                raise ConfigError(f"invalid symbol {s!r}")
            if s not in self.symbols:
                self.symbols.append(s)
        if not self.symbols:
            raise ConfigError("no symbol given")
        self.streams = [s.strip() for s in streams]
        for s in self.streams:
            if not _STREAM_RE.fullmatch(s):
                raise ConfigError(f"unknown stream {s!r}; Binance USD-M per-symbol streams: depth[@0ms|@100ms|"
                                  "@250ms|@500ms], depth5|10|20[@100ms|@500ms], trade, aggTrade, bookTicker, "
                                  "markPrice[@1s], forceOrder, miniTicker, ticker, kline_<interval>")
        diff = [s for s in self.streams if _DIFF_DEPTH_RE.fullmatch(s)]
        if len(diff) > 1:
            raise ConfigError(f"one diff-depth stream per symbol, got {diff}")
        self.depth_stream = diff[0] if diff else None
        if snapshot_limit not in (5, 10, 20, 50, 100, 500, 1000):
            raise ConfigError(f"snapshot_limit must be one of 5,10,20,50,100,500,1000, got {snapshot_limit}")
        if compresslevel not in (0, 1, 2, 3):
            raise ConfigError(f"compresslevel must be 0..3 (ISA-L levels), got {compresslevel}")
        if flush_interval_s <= 0:
            raise ConfigError("flush_interval_s must be > 0")
        self.out_dir = Path(out_dir)
        self.stream_base = _stream_base(stream_url)
        self.api_url = api_url.rstrip("/")
        self.flush_interval_s = flush_interval_s
        self.snapshot_limit = snapshot_limit
        self.weight_budget = min(weight_budget, BINANCE_WEIGHT_LIMIT)
        self.max_streams = max_streams_per_connection
        self.rollover_s, self.overlap_timeout_s = rollover_s, overlap_timeout_s
        self.clock_check_s = clock_check_s
        self.reconnect_delay_s = reconnect_delay_s
        self.heartbeat_s, self.connect_timeout_s, self.rest_timeout_s = heartbeat_s, connect_timeout_s, rest_timeout_s
        self.compresslevel, self.fsync = compresslevel, fsync
        self.clock = clock
        self.status_mode, self.status_interval_s = status, status_interval_s
        self.state = {s: _Symbol(s, self.depth_stream is not None) for s in self.symbols}
        self._routes: dict[str, str] = {}
        self.stopping = False
        self.error: BaseException | None = None
        self.reconnects = self.duplicates = self.malformed = 0
        self.clock_offsets: list[dict] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._snap_queue: list[str] = []
        self._snap_wake: asyncio.Event | None = None
        self.stop_event: asyncio.Event | None = None
        self.session = None
        self.started_ns = 0
        self.shards: list[_Shard] = []
        self.running = threading.Event()  # set once connected and recording

    # -- public --------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the collector to flush, close its files (marked complete) and return from `run()`. Thread-safe."""
        loop = self._loop
        if loop is None:
            self.stopping = True
            return
        loop.call_soon_threadsafe(self._stop)

    def stats(self) -> dict:
        return {"symbols": {s.name: {"messages": s.messages, "gaps": s.gaps, "snapshots": s.snapshots,
                                     "depth": s.state if s.depth else None,
                                     "bytes": s.bytes + (s.file.size - s.file.start_size if s.file else 0)}
                            for s in self.state.values()},
                "reconnects": self.reconnects, "rollovers": sum(sh.rollovers for sh in self.shards),
                "duplicates_dropped": self.duplicates, "malformed": self.malformed}

    async def run(self) -> dict:
        import aiohttp

        self._loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        self._snap_wake = asyncio.Event()
        if self.stopping:
            self.stop_event.set()
        self.started_ns = self.clock()
        self._check_out_dir()
        tasks: list[asyncio.Task] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.rest_timeout_s)) as session:
            self.session = session
            try:
                await self._preflight()
                per = max(1, self.max_streams // len(self.streams))
                groups = [self.symbols[i:i + per] for i in range(0, len(self.symbols), per)]
                self.shards = [_Shard(self, [f"{s}@{st}" for s in g for st in self.streams], i)
                               for i, g in enumerate(groups)]
                loop = self._loop
                tasks = [loop.create_task(sh.run()) for sh in self.shards]
                tasks += [loop.create_task(self._flusher()), loop.create_task(self._clock_checker()),
                          loop.create_task(self._status())]
                if self.depth_stream:
                    tasks.append(loop.create_task(self._snapshots()))
                self.running.set()
                await self.stop_event.wait()
            finally:
                self.stopping = True
                self.stop_event.set()
                for t in tasks[len(self.shards):]:
                    t.cancel()
                await asyncio.gather(*tasks[:len(self.shards)], return_exceptions=True)
                await asyncio.gather(*tasks[len(self.shards):], return_exceptions=True)
                self._close_files()
        if self.error is not None:
            raise self.error
        return self.stats()

    # -- setup ---------------------------------------------------------------------------------------------------
    def _check_out_dir(self) -> None:
        d = self.out_dir
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe = d / f".collect-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise DataError(f"cannot write to output folder {d}: {exc.strerror or exc}") from None

    async def _preflight(self) -> None:
        """Reachability + clock offset, and reject unknown symbols before any file is created."""
        await self._sample_clock()
        try:
            status, body, _ = await self._get("/fapi/v1/exchangeInfo", {})
        except HftBacktestError:
            raise
        if status == 200:
            known = {str(s.get("symbol", "")).lower(): s.get("status") for s in body.get("symbols", [])}
            for s in self.symbols:
                if s not in known:
                    raise ConfigError(f"unknown symbol {s.upper()}: not listed by {self.api_url}/fapi/v1/exchangeInfo")

    async def _get(self, path: str, params: dict):
        import aiohttp

        try:
            async with self.session.get(self.api_url + path, params=params) as r:
                raw = await r.read()
                try:
                    body = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError:
                    body = {"raw": raw[:200].decode(errors="replace")}
                return r.status, body if isinstance(body, dict) else {"list": body}, (r.headers, raw)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ConnectorError(f"{self.api_url}{path}: {exc or type(exc).__name__}") from None

    async def _sample_clock(self) -> None:
        t0 = self.clock()
        status, body, _ = await self._get("/fapi/v1/time", {})
        t1 = self.clock()
        if status != 200 or "serverTime" not in body:
            raise ConnectorError(f"{self.api_url}/fapi/v1/time answered HTTP {status}: {str(body)[:200]}")
        mid = (t0 + t1) // 2
        rec = {"time_ns": t1, "server_ms": int(body["serverTime"]),
               "offset_ms": round(int(body["serverTime"]) - mid / 1e6, 3), "rtt_ms": round((t1 - t0) / 1e6, 3)}
        self.clock_offsets.append(rec)
        for st in self.state.values():
            if st.file is not None:
                st.file.meta["clock_offsets"].append(rec)
                st.file.write_meta()

    # -- recording -----------------------------------------------------------------------------------------------
    def route(self, stream: str) -> str:
        sym = self._routes.get(stream)
        if sym is None:
            sym = self._routes[stream] = stream.partition("@")[0].lower()
        return sym

    def _file(self, st: _Symbol, ts: int) -> _DayFile:
        day = ts // DAY_NS
        if day != st.day:
            if st.file is not None:  # UTC midnight: close yesterday (complete) and start today's file
                st.file.close(ts)
                st.bytes += st.file.size - st.file.start_size
                st.file = None
                if st.depth:
                    # a fresh snapshot makes every day's file rebuildable on its own
                    self.request_snapshot(st.name)
            meta = {"format": FORMAT, "exchange": "binancefutures", "symbol": st.name,
                    "streams": [f"{st.name}@{s}" for s in self.streams], "package_version": _package_version(),
                    "stream_url": self.stream_base, "api_url": self.api_url, "started_ns": self.clock(),
                    "flush_interval_s": self.flush_interval_s, "snapshot_limit": self.snapshot_limit,
                    "initial_last_u": st.last_u if st.state == LIVE else None}
            st.file = _DayFile(self.out_dir, st.name, _day_str(ts), meta, self.compresslevel, self.fsync)
            st.file.meta["clock_offsets"] += self.clock_offsets[-1:]
            for key, rec in st.backlog:
                st.file.meta[key].append(rec)
            st.backlog = []
            st.day = day
        return st.file

    def record(self, sym: str, ts: int, payload: bytes, stream: str, data: dict) -> None:
        st = self.state.get(sym)
        if st is None:
            return
        f = self._file(st, ts)
        f.add(ts, payload)
        st.messages += 1
        st.rate_count += 1
        if st.depth and data.get("e") == wire.DEPTH_UPDATE and stream.partition("@")[2] == self.depth_stream:
            self._on_diff(st, ts, data["U"], data["u"], data["pu"])
        if f.buf_bytes > 8 << 20:  # bound memory under bursts
            self._flush_one(f)

    def _on_diff(self, st: _Symbol, ts: int, U: int, u: int, pu: int) -> None:
        if st.state == LIVE:
            if depth.next_diff(U, u, pu, st.last_u) == depth.APPLY:
                st.last_u = u
                return
            self._open_gap(st, ts, f"pu={pu} != last u={st.last_u}")
            st.pending = [(U, u, pu)]
            return
        st.pending.append((U, u, pu))
        if st.state == BRIDGE:
            self._try_bridge(st, ts)

    def _open_gap(self, st: _Symbol, ts: int, detail: str) -> None:
        st.gaps += 1
        st.state = NEED
        st.gap = {"kind": "depth", "start_ns": ts, "end_ns": None, "detail": detail}
        log.warning("%s: depth gap (%s); fetching a snapshot", st.name, detail)
        if st.file is not None:
            st.file.meta["gaps"].append(st.gap)
            st.file.write_meta()
        self.request_snapshot(st.name)

    def _try_bridge(self, st: _Symbol, ts: int) -> None:
        L = st.snap_id
        st.pending = [p for p in st.pending if not depth.stale(p[1], L)]
        if not st.pending:
            return
        U, u, _ = st.pending[0]
        if not depth.bridges(U, u, L):
            # the snapshot is older than the stream we hold: get a newer one (a marked gap)
            st.state = NEED
            why = f"snapshot {L} older than the stream (first diff U={U}); fetching another"
            if st.gap is None and st.last_u is not None:
                self._open_gap(st, ts, why)
            else:
                log.warning("%s: %s", st.name, why)
                self._note(st, "errors", {"time_ns": ts, "error": why})
                self.request_snapshot(st.name)
            return
        last = u
        for U2, u2, pu2 in st.pending[1:]:
            if depth.next_diff(U2, u2, pu2, last) != depth.APPLY:
                st.state = LIVE
                st.last_u = last
                self._open_gap(st, ts, f"pu={pu2} != last u={last}")
                st.pending = [(U2, u2, pu2)]
                return
            last = u2
        st.state, st.last_u, st.pending = LIVE, last, []
        if st.gap is not None:
            st.gap["end_ns"] = ts
            st.gap = None
            if st.file is not None:
                st.file.write_meta()

    def request_snapshot(self, sym: str) -> None:
        if sym not in self._snap_queue:
            self._snap_queue.append(sym)
        if self._snap_wake is not None:
            self._snap_wake.set()

    async def _snapshots(self) -> None:
        """One REST worker: weight-budgeted, honours Retry-After/429, stops on 418, retries 5xx with backoff."""
        spent: list[tuple[float, int]] = []  # (monotonic, weight) of the last minute
        weight = depth_weight(self.snapshot_limit)
        backoff = 0.5
        while not self.stopping:
            if not self._snap_queue:
                self._snap_wake.clear()
                await self._snap_wake.wait()
                continue
            now = time.monotonic()
            spent = [x for x in spent if now - x[0] < 60.0]
            if sum(w for _, w in spent) + weight > self.weight_budget:
                await self.sleep(60.0 - (now - spent[0][0]) + 0.01)
                continue
            sym = self._snap_queue.pop(0)
            spent.append((now, weight))
            try:
                status, body, (headers, raw) = await self._get(
                    "/fapi/v1/depth", {"symbol": sym.upper(), "limit": str(self.snapshot_limit)})
            except ConnectorError as exc:
                self._snap_failed(sym, str(exc), backoff)
                await self.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            ts = self.clock()
            used = headers.get("X-MBX-USED-WEIGHT-1M")
            if status == 418:
                retry = headers.get("Retry-After", "?")
                self.fail(ConnectorError(f"Binance banned this IP (HTTP 418, Retry-After {retry} s) after too many "
                                         f"requests; stopping: {body.get('msg', '')}"))
                return
            if status == 429:
                retry = _retry_after(headers, 60.0)
                self._snap_failed(sym, f"HTTP 429 {body.get('code')}; waiting {retry:.0f} s", retry)
                await self.sleep(retry)
                continue
            if body.get("code") == -1121:
                self.fail(ConfigError(f"unknown symbol {sym.upper()}: {self.api_url} answered -1121 "
                                      f"{body.get('msg', 'Invalid symbol.')}"))
                return
            if status != 200 or "lastUpdateId" not in body:
                self._snap_failed(sym, f"HTTP {status} {str(body)[:200]}", backoff)
                await self.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            self._on_snapshot(sym, ts, raw, body)
            if used is not None and used.isdigit() and int(used) > 0.8 * BINANCE_WEIGHT_LIMIT:
                await self.sleep(60.0 - time.time() % 60.0)  # the exchange's minute window is nearly spent

    def _snap_failed(self, sym: str, why: str, retry: float) -> None:
        log.warning("%s: depth snapshot failed (%s); retrying in %.1f s", sym, why, retry)
        self._note(self.state[sym], "errors", {"time_ns": self.clock(), "error": f"snapshot: {why}"})
        self.request_snapshot(sym)

    def _on_snapshot(self, sym: str, ts: int, raw: bytes, body: dict) -> None:
        st = self.state[sym]
        f = self._file(st, ts)
        f.add(ts, raw.strip())
        st.snapshots += 1
        st.snap_id = int(body["lastUpdateId"])
        f.meta["snapshots"].append({"time_ns": ts, "lastUpdateId": st.snap_id})
        if st.state == LIVE and st.last_u is not None and depth.snapshot_continues(st.snap_id, st.last_u):
            return  # a rotation snapshot while in sync: the chain continues
        st.state = BRIDGE
        self._try_bridge(st, ts)

    def note_stream_gap(self, sym: str, stream: str, since: int, ts: int, rec: dict, last_key, data) -> None:
        st = self.state.get(sym)
        if st is None:
            return
        gap = {"kind": "ws_reconnect", "stream": stream, "start_ns": since, "end_ns": ts}
        if data.get("e") == wire.TRADE and last_key is not None and data.get("t"):
            gap["missing_trades"] = max(0, int(data["t"]) - int(last_key) - 1)
        f = self._file(st, ts)
        f.meta["gaps"].append(gap)

    def note_reconnect(self, streams: list[str], rec: dict | None) -> None:
        """Add a reconnect record (None: it was updated in place) and rewrite the sidecars."""
        for sym in {self.route(s) for s in streams}:
            st = self.state.get(sym)
            if st is not None and st.file is not None:
                if rec is not None:
                    st.file.meta["reconnects"].append(rec)
                st.file.write_meta()

    def note_rollover(self, streams: list[str], rec: dict) -> None:
        log.info("shard %d: switched to the replacement connection (%s)", rec["shard"], rec["switch"])
        for sym in {self.route(s) for s in streams}:
            st = self.state.get(sym)
            if st is not None and st.file is not None:
                st.file.meta["rollovers"].append(rec)
                st.file.write_meta()

    def note_error(self, streams: list[str], error: str) -> None:
        rec = {"time_ns": self.clock(), "error": error}
        for sym in {self.route(s) for s in streams}:
            if sym in self.state:
                self._note(self.state[sym], "errors", rec)

    @staticmethod
    def _note(st: _Symbol, key: str, rec: dict) -> None:
        if st.file is not None:
            st.file.meta[key].append(rec)
        elif len(st.backlog) < 1000:
            st.backlog.append((key, rec))

    # -- periodic ------------------------------------------------------------------------------------------------
    def _flush_one(self, f: _DayFile) -> None:
        try:
            f.flush()
        except DataError as exc:
            self.fail(exc)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            for st in self.state.values():
                if st.file is not None and st.file.buf:
                    self._flush_one(st.file)
                    if self.error is not None:
                        return

    async def _clock_checker(self) -> None:
        while True:
            await asyncio.sleep(self.clock_check_s)
            try:
                await self._sample_clock()
            except HftBacktestError as exc:
                log.warning("clock check failed: %s", exc)

    async def _status(self) -> None:
        interactive = self.status_mode == "rich" or (self.status_mode == "auto" and sys.stderr.isatty())
        if self.status_mode == "off":
            return
        if interactive:
            from rich.console import Console
            from rich.live import Live

            with Live(console=Console(stderr=True), refresh_per_second=2, transient=True) as live:
                while True:
                    live.update(self._status_text(1.0))
                    await asyncio.sleep(1.0)
        while True:
            await asyncio.sleep(self.status_interval_s)
            log.info(self._status_text(self.status_interval_s))

    def _status_text(self, period: float) -> str:
        parts = []
        for st in self.state.values():
            parts.append(f"{st.name} {st.rate_count / period:,.0f}/s"
                         + (f" {st.state}" if st.depth and st.state != LIVE else "")
                         + (f" gaps {st.gaps}" if st.gaps else ""))
            st.rate_count = 0
        written = sum(st.file.size for st in self.state.values() if st.file)
        return (" | ".join(parts) + f" | reconnects {self.reconnects} | "
                f"rollovers {sum(sh.rollovers for sh in self.shards)} | {written / 1e6:,.2f} MB written")

    # -- shutdown ------------------------------------------------------------------------------------------------
    def _stop(self) -> None:
        self.stopping = True
        if self.stop_event is not None:
            self.stop_event.set()

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            log.error("%s", exc)
        self._stop()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the collector stops."""
        if self.stopping:
            return
        try:
            await asyncio.wait_for(self.stop_event.wait(), timeout=max(0.0, seconds))
        except asyncio.TimeoutError:
            pass

    def _close_files(self) -> None:
        ts = self.clock()
        err = str(self.error) if self.error is not None else None
        for st in self.state.values():
            f, st.file = st.file, None
            if f is None:
                continue
            try:
                if err is not None and not isinstance(self.error, DataError):
                    f.flush()  # what was received is good data even if we stop for another reason
                f.close(ts, error=err)
                st.bytes += f.size - f.start_size
            except DataError as exc:
                if self.error is None:
                    self.error = exc


def _retry_after(headers, default: float) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", default)))
    except ValueError:
        return default


def _stream_base(url: str) -> str:
    """`wss://host/ws`, `wss://host/stream` or `wss://host` -> `wss://host` (combined streams go to `/stream`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ConfigError(f"stream URL must start with ws:// or wss://, got {url!r}")
    path = parts.path.rstrip("/")
    for tail in ("/ws", "/stream"):
        if path.endswith(tail):
            path = path[: -len(tail)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def run(symbols, out_dir, **options) -> dict:
    """Record until SIGINT/SIGTERM (or `options['stop']`, a threading.Event), close files cleanly, return stats."""
    stop_flag: threading.Event | None = options.pop("stop", None)
    collector = Collector(symbols, out_dir, **options)

    async def main():
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, collector.stop)
        if stop_flag is not None:
            loop.run_in_executor(None, lambda: (stop_flag.wait(), collector.stop()))
        return await collector.run()

    return asyncio.run(main())


# -- CLI -----------------------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "collect", help="record Binance USD-M market data into raw feed files (crash-safe)",
        description="Record public market streams into <out>/<symbol>_<YYYYMMDD>.gz (one per symbol per UTC day), "
                    "the raw format `hftbacktest convert` reads. Runs until Ctrl-C. See docs/collect.md.")
    sub = p.add_subparsers(dest="exchange", metavar="EXCHANGE")
    b = sub.add_parser("binancefutures", help="Binance USD-M Futures")
    b.add_argument("symbols", nargs="+", metavar="SYMBOL")
    b.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    b.add_argument("--streams", default=",".join(DEFAULT_STREAMS),
                   help=f"comma-separated per-symbol streams (default {','.join(DEFAULT_STREAMS)})")
    b.add_argument("--stream-url", default=MAINNET_STREAM_URL, help="WebSocket base URL (default mainnet)")
    b.add_argument("--api-url", default=MAINNET_API_URL, help="REST base URL (default mainnet)")
    b.add_argument("--flush-interval", type=float, default=1.0, metavar="S",
                   help="seconds between gzip members (at most this much is lost on a crash)")
    b.add_argument("--snapshot-limit", type=int, default=1000, help="levels per REST depth snapshot")
    b.add_argument("--weight-budget", type=int, default=1200,
                   help="REST weight per minute the collector may use (Binance allows 2400 per IP)")
    b.add_argument("--max-streams-per-connection", type=int, default=200)
    b.add_argument("--rollover", type=float, default=23.5 * 3600, metavar="S",
                   help="open a replacement connection after this many seconds (Binance closes at 24 h)")
    b.add_argument("--no-fsync", action="store_true", help="do not fsync each member (faster, not power-cut safe)")
    b.add_argument("--status", choices=("auto", "rich", "log", "off"), default="auto",
                   help="status display: live line on a terminal, periodic log lines otherwise")
    b.add_argument("--status-interval", type=float, default=60.0, help="seconds between status log lines")
    b.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    b.set_defaults(func=_cli)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _cli(args) -> int:
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    stats = run(args.symbols, args.output, streams=args.streams, stream_url=args.stream_url, api_url=args.api_url,
                flush_interval_s=args.flush_interval, snapshot_limit=args.snapshot_limit,
                weight_budget=args.weight_budget, max_streams_per_connection=args.max_streams_per_connection,
                rollover_s=args.rollover, fsync=not args.no_fsync,
                status="off" if args.quiet else args.status, status_interval_s=args.status_interval)
    total = sum(s["messages"] for s in stats["symbols"].values())
    log.info("stopped: %d messages, %d reconnects, %d rollovers", total, stats["reconnects"], stats["rollovers"])
    return 0
