"""Binance "historical market data" CSV files (book depth and trades) → event arrays, as hftbacktest 2.4.4.

Reference quirks kept for identical output: timestamps stay in milliseconds, `is_buyer_maker` is tested as a
string (so every trade with a non-empty value is a SELL), snapshot rows are ordered by quantity.
"""
from __future__ import annotations

import csv
from typing import Optional

import numpy as np
from numpy.typing import NDArray

from ... import _atomic
from ...errors import DataQualityError
from ...types import BUY_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, SELL_EVENT, TRADE_EVENT, event_dtype
from ..quality import bad_values, value_problem
from ..validation import correct_event_order, correct_local_timestamp, validate_event_order

_DEPTH_COLUMNS = ["symbol", "timestamp", "trans_id", "first_update_id", "last_update_id", "side", "update_type",
                  "price", "qty"]
_TRADE_COLUMNS = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker"]


def _rows(path: str, has_header: Optional[bool], first_cell: str, default_columns: list[str]):
    """Yield (column index by name, row, line number) for every data row; the header is detected from the first
    cell."""
    print("Reading %s" % path)
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter=",")
        columns = None
        for row in reader:
            if columns is None:
                if has_header is None:
                    has_header = row[0] == first_cell
                if has_header:
                    columns = {name: i for i, name in enumerate(row)}
                    continue
                if len(row) != len(default_columns):
                    raise DataQualityError(f"expected {len(default_columns)} columns "
                                           f"({','.join(default_columns)}), got {len(row)}", path=path, line=1)
                columns = {name: i for i, name in enumerate(default_columns)}
            yield columns, row, reader.line_num


def _read(path: str, has_header: Optional[bool], first_cell: str, default_columns: list[str], row_of) -> list[tuple]:
    """The file's event rows, `row_of(columns, row)` each; a missing field or one that is not a number a feed
    may hold (see quality.bad_values) is a DataQualityError naming path:line."""
    rows, lines = [], []
    for c, row, line in _rows(path, has_header, first_cell, default_columns):
        try:
            rows.append(row_of(c, row))
        except (ValueError, IndexError, KeyError) as exc:
            what = "bad number" if isinstance(exc, ValueError) else "missing field"
            raise DataQualityError(f"{what} ({exc})", path=path, line=line) from None
        lines.append(line)
    a = _to_array(rows)
    bad = np.flatnonzero(bad_values(a["ev"], a["px"], a["qty"]))
    if len(bad):
        i = int(bad[0])
        raise DataQualityError(value_problem(int(a["ev"][i]), a["px"][i], a["qty"][i]), path=path, line=lines[i])
    return rows


def _to_array(rows: list[tuple]) -> NDArray:
    out = np.zeros(len(rows), event_dtype)
    if rows:
        arr = np.array(rows, dtype=object)
        out["ev"] = arr[:, 0].astype(np.uint64)
        out["exch_ts"] = arr[:, 1].astype(np.int64)
        out["local_ts"] = np.array([r[2] for r in rows], dtype=np.float64).astype(np.int64) \
            if any(isinstance(r[2], float) for r in rows) else arr[:, 2].astype(np.int64)
        out["px"] = arr[:, 3].astype(np.float64)
        out["qty"] = arr[:, 4].astype(np.float64)
    return out


def convert(
    depth_filename: str,
    trades_filename: str,
    output_filename: Optional[str] = None,
    buffer_size: int = 100_000_000,
    feed_latency: float = 0,
    base_latency: float = 0,
    depth_has_header: Optional[bool] = None,
    trades_has_header: Optional[bool] = None,
) -> NDArray:
    """Depth CSV + trades CSV → corrected, ordered event array (depth rows first, then trades, before ordering).

    Timestamps are the files' milliseconds; `local_ts = exch_ts + feed_latency`. `buffer_size` is accepted for
    compatibility (storage grows as needed).
    """
    del buffer_size
    def depth(c, row):
        exch = int(row[c["timestamp"]])
        side = BUY_EVENT if row[c["side"]] == "b" else SELL_EVENT
        return DEPTH_EVENT | side, exch, exch + feed_latency, float(row[c["price"]]), float(row[c["qty"]])

    def trade(c, row):
        exch = int(row[c["time"]])
        side = SELL_EVENT if row[c["is_buyer_maker"]] else BUY_EVENT  # a string: "false" is truthy (reference)
        return TRADE_EVENT | side, exch, exch + feed_latency, float(row[c["price"]]), float(row[c["qty"]])

    rows = _read(depth_filename, depth_has_header, "symbol", _DEPTH_COLUMNS, depth) \
        + _read(trades_filename, trades_has_header, "id", _TRADE_COLUMNS, trade)
    print("Correcting the latency")
    tmp = correct_local_timestamp(_to_array(rows), base_latency)
    print("Correcting the event order")
    data = correct_event_order(tmp, np.argsort(tmp["exch_ts"], kind="mergesort"),
                               np.argsort(tmp["local_ts"], kind="mergesort"))
    validate_event_order(data)
    if output_filename is not None:
        print("Saving to %s" % output_filename)
        _atomic.savez(output_filename, data=data)
    return data


def convert_snapshot(
    snapshot_filename: str,
    output_filename: Optional[str] = None,
    feed_latency: float = 0,
    has_header: Optional[bool] = None,
    ss_buffer_size: int = 1_000_000,
) -> NDArray:
    """Depth CSV → DEPTH_SNAPSHOT rows (every row, bids then asks, ordered by quantity as the reference does)."""
    del ss_buffer_size

    def level(c, row):
        exch = int(row[c["timestamp"]])
        side = BUY_EVENT if row[c["side"]] == "b" else SELL_EVENT
        return DEPTH_SNAPSHOT_EVENT | side, exch, exch + feed_latency, float(row[c["price"]]), float(row[c["qty"]])

    rows = _read(snapshot_filename, has_header, "symbol", _DEPTH_COLUMNS, level)
    bids = [r for r in rows if r[0] & BUY_EVENT]
    asks = [r for r in rows if not r[0] & BUY_EVENT]
    ordered = sorted(bids, key=lambda r: r[4], reverse=True) + sorted(asks, key=lambda r: r[4])
    data = _to_array(ordered)
    if output_filename is not None:
        _atomic.savez(output_filename, compressed=False, data=data)
    return data
