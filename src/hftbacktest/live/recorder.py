"""Live recorders: a mid/state change logger, and the order-latency log that closes the loop to backtests.

`OrderLatencyLogger` appends one JSON line per answered request (`req_ts`, `exch_ts`, `resp_ts`, `req`);
`latency_log_to_npz` turns such logs into the file `BacktestAsset().intp_order_latency([...])` reads.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import orjson

from .. import _atomic
from ..errors import DataError
from ..types import CANCELED, NEW, REPLACED, order_latency_dtype, order_latency_req_dtype

log = logging.getLogger("hftbacktest.live")

REQ_NAMES = {NEW: "NEW", CANCELED: "CANCELED", REPLACED: "REPLACED"}
_REQ_CODES = {name: code for code, name in REQ_NAMES.items()}


def _req_code(value) -> int:
    """A logged `req` (a name of REQ_NAMES or a number) as the request code of a latency lane."""
    if isinstance(value, str) and value in _REQ_CODES:
        return _REQ_CODES[value]
    try:
        code = int(value)
    except (TypeError, ValueError):
        code = -1
    if code not in REQ_NAMES:
        raise ValueError(f"unknown request type {value!r}")
    return code


class OrderLatencyLogger:
    """Append-only JSONL log of order round trips; safe to reopen across restarts."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab", buffering=0)
        self.count = 0

    def record(self, req_ts: int, exch_ts: int, resp_ts: int, req: int) -> None:
        line = {"req_ts": int(req_ts), "exch_ts": int(exch_ts), "resp_ts": int(resp_ts), "req": REQ_NAMES.get(int(req), str(int(req)))}
        self._fh.write(orjson.dumps(line) + b"\n")
        self.count += 1

    def close(self) -> None:
        self._fh.close()


def latency_log_to_npz(jsonl_paths: Iterable[str | os.PathLike] | str | os.PathLike, out_npz: str | os.PathLike) -> np.ndarray:
    """Convert order-latency JSONL logs into an IntpOrderLatency `.npz` (rows sorted by `req_ts`).

    Rejections carry `exch_ts = 0`. When the records carry `req`, the rows keep it (`order_latency_req_dtype`:
    one latency lane per request type); a record without it counts for every type (0). Rows whose exchange time
    precedes the request (clock skew) are kept and counted in a warning. Raises DataError naming the file and
    line of a malformed record."""
    if isinstance(jsonl_paths, (str, os.PathLike)):
        jsonl_paths = [jsonl_paths]
    rows = []
    has_req = False
    for path in jsonl_paths:
        with open(path, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = orjson.loads(line)
                    req = _req_code(rec["req"]) if rec.get("req") is not None else 0
                    row = (int(rec["req_ts"]), int(rec["exch_ts"]), int(rec["resp_ts"]), req)
                except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
                    raise DataError(f"{path}:{lineno}: malformed latency record ({exc})") from None
                if row[2] < row[0]:
                    raise DataError(f"{path}:{lineno}: resp_ts {row[2]} precedes req_ts {row[0]}")
                has_req = has_req or row[3] != 0
                rows.append(row)
    if not rows:
        raise DataError(f"no latency records in {', '.join(map(str, jsonl_paths))}")
    arr = np.array(rows, dtype=order_latency_req_dtype if has_req else order_latency_dtype)
    arr = arr[np.argsort(arr["req_ts"], kind="stable")]
    skewed = int(np.count_nonzero((arr["exch_ts"] > 0) & (arr["exch_ts"] < arr["req_ts"])))
    if skewed:
        log.warning("%d of %d latency rows have exch_ts < req_ts (clock skew between this host and the exchange)",
                    skewed, len(arr))
    _atomic.savez(out_npz, data=arr)
    return arr


class LoggingRecorder:
    """`record(hbt)` logs one INFO line per asset whose mid price or state values changed since the last call."""

    def __init__(self, logger: logging.Logger | None = None):
        self.log = logger or log
        self._last: dict[int, tuple] = {}

    def record(self, hbt) -> None:
        for asset in range(hbt.num_assets):
            depth = hbt.depth(asset)
            sv = hbt.state_values(asset)
            bid, ask = depth.best_bid, depth.best_ask
            mid = (bid + ask) / 2.0
            key = (mid, sv.position, sv.balance, sv.fee, sv.num_trades, sv.trading_volume, sv.trading_value)
            if self._last.get(asset) == key:
                continue
            self._last[asset] = key
            digits = max(0, -int(np.floor(np.log10(depth.tick_size)))) if depth.tick_size > 0 else 8
            self.log.info(
                "asset=%d mid=%.*f bid=%.*f ask=%.*f position=%s balance=%s fee=%s num_trades=%d "
                "trading_volume=%s trading_value=%s",
                asset, digits + 1, mid, digits, bid, digits, ask, sv.position, sv.balance, sv.fee, sv.num_trades,
                sv.trading_volume, sv.trading_value,
            )
