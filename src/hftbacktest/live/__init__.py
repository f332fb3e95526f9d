"""Live trading: build a bot that runs the backtest's `@njit` strategy against a running connector.

    hbt = (LiveBotBuilder()
           .register(Instrument("bf", "btcusdt", 0.1, 0.001, HashMapMarketDepth(0.1, 0.001), 0))
           .error_handler(on_error)
           .order_recorder(OrderLatencyLogger("latency.jsonl"))
           .build())
    strategy(hbt)   # the same @njit function the backtest runs
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError
from .ipc.codec import ErrorKind
from .recorder import LoggingRecorder, OrderLatencyLogger, latency_log_to_npz
from .runtime import BotError, LiveError

__all__ = [
    "LiveBotBuilder", "Instrument", "HashMapMarketDepth", "ROIVectorMarketDepth", "ErrorKind", "LiveError",
    "BotError", "LoggingRecorder", "OrderLatencyLogger", "latency_log_to_npz", "LiveInstrument",
    "HashMapMarketDepthLiveBot", "ROIVectorMarketDepthLiveBot",
]

_HASHMAP, _ROI = 0, 1  # kernels.depth modes


@dataclass(frozen=True)
class HashMapMarketDepth:
    tick_size: float
    lot_size: float
    _mode = _HASHMAP


@dataclass(frozen=True)
class ROIVectorMarketDepth:
    tick_size: float
    lot_size: float
    roi_lb: float
    roi_ub: float
    _mode = _ROI


@dataclass(frozen=True)
class Instrument:
    connector_name: str
    symbol: str
    tick_size: float
    lot_size: float
    depth: HashMapMarketDepth | ROIVectorMarketDepth | None = None
    last_trades_capacity: int = 0

    def __post_init__(self):
        if not self.connector_name or "/" in self.connector_name:
            raise ConfigError(f"Instrument.connector_name {self.connector_name!r} must be non-empty without '/'")
        if not self.symbol:
            raise ConfigError("Instrument.symbol must be non-empty")
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"Instrument {self.symbol}: {name} must be a positive number, got {value!r}")
        if self.last_trades_capacity < 0:
            raise ConfigError(f"Instrument {self.symbol}: last_trades_capacity must be >= 0")


class LiveBotBuilder:
    """Mirrors the Rust `LiveBotBuilder`: register instruments, set handlers, then `build()`."""

    def __init__(self):
        self._instruments: list[Instrument] = []
        self._error_handler: Callable[[LiveError], Any] | None = None
        self._order_recorder = None
        self._id: int | None = None
        self._idle_sleep = True
        self._order_recv_hook: Callable | None = None
        self._request_timeout_s = 60.0

    def register(self, instrument: Instrument) -> "LiveBotBuilder":
        self._instruments.append(instrument)
        return self

    def error_handler(self, fn: Callable[[LiveError], Any]) -> "LiveBotBuilder":
        self._error_handler = fn
        return self

    def order_recorder(self, recorder) -> "LiveBotBuilder":
        """Anything with `record(req_ts, exch_ts, resp_ts, req)`, e.g. `OrderLatencyLogger(path)`."""
        self._order_recorder = recorder
        return self

    def order_recv_hook(self, fn: Callable[[Any, Any], Any]) -> "LiveBotBuilder":
        """`fn(prev, new)`, called for every order update of an order the bot knows, before the bot's state is
        updated (`prev` is the bot's copy, `new` what arrived). Raising stops the running wait with code 19."""
        self._order_recv_hook = fn
        return self

    def request_timeout(self, seconds: float) -> "LiveBotBuilder":
        """A request unanswered this long is given up: the order's `req` is cleared and the error handler gets
        `Custom(1006)` (default 60 s). Also the longest wait of `submit_*/modify/cancel(..., wait=True)`."""
        if not seconds > 0:
            raise ConfigError(f"LiveBotBuilder.request_timeout must be positive, got {seconds!r}")
        self._request_timeout_s = float(seconds)
        return self

    def id(self, bot_id: int) -> "LiveBotBuilder":
        self._id = bot_id
        return self

    def busy_poll(self, enabled: bool = True) -> "LiveBotBuilder":
        """Never sleep while idle (lowest latency, one core at 100 %). Default: short sleeps after 10 ms idle."""
        self._idle_sleep = not enabled
        return self

    def build(self):
        from .bot import new_live_bot
        from .runtime import LiveRuntime

        if not self._instruments:
            raise ConfigError("LiveBotBuilder: register at least one Instrument")
        normalised = []
        seen = set()
        for inst in self._instruments:
            # Binance stream names are lowercase; normalise so either spelling works.
            inst = Instrument(inst.connector_name, inst.symbol.lower(), inst.tick_size, inst.lot_size, inst.depth,
                              inst.last_trades_capacity)
            key = (inst.connector_name, inst.symbol)
            if key in seen:
                raise ConfigError(f"Duplicate instrument {inst.symbol!r} on connector {inst.connector_name!r}")
            seen.add(key)
            normalised.append(inst)
        bot_id = self._id if self._id is not None else random.getrandbits(63) + 1
        depth_modes = []
        for inst in normalised:
            depth = inst.depth or HashMapMarketDepth(inst.tick_size, inst.lot_size)
            roi = (depth.roi_lb, depth.roi_ub) if isinstance(depth, ROIVectorMarketDepth) else (0.0, 0.0)
            depth_modes.append((depth._mode, *roi))
        rt = LiveRuntime(normalised, bot_id, self._error_handler, self._order_recorder, self._idle_sleep,
                         self._order_recv_hook, self._request_timeout_s)
        try:
            return new_live_bot(normalised, depth_modes, rt)
        except Exception:
            rt.close()
            raise


class LiveInstrument:
    """Python-binding style instrument builder: `LiveInstrument().connector("bf").symbol("btcusdt")...`."""

    def __init__(self):
        self._c = self._s = None
        self._tick = self._lot = None
        self._cap = 0
        self._roi: tuple[float, float] | None = None

    def connector(self, name: str) -> "LiveInstrument":
        self._c = name
        return self

    def symbol(self, symbol: str) -> "LiveInstrument":
        self._s = symbol
        return self

    def tick_size(self, v: float) -> "LiveInstrument":
        self._tick = v
        return self

    def lot_size(self, v: float) -> "LiveInstrument":
        self._lot = v
        return self

    def last_trades_capacity(self, n: int) -> "LiveInstrument":
        self._cap = n
        return self

    def roi_lb(self, v: float) -> "LiveInstrument":
        self._roi = (v, self._roi[1] if self._roi else v)
        return self

    def roi_ub(self, v: float) -> "LiveInstrument":
        self._roi = (self._roi[0] if self._roi else v, v)
        return self

    def _instrument(self, roi: bool) -> Instrument:
        for name, v in (("connector", self._c), ("symbol", self._s), ("tick_size", self._tick), ("lot_size", self._lot)):
            if v is None:
                raise ConfigError(f"LiveInstrument: {name} is not set")
        depth = (ROIVectorMarketDepth(self._tick, self._lot, *self._roi) if roi and self._roi
                 else HashMapMarketDepth(self._tick, self._lot))
        if roi and not self._roi:
            raise ConfigError(f"LiveInstrument {self._s}: roi_lb/roi_ub are required for ROIVectorMarketDepthLiveBot")
        return Instrument(self._c, self._s, self._tick, self._lot, depth, self._cap)


def HashMapMarketDepthLiveBot(instruments: list[LiveInstrument], error_handler=None, order_recorder=None):
    builder = LiveBotBuilder()
    for inst in instruments:
        builder.register(inst._instrument(False))
    return builder.error_handler(error_handler).order_recorder(order_recorder).build()


def ROIVectorMarketDepthLiveBot(instruments: list[LiveInstrument], error_handler=None, order_recorder=None):
    builder = LiveBotBuilder()
    for inst in instruments:
        builder.register(inst._instrument(True))
    return builder.error_handler(error_handler).order_recorder(order_recorder).build()
