"""The Python half of the live bot: IPC channels, message decoding, error handler, signals.

Compiled code calls into here only at waits and order requests (numba `objmode`). Incoming feed rows and
order updates are written into staging numpy arrays shared with the compiled bot, which applies them with the
backtest engine's kernels; nothing else crosses the boundary.
"""
from __future__ import annotations

import ctypes
import itertools
from collections import deque
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import IpcError
from ..types import event_dtype, order_dtype
from .ipc import BotChannel, access
from .ipc import codec
from .ipc.codec import ErrorKind

log = logging.getLogger("hftbacktest.live")

# poll status bits returned to compiled code
ST_INTERRUPTED = 1
ST_HANDLER_FAILED = 2
ST_CLOSED = 4
ST_MORE = 8
ST_CHECK_PENDING = 16  # time to look for requests nobody answered

PENDING_CHECK_S = 0.1

SILENCE_S = 5.0
BATCH_TIMEOUT_S = 1.0  # a batch cut short by a dead connector must not hang the bot

_FEED_CAP = 8192
_ORDER_CAP = 1024


@dataclass(frozen=True)
class LiveError:
    """What the connector reported; passed to the error handler."""

    kind: ErrorKind
    value: Any
    code: int = 0  # the number of a Custom error

    def __str__(self) -> str:
        kind = f"Custom({self.code})" if self.kind == ErrorKind.Custom else self.kind.name
        return f"{kind}: {self.value}"


class BotError(Exception):
    """Raise from an error handler to stop the strategy: the running wait returns code 19."""


_REGISTRY: dict[int, "LiveRuntime"] = {}
_KEYS = itertools.count(1)
_POLL_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
# Poll callbacks live as long as the process: compiled code holds their addresses, and a bot used after `close()`
# must still find a callback (which answers ST_CLOSED) rather than freed memory.
_CALLBACKS: list = []


def runtime(key: int) -> "LiveRuntime":
    return _REGISTRY[key]


class LiveRuntime:
    def __init__(self, instruments: list, bot_id: int, error_handler: Callable | None,
                 order_recorder: Any = None, idle_sleep: bool = True, order_recv_hook: Callable | None = None,
                 request_timeout_s: float = 60.0):
        self.bot_id = bot_id
        self.instruments = instruments
        self.error_handler = error_handler
        self.order_recorder = order_recorder
        self.order_recv_hook = order_recv_hook
        self.request_timeout_ns = int(request_timeout_s * 1e9)
        self._next_pending_check = 0.0
        self.idle_sleep = idle_sleep
        self.connectors: list[str] = []
        for inst in instruments:
            if inst.connector_name not in self.connectors:
                self.connectors.append(inst.connector_name)
        self.channels: list[BotChannel] = []
        try:
            for name in self.connectors:
                self.channels.append(BotChannel(name, bot_id))
        except Exception:
            for ch in self.channels:
                ch.close()
            raise
        self._order_headers = [codec.order_request_header(inst.symbol) for inst in instruments]
        self._order_senders = [self.channels[self.connectors.index(inst.connector_name)].send for inst in instruments]
        self.asset_of: list[dict[str, int]] = [{} for _ in self.connectors]
        for asset, inst in enumerate(instruments):
            self.asset_of[self.connectors.index(inst.connector_name)][inst.symbol] = asset
        n = len(instruments)
        self.feed = np.zeros(_FEED_CAP, event_dtype)
        self.feed_u8 = self.feed.view(np.uint8)
        self.feed_asset = np.zeros(_FEED_CAP, np.int64)
        self.orders = np.zeros(_ORDER_CAP, order_dtype)
        self.order_asset = np.zeros(_ORDER_CAP, np.int64)
        self.position = np.zeros(n, np.float64)
        self.position_set = np.zeros(n, np.uint8)
        self.replayed = np.zeros(n, np.uint8)  # asset whose registration replay (its live orders) is staged
        self.counts = np.zeros(2, np.int64)  # staged feed rows, staged orders
        self.latency = np.zeros((256, 4), np.int64)  # answered requests: req_ts, exch_ts, resp_ts, req
        self.n_latency = np.zeros(1, np.int64)
        now = time.monotonic()
        self.last_seen = [now] * len(self.connectors)
        self.silent = [False] * len(self.connectors)
        self.last_activity = now
        self.in_batch = [False] * len(self.connectors)
        self._pending_replay: list[deque] = [deque() for _ in self.connectors]
        self._channel_ids = range(len(self.channels))
        self._recvs = [ch.recv for ch in self.channels]
        self._n_feed = self._n_orders = 0
        self._feed_cap, self._order_cap = _FEED_CAP, _ORDER_CAP
        self._staged = False
        self._polls = 0
        self.batch_started = [0.0] * len(self.connectors)
        self.interrupted = False
        self.closed = False
        self.handler_error: BaseException | None = None
        self._old_handlers: dict[int, Any] = {}
        self.key = next(_KEYS)
        _REGISTRY[self.key] = self
        callback = _POLL_FN(self._native_poll)
        _CALLBACKS.append(callback)
        self.poll_address = ctypes.cast(callback, ctypes.c_void_p).value
        self._install_signals()
        for ci in range(len(self.connectors)):
            self.register(ci)

    # --- setup / teardown ---------------------------------------------------------------------
    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum, frame):
            if self.interrupted:  # second signal: the strategy did not stop on code 1; die as the signal says
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            self.interrupted = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, on_signal)

    def register(self, ci: int) -> None:
        """(Re-)register this connector's instruments; each answer is a replay batch: live orders, position, book.

        The connector's token is read afresh each time: a restarted connector has written a new one."""
        name = self.connectors[ci]
        token = access.read_token(name)
        if token is None:
            log.warning("connector %s has no token file (%s): is it running? Its requests will be refused", name,
                        access.token_path(name))
        self.channels[ci].send(codec.encode_request(codec.BotHello(os.getpid(), token or "")))
        for symbol, asset in self.asset_of[ci].items():
            self._pending_replay[ci].append(asset)
            inst = self.instruments[asset]
            self.channels[ci].send(codec.encode_request(codec.RegisterInstrument(symbol, inst.tick_size, inst.lot_size)))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for ch in self.channels:
            try:
                ch.send(codec.encode_request(codec.BotGoodbye()))  # our open orders go to the next bot
            except Exception as exc:
                log.warning("could not say goodbye to connector %s: %s", ch.name, exc)
            ch.close()
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._drain_latency()
        if self.order_recorder is not None and hasattr(self.order_recorder, "close"):
            self.order_recorder.close()
        _REGISTRY.pop(self.key, None)

    # --- outgoing ---------------------------------------------------------------------------------
    def send_order(self, asset: int, orders: np.ndarray, slot: int) -> None:
        """Send the order in `orders[slot]` (an `order_dtype` table) as a request, encoded from its bytes."""
        self._order_senders[asset](codec.encode_order_record(self._order_headers[asset], orders[slot].tobytes()))

    def log_send_failure(self, exc: BaseException) -> None:
        log.error("order request not sent: %s", exc)

    # --- incoming ---------------------------------------------------------------------------------
    def _native_poll(self, key: int) -> int:
        """`poll` as the compiled bot calls it (a C callback: nothing may propagate, so failures become bits)."""
        try:
            return self.poll()
        except BaseException as exc:
            log.exception("IPC poll failed")
            self.handler_error = exc
            return ST_HANDLER_FAILED

    def poll(self) -> int:
        """Read what is waiting into the staging arrays; returns status bits.

        ST_MORE means a batch is still open (or staging is full): the caller applies the staged rows and polls
        again before returning to the strategy, so a strategy never sees half a batch. The idle path is kept
        short: it runs on every iteration of a strategy's wait loop."""
        if self._staged:
            self.counts[0] = self.counts[1] = 0
            self._n_feed = self._n_orders = 0
            self._staged = False
        if self.closed:
            return ST_CLOSED
        status = 0
        got = False
        for ci in self._channel_ids:
            recv = self._recvs[ci]
            while True:
                raw = recv()
                if raw is None:
                    if self.in_batch[ci]:
                        if time.monotonic() - self.batch_started[ci] < BATCH_TIMEOUT_S:
                            status |= ST_MORE  # the rest of the batch is on its way
                        else:
                            log.warning("batch from %s never ended; continuing", self.connectors[ci])
                            self.in_batch[ci] = False
                    break
                got = True
                tag = raw[1]
                if raw[0] != codec.VERSION:
                    status |= self._on_error(ci, LiveError(ErrorKind.Custom, "IPC codec version mismatch",
                                                           codec.CUSTOM_CODEC_MISMATCH))
                elif tag == codec.TAG_FEED:
                    self._stage_feed(ci, raw)
                elif tag == codec.TAG_BATCH_START:
                    self.in_batch[ci] = True
                    self.batch_started[ci] = time.monotonic()
                    if self.channels[ci].last_id == self.bot_id and self._pending_replay[ci]:
                        self.replayed[self._pending_replay[ci].popleft()] = 1
                        got = True
                elif tag == codec.TAG_BATCH_END:
                    self.in_batch[ci] = False
                else:
                    status |= self._on_message(ci, codec.decode_event(raw))
                if self._n_feed >= self._feed_cap or self._n_orders >= self._order_cap:
                    status |= ST_MORE  # staging full: apply, then continue reading
                    break
            if got:
                self.last_seen[ci] = time.monotonic()
        if got:
            self.counts[0] = self._n_feed
            self.counts[1] = self._n_orders
            self._staged = True
        self._polls += 1
        if self._polls & 1023 == 0:
            status |= self._housekeeping(got)
        if self.interrupted:
            status |= ST_INTERRUPTED
        if self.handler_error is not None:
            status |= ST_HANDLER_FAILED
        return status

    def _housekeeping(self, busy: bool) -> int:
        """Every ~1000 polls: silent connectors, dropped samples, latency rows, unanswered requests, and CPU
        politeness when idle."""
        status = 0
        now = time.monotonic()
        if now >= self._next_pending_check:
            self._next_pending_check = now + PENDING_CHECK_S
            status |= ST_CHECK_PENDING
        for ci, ch in enumerate(self.channels):
            if ch.lost:
                log.warning("%d IPC messages from %s were dropped (bot too slow); re-registering", ch.lost,
                            self.connectors[ci])
                ch.lost = 0
                self.register(ci)
            if not self.silent[ci] and now - self.last_seen[ci] > SILENCE_S:
                self.silent[ci] = True
                status |= self._on_error(ci, LiveError(ErrorKind.CriticalConnectionError, "connector silent"))
        if self.n_latency[0]:
            self._drain_latency()
        if self.idle_sleep and not busy:
            os.sched_yield()  # quiet for a while: let other processes on this core run
        return status

    def _stage_feed(self, ci: int, raw: bytes) -> None:
        n = raw[2] | (raw[3] << 8)
        asset = self.asset_of[ci].get(raw[4 : 4 + n].decode())
        if asset is None:
            return  # another bot's instrument
        i = self._n_feed
        self.feed_u8[i * 64 : i * 64 + 64] = np.frombuffer(raw, np.uint8, 64, 4 + n)
        self.feed_asset[i] = asset
        self._n_feed = i + 1

    def _on_message(self, ci: int, msg: Any) -> int:
        cls = type(msg)
        if cls is codec.OrderUpdate:
            asset = self.asset_of[ci].get(msg.symbol)
            if asset is None:
                return 0
            i = self._n_orders
            o = msg.order
            self.orders[i] = (o.qty, o.leaves_qty, o.exec_qty, o.exec_price_tick, o.price_tick, o.tick_size,
                              o.exch_timestamp, o.local_timestamp, o.order_id, 0, 0, o.maker, o.order_type, o.req,
                              o.status, o.side, o.time_in_force)
            self.order_asset[i] = asset
            self._n_orders = i + 1
        elif cls is codec.Position:
            asset = self.asset_of[ci].get(msg.symbol)
            if asset is not None:
                self.position[asset] = msg.qty
                self.position_set[asset] = 1
        elif cls is codec.Error:
            if msg.kind == ErrorKind.Custom and msg.code == codec.CUSTOM_HEARTBEAT:
                self.silent[ci] = False
                return 0
            if msg.kind == ErrorKind.Custom and msg.code == codec.CUSTOM_CONNECTOR_RESTARTED:
                self.silent[ci] = False
                self.channels[ci].reset_sequence()
                self.register(ci)
            return self._on_error(ci, LiveError(msg.kind, msg.value, msg.code))
        return 0

    def _on_error(self, ci: int, err: LiveError) -> int:
        if self.error_handler is None:
            log.warning("connector %s: %s", self.connectors[ci], err)
            return 0
        try:
            self.error_handler(err)
        except Exception as exc:  # BotError or a bug in the handler: stop the strategy's wait
            log.error("error handler raised %r on %s", exc, err)
            self.handler_error = exc
            return ST_HANDLER_FAILED
        return 0

    def call_order_hook(self, asset: int, prev, new) -> int:
        """order_recv_hook(prev, new) for an update of a known order, before the bot merges it; 1 if it raised."""
        from ..backtest.bot import Order

        try:
            self.order_recv_hook(Order(prev), Order(new))
        except Exception as exc:  # BotError or a bug in the hook: stop the strategy's wait, like the handler
            log.error("order_recv_hook raised %r", exc)
            self.handler_error = exc
            return 1
        return 0

    def report_request_timeout(self, asset: int, order) -> int:
        """A request got no answer within the timeout: tell the handler (`Custom(1006)`); 1 if it raised."""
        inst = self.instruments[asset]
        ci = self.connectors.index(inst.connector_name)
        waited_s = (time.time_ns() - int(order["local_timestamp"])) / 1e9
        value = {"symbol": inst.symbol, "order_id": int(order["order_id"]), "req": int(order["req"]),
                 "waited_s": round(waited_s, 3)}
        log.warning("no answer to request %s on %s order %d after %.1f s", value["req"], inst.symbol,
                    value["order_id"], waited_s)
        return 1 if self._on_error(ci, LiveError(ErrorKind.Custom, value, codec.CUSTOM_REQUEST_TIMEOUT)) else 0

    def _drain_latency(self) -> None:
        n = int(self.n_latency[0])
        if n and self.order_recorder is not None:
            for req_ts, exch_ts, resp_ts, req in self.latency[:n]:
                self.order_recorder.record(int(req_ts), int(exch_ts), int(resp_ts), int(req))
        self.n_latency[0] = 0
