"""Fault injection: named fault kinds armed from the CLI, the Python API or `POST /_emu/fault`.

Every fault accepts the common parameters
  `count` — how many times it fires before disarming (default: 1 for one-shot kinds, unlimited for continuous ones),
  `every` — fire on every N-th opportunity only (default 1), `prob` — firing probability (seeded RNG, default 1),
  `channel` — `market`, `user` or `all` (WebSocket kinds), `path` — REST path prefix filter (REST kinds).
Each arming and each firing is logged (logger `hftbacktest.emulator`) and kept in `FaultInjector.log`.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from .._toml import read_toml
from ..errors import ConfigError

log = logging.getLogger("hftbacktest.emulator")

# kind -> (continuous?, default params, what it does)
FAULT_KINDS: dict[str, tuple[bool, dict, str]] = {
    "ws_drop": (False, {"channel": "all", "after": 0, "refuse_s": 0.0},
                "close WebSocket connections after `after` more messages; refuse reconnects for `refuse_s`"),
    "ws_api_drop": (False, {}, "execute the next WebSocket API request, then close its connection without replying"),
    "ws_half_open": (False, {"channel": "all", "after": 0},
                     "stop sending data and answering pings on WebSocket connections while keeping TCP open"),
    "ws_delay": (True, {"channel": "all", "ms": 100.0, "jitter_ms": 0.0}, "delay every WebSocket push"),
    "ws_reorder": (True, {"channel": "all"}, "swap consecutive WebSocket messages pairwise"),
    "ws_duplicate": (True, {"channel": "all"}, "send WebSocket messages twice"),
    "ws_malformed": (False, {"channel": "all"}, "send a truncated, invalid-JSON frame instead of a message"),
    "ws_unknown_event": (False, {"channel": "all"}, "push an event of a type clients do not know"),
    "depth_gap": (False, {}, "drop one diff-depth message so the U/u/pu chain breaks"),
    "stale_snapshot": (False, {"lag": 1000}, "REST depth snapshot whose lastUpdateId is `lag` ids too old"),
    "rest_5xx": (False, {"status": 503, "when": "before", "path": ""},
                 "HTTP 5xx 'execution status unknown'; when=after executes the request first"),
    "rest_timeout": (False, {"seconds": 30.0, "when": "before", "path": ""},
                     "hold a REST request without answering (when=after executes it first)"),
    "rest_delay": (True, {"ms": 100.0, "jitter_ms": 0.0, "path": ""}, "delay REST replies"),
    "rest_429": (False, {"retry_after": 1, "path": ""}, "HTTP 429 -1003 with Retry-After"),
    "rest_418": (False, {"retry_after": 5, "path": ""}, "HTTP 418 IP ban with Retry-After"),
    "rest_error": (False, {"code": -1008, "msg": "", "status": 400, "path": ""},
                   "a Binance error body (e.g. -1021 clock jump, -1008 overloaded, -1015 too many orders)"),
    "clock_skew": (True, {"ms": 2000.0}, "shift the server clock (time endpoint, E/T fields, -1021 checks)"),
    "listen_key_expire": (False, {}, "expire listen keys now: push listenKeyExpired and close user streams"),
    "listen_key_keepalive_fail": (False, {}, "PUT /fapi/v1/listenKey answers -1125"),
    "order_reject": (False, {"code": -2019, "msg": "Margin is insufficient.", "status": 400},
                     "reject the next new orders with a Binance error"),
    "unknown_enum": (False, {}, "send the next order update with status EXPIRED_IN_MATCH"),
    "insurance_fund_trade": (False, {}, "publish a trade with X=INSURANCE_FUND on the trade streams"),
    "external_order": (False, {"symbol": "", "api_key": ""},
                       "an order with a foreign client id (placed and filled by 'another tool')"),
    "liquidation": (False, {"symbol": "", "api_key": ""},
                    "an autoclose-* liquidation fill that flattens the account's position"),
}
COMMON = {"count": None, "every": 1, "prob": 1.0}


@dataclass
class Fault:
    kind: str
    params: dict
    remaining: int | None
    every: int
    prob: float
    seen: int = 0
    fired: int = 0


@dataclass
class FaultInjector:
    seed: int = 0
    faults: list[Fault] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def add(self, kind: str, **params) -> Fault:
        if kind not in FAULT_KINDS:
            raise ConfigError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
        continuous, defaults, _ = FAULT_KINDS[kind]
        unknown = set(params) - set(defaults) - set(COMMON)
        if unknown:
            raise ConfigError(f"fault {kind!r}: unknown parameter(s) {sorted(unknown)}; "
                              f"accepted: {sorted(set(defaults) | set(COMMON))}")
        merged = {**defaults, **{k: v for k, v in params.items() if k not in COMMON}}
        for key, default in defaults.items():
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                try:
                    merged[key] = type(default)(merged[key])
                except (TypeError, ValueError):
                    raise ConfigError(f"fault {kind!r}: parameter {key!r} must be a number") from None
        count = params.get("count", None if continuous else 1)
        fault = Fault(kind, merged, None if count in (None, -1) else int(count), max(1, int(params.get("every", 1))),
                      float(params.get("prob", 1.0)))
        self.faults.append(fault)
        self._log(kind, "armed", merged)
        return fault

    def clear(self, kind: str | None = None) -> None:
        self.faults = [f for f in self.faults if kind is not None and f.kind != kind]
        self._log(kind or "*", "cleared", {})

    def armed(self, kind: str, **ctx) -> dict | None:
        """Parameters of an armed fault matching `ctx`. Continuous kinds act through this call: their first
        use is logged as fired; one-shot kinds are only consumed by `fire`."""
        for f in self.faults:
            if f.kind == kind and self._matches(f, ctx):
                if FAULT_KINDS[kind][0] and f.fired == 0:
                    f.fired = 1
                    self._log(kind, "fired", {**f.params, **ctx})
                return f.params
        return None

    def fire(self, kind: str, **ctx) -> dict | None:
        """Consume one opportunity for `kind`; returns the fault's parameters when it fires now."""
        if not self.faults:
            return None
        for f in self.faults:
            if f.kind != kind or not self._matches(f, ctx):
                continue
            f.seen += 1
            if f.seen % f.every or (f.prob < 1.0 and self.rng.random() >= f.prob):
                continue
            f.fired += 1
            if f.remaining is not None:
                f.remaining -= 1
                if f.remaining <= 0:
                    self.faults.remove(f)
            if not FAULT_KINDS[kind][0] or f.fired == 1:
                self._log(kind, "fired", {**f.params, **ctx})
            return f.params
        return None

    @staticmethod
    def _matches(f: Fault, ctx: dict) -> bool:
        channel = f.params.get("channel")
        if channel and channel != "all" and ctx.get("channel") not in (None, channel):
            return False
        path = f.params.get("path")
        if path and not str(ctx.get("path", "")).startswith(path):
            return False
        return True

    def _log(self, kind: str, what: str, detail: dict) -> None:
        entry = {"time": time.time(), "kind": kind, "what": what, "detail": detail}
        self.log.append(entry)
        if len(self.log) > 10_000:
            del self.log[:5_000]
        log.warning("fault %s %s %s", kind, what, detail)


def _scalar(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_fault_spec(spec: str) -> list[tuple[str, dict]]:
    """`kind[:k=v,k=v][;kind...]` inline, or a TOML file with `[faults.<kind>]` tables (or `[[faults]]` with `kind`)."""
    path = Path(spec)
    if spec.endswith(".toml") or path.is_file():
        doc = read_toml(path, "fault")
        faults = doc.get("faults", {})
        if isinstance(faults, list):
            out = []
            for i, entry in enumerate(faults):
                if "kind" not in entry:
                    raise ConfigError(f"{spec}: [[faults]] entry {i} has no 'kind'")
                entry = dict(entry)
                out.append((entry.pop("kind"), entry))
            return out
        return [(kind, dict(params)) for kind, params in faults.items()]
    out = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        kind, _, rest = part.partition(":")
        params = {}
        for item in filter(None, (x.strip() for x in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise ConfigError(f"fault spec {part!r}: expected key=value, got {item!r}")
            params[key.strip()] = _scalar(value.strip())
        out.append((kind.strip(), params))
    return out
