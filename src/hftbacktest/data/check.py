"""Checks behind `hftbacktest validate`: converted event arrays and raw feed files."""
from __future__ import annotations

import numpy as np

from ..types import (BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT, LOCAL_EVENT,
                     SELL_EVENT, TRADE_EVENT, event_dtype)
from .quality import replay_book
from .validation import _first_unordered

_SIDED = (DEPTH_EVENT, TRADE_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT)


def check_events(data: np.ndarray) -> list[str]:
    """Problems found in an event array (empty list: fine)."""
    if data.dtype != event_dtype:
        return [f"dtype is {data.dtype}, expected event_dtype"]
    problems = []
    ev = data["ev"]
    for flag, name, field in ((EXCH_EVENT, "exchange", "exch_ts"), (LOCAL_EVENT, "local", "local_ts")):
        i = _first_unordered(ev, data[field], np.uint64(flag))
        if i >= 0:
            problems.append(f"{name} events are out of order at row {i}")
    no_side = (ev & (EXCH_EVENT | LOCAL_EVENT)) == 0
    if np.any(no_side):
        problems.append(f"{int(no_side.sum())} row(s) have neither EXCH_EVENT nor LOCAL_EVENT (first row "
                        f"{int(np.argmax(no_side))})")
    kind = ev & 0xFF
    sided = np.isin(kind, _SIDED)
    both = (ev & (BUY_EVENT | SELL_EVENT)) == (BUY_EVENT | SELL_EVENT)
    neither = (ev & (BUY_EVENT | SELL_EVENT)) == 0
    bad_side = sided & (both | neither)
    if np.any(bad_side):
        problems.append(f"{int(bad_side.sum())} depth/trade row(s) without exactly one side flag (first row "
                        f"{int(np.argmax(bad_side))})")
    depth = np.isin(kind, (DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, TRADE_EVENT))
    bad_px = depth & ~np.isfinite(data["px"])
    if np.any(bad_px):
        problems.append(f"{int(bad_px.sum())} depth/trade row(s) with a non-finite price")
    neg_qty = depth & (data["qty"] < 0)
    if np.any(neg_qty):
        problems.append(f"{int(neg_qty.sum())} row(s) with a negative quantity")
    local = (ev & LOCAL_EVENT) != 0
    idx = np.nonzero(local)[0]
    if len(idx):
        ts = data["local_ts"][idx]
        starts = idx[np.r_[0, np.nonzero(ts[1:] != ts[:-1])[0] + 1]]
        ends = np.r_[starts[1:], len(data)]
        _, _, _, _, crossed, at = replay_book(ev, data["px"], data["qty"], starts, ends, starts, False, 0.0, True, 5)
        if crossed:
            problems.append(f"the local book is crossed after {crossed} timestamp(s) (first rows {at.tolist()})")
    return problems


def summarize_events(data: np.ndarray) -> str:
    kind = data["ev"] & 0xFF
    names = {1: "depth", 2: "trade", 3: "depth_clear", 4: "depth_snapshot", 5: "bbo", 100: "index", 101: "mark",
             102: "funding", 103: "best_bid", 104: "best_ask"}
    counts = ", ".join(f"{names.get(int(k), int(k))} {int(c):,}" for k, c in zip(*np.unique(kind, return_counts=True)))
    span = ""
    if len(data):
        span = f"; local {data['local_ts'].min()} .. {data['local_ts'].max()} ns"
    return f"{len(data):,} rows ({counts}){span}"


def validate_file(path: str, combined_stream: bool = True) -> tuple[bool, str]:
    """(ok, human-readable text) for an .npz/.npy event array or a raw feed file."""
    if path.endswith((".npz", ".npy")):
        try:
            loaded = np.load(path)
            data = loaded["data"] if path.endswith(".npz") else loaded
        except Exception as exc:  # unreadable or not an event file: say so, do not crash
            return False, f"{path}: cannot read event array ({exc})"
        problems = check_events(data)
        text = f"{path}: {summarize_events(data)}" if data.dtype == event_dtype else f"{path}:"
        text += "".join(f"\n  PROBLEM: {p}" for p in problems) or "\n  ok: ordering, flags and book are consistent"
        return not problems, text
    from .collect import sidecar_summary
    from .utils.binancefutures import check_quality

    report = check_quality(path, combined_stream=combined_stream)
    sidecar = sidecar_summary(path)  # a file recorded by `hftbacktest collect`
    return report.ok, report.summary() + (f"\n{sidecar}" if sidecar else "")
