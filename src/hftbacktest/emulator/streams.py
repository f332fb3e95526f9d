"""WebSocket connections and market-stream fan-out (one encoded payload per stream, queued per connection)."""
from __future__ import annotations

import asyncio
import collections
import logging

import orjson
from aiohttp import WSMsgType, web

from ..binance.wire import normalize_stream
from .faults import FaultInjector

log = logging.getLogger("hftbacktest.emulator")

# Which stream routes (binance.wire.stream_route, "private" = listen keys) each connection path serves.
ROUTE_ALLOWS = {"public": {"public"}, "market": {"market"}, "private": {"private"},
                None: {"public", "private"}}  # unrouted: + listen keys, which Binance serves on /private only


class Conn:
    """One WebSocket client. Messages are queued and written by a per-connection task so a slow client
    never stalls the replay; faults that act per connection (delay, reorder, drop...) live in the writer."""

    def __init__(self, ws: web.WebSocketResponse, channel: str, combined: bool, faults: FaultInjector,
                 queue_limit: int, route: str | None = None):
        self.ws = ws
        self.route = route  # "public" / "market" / "private" / None (unrouted)
        self.channel = channel
        self.combined = combined
        self.faults = faults
        self.queue_limit = queue_limit
        self.streams: set[str] = set()
        self.accounts: dict = {}  # listen key -> Account (user data on this connection)
        self.user_events: set[str] | None = None  # `events=` filter of a /private connection
        self.queue: collections.deque = collections.deque()
        self.wakeup = asyncio.Event()
        self.half_open = False
        self.close_after: int | None = None
        self.sent = 0
        self.closed = False
        self.refuse_s = 0.0  # ws_drop fault: refuse reconnects for this long after closing
        self.last_pong = asyncio.get_running_loop().time()

    def push(self, stream: str | None, data: bytes) -> None:
        if self.closed:
            return
        if len(self.queue) >= self.queue_limit:
            log.warning("closing slow WebSocket client (%d messages queued)", len(self.queue))
            self.closed = True
            asyncio.get_running_loop().create_task(self.ws.close(code=1008, message=b"too slow"))
            return
        if self.combined and stream is not None:
            data = b'{"stream":"' + stream.encode() + b'","data":' + data + b"}"
        self.queue.append(data)
        self.wakeup.set()

    async def writer(self) -> None:
        faults = self.faults
        held: bytes | None = None
        try:
            while not self.closed:
                if not self.queue:
                    self.wakeup.clear()
                    await self.wakeup.wait()
                    continue
                data = self.queue.popleft()
                if self.half_open:
                    continue
                if faults.faults:
                    data = await self._apply_faults(data)
                    if data is None:
                        continue
                    if held is None and faults.fire("ws_reorder", channel=self.channel) is not None:
                        held = data
                        continue
                await self.ws.send_frame(data, WSMsgType.TEXT)
                self.sent += 1
                if held is not None:
                    await self.ws.send_frame(held, WSMsgType.TEXT)
                    held = None
                    self.sent += 1
                if self.close_after is not None:
                    self.close_after -= 1
                    if self.close_after <= 0:
                        log.warning("fault ws_drop: closing %s connection after %d messages", self.channel, self.sent)
                        self.closed = True
                        await self.ws.close(code=1001, message=b"going away")
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            self.closed = True

    async def _apply_faults(self, data: bytes) -> bytes | None:
        faults, channel = self.faults, self.channel
        drop = faults.fire("ws_drop", channel=channel)
        if drop is not None and self.close_after is None:
            self.close_after = max(1, int(drop["after"]))
            self.refuse_s = float(drop["refuse_s"])
        if faults.fire("ws_half_open", channel=channel) is not None:
            self.half_open = True
            return None
        delay = faults.armed("ws_delay", channel=channel)
        if delay is not None:
            jitter = faults.rng.uniform(0, delay["jitter_ms"]) if delay["jitter_ms"] else 0.0
            await asyncio.sleep((delay["ms"] + jitter) / 1000.0)
        if faults.fire("ws_malformed", channel=channel) is not None:
            return data[: max(1, len(data) // 2)]
        if faults.fire("ws_duplicate", channel=channel) is not None:
            await self.ws.send_frame(data, WSMsgType.TEXT)
        if faults.fire("ws_unknown_event", channel=channel) is not None:
            await self.ws.send_frame(b'{"e":"emuUnknownEvent","E":0,"detail":"injected by fault"}', WSMsgType.TEXT)
        return data


class StreamHub:
    """Subscriptions: stream name -> connections."""

    def __init__(self) -> None:
        self.subs: dict[str, set[Conn]] = collections.defaultdict(set)

    def has(self, stream: str) -> bool:
        subs = self.subs.get(stream)
        return bool(subs)

    def publish(self, stream: str, payload: dict | bytes) -> None:
        subs = self.subs.get(stream)
        if not subs:
            return
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        for conn in tuple(subs):
            conn.push(stream, data)

    def subscribe(self, conn: Conn, streams) -> None:
        for s in streams:
            s = normalize_stream(s)
            conn.streams.add(s)
            self.subs[s].add(conn)

    def unsubscribe(self, conn: Conn, streams) -> None:
        for s in streams:
            s = normalize_stream(s)
            conn.streams.discard(s)
            subs = self.subs.get(s)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self.subs[s]

    def drop(self, conn: Conn) -> None:
        self.unsubscribe(conn, list(conn.streams))
