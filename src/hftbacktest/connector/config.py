"""Connector TOML configuration, parsed into a frozen, validated object.

Keys follow hftbacktest's documentation (`stream_url`, `api_url`, `order_prefix`, `api_key`, `secret`)
plus our optional tuning keys. Errors name the offending key; secrets never appear in repr or messages.
"""
from __future__ import annotations

import difflib
import logging
import os
import re
import stat
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .._toml import read_toml
from ..binance.wire import routed_url
from ..errors import ConfigError

log = logging.getLogger(__name__)

_PREFIX_RE = re.compile(r"^[.A-Za-z0-9:/_-]{0,20}$")
_SECRET_KEYS = ("api_key", "secret")
_TABLES = ("paper",)  # read by connector/paper.py


def mask(secret: str) -> str:
    return "***" if secret else ""


@dataclass(frozen=True)
class ConnectorConfig:
    stream_url: str
    api_url: str
    order_prefix: str = ""
    api_key: str = ""
    secret: str = ""
    recv_window_ms: int = 5000
    book_ticker: bool = False
    mark_price: bool = True  # stream `<symbol>@markPrice@1s` on a `/market` connection (hbt.mark_price)
    mark_price_url: str = ""  # that connection; "" = derived from stream_url (binance.wire.routed_url(stream_url, "market"))
    depth_stream: str = "depth@0ms"  # `depth@100ms` is the public alternative
    cancel_on_start: bool = True
    cancel_on_shutdown: bool = False
    adopt_orders: bool = False
    depth_snapshot_limit: int = 1000
    rest_timeout_s: float = 10.0
    hedge_mode_check: bool = True
    critical_after: int = 10
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 60.0
    backoff_reset_s: float = 300.0
    listen_key_keepalive_s: float = 1800.0
    stream_idle_timeout_s: float = 60.0
    max_book_age_s: float = 10.0
    heartbeat_s: float = 1.0
    rate_limit_weight_1m: int = 2400
    rate_limit_orders_10s: int = 300
    rate_limit_orders_1m: int = 1200
    ipc: str = "iceoryx2"
    journal: str = ""  # order journal file (JSONL, connector/journal.py); "" = none
    order_transport: str = "rest"  # "ws": orders over Binance's WebSocket API (`ws_api_url`), REST while it is down
    ws_api_url: str = ""
    user_stream_url: str = ""  # "" = the `/private/ws` route of stream_url's host (websocket-market-streams/Connect)

    def __repr__(self) -> str:  # never show secrets
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            parts.append(f"{f.name}={mask(value)!r}" if f.name in _SECRET_KEYS else f"{f.name}={value!r}")
        return f"ConnectorConfig({', '.join(parts)})"

    __str__ = __repr__

    @property
    def user_stream_base(self) -> str:
        """Where the user data stream connects (`<this>/<listenKey>`): Binance serves listen keys on `/private`."""
        return self.user_stream_url.rstrip("/") or routed_url(self.stream_url, "private")

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key and self.secret)

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], source: str = "<config>") -> "ConnectorConfig":
        known = {f.name: f for f in fields(cls)}
        for key in raw:  # every value is a scalar, except the tables other modules read (_TABLES)
            if key not in known and key not in _TABLES:
                close = difflib.get_close_matches(key, [*known, *_TABLES], 1)
                hint = f", did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{source}: unknown key {key!r}{hint} (accepted: {', '.join([*known, *_TABLES])})")
        values: dict[str, Any] = {}
        for name, f in known.items():
            if name not in raw:
                continue
            value = raw[name]
            expected = f.type if isinstance(f.type, str) else f.type.__name__
            ok = {
                "str": isinstance(value, str),
                "bool": isinstance(value, bool),
                "int": isinstance(value, int) and not isinstance(value, bool),
                "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            }[expected]
            if not ok:
                shown = "<hidden>" if name in _SECRET_KEYS else repr(value)
                raise ConfigError(f"{source}: key {name!r} must be a {expected}, got {shown}")
            values[name] = float(value) if expected == "float" else value
        for required in ("stream_url", "api_url"):
            if not values.get(required):
                raise ConfigError(f"{source}: required key {required!r} is missing or empty")
        cfg = cls(**values)
        cfg._validate(source)
        return cfg

    def _validate(self, source: str) -> None:
        if not self.stream_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"{source}: key 'stream_url' must start with ws:// or wss://, got {self.stream_url!r}")
        for key in ("user_stream_url", "mark_price_url"):
            url = getattr(self, key)
            if url and not url.startswith(("ws://", "wss://")):
                raise ConfigError(f"{source}: key '{key}' must start with ws:// or wss://, got {url!r}")
        if not self.api_url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: key 'api_url' must start with http:// or https://, got {self.api_url!r}")
        if not _PREFIX_RE.match(self.order_prefix):
            raise ConfigError(
                f"{source}: key 'order_prefix' must match [.A-Za-z0-9:/_-]{{0,20}} (Binance client id rule), "
                f"got {self.order_prefix!r}"
            )
        if self.adopt_orders and not self.order_prefix:
            raise ConfigError(f"{source}: key 'adopt_orders' needs an 'order_prefix' (it tells our orders from others')")
        if bool(self.api_key) != bool(self.secret):
            raise ConfigError(f"{source}: keys 'api_key' and 'secret' must be given together")
        if not 0 < self.recv_window_ms <= 60000:
            raise ConfigError(f"{source}: key 'recv_window_ms' must be in 1..60000")
        if self.depth_snapshot_limit not in (5, 10, 20, 50, 100, 500, 1000):
            raise ConfigError(f"{source}: key 'depth_snapshot_limit' must be one of 5,10,20,50,100,500,1000")
        if self.depth_stream not in ("depth@0ms", "depth@100ms", "depth@250ms", "depth@500ms", "depth"):
            raise ConfigError(f"{source}: key 'depth_stream' must be depth@0ms, depth@100ms, depth@250ms or depth@500ms")
        if self.ipc != "iceoryx2":
            raise ConfigError(f"{source}: key 'ipc' must be 'iceoryx2' (the only transport offered)")
        if self.order_transport not in ("rest", "ws"):
            raise ConfigError(f"{source}: key 'order_transport' must be 'rest' or 'ws', got {self.order_transport!r}")
        if self.order_transport == "ws" and not self.ws_api_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"{source}: key 'ws_api_url' (needed by order_transport = 'ws') must start with ws:// "
                              f"or wss://, got {self.ws_api_url!r}")
        for name in ("rest_timeout_s", "backoff_initial_s", "backoff_max_s", "heartbeat_s", "stream_idle_timeout_s",
                     "listen_key_keepalive_s", "max_book_age_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{source}: key {name!r} must be positive")
        if self.critical_after < 1:
            raise ConfigError(f"{source}: key 'critical_after' must be >= 1")


def load_config(path: str | os.PathLike) -> ConnectorConfig:
    p = Path(path)
    cfg = ConnectorConfig.from_mapping(read_toml(p), str(p))
    if cfg.has_credentials:
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            log.warning("%s holds API credentials but is readable by others (mode %o); chmod 600 it", p, mode)
    return cfg
