"""Hand-built event arrays for the engine tests."""
from __future__ import annotations

import numpy as np

from hftbacktest.types import (
    BUY_EVENT,
    DEPTH_EVENT,
    EXCH_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    event_dtype,
)

BOTH = EXCH_EVENT | LOCAL_EVENT


def rows(*items):
    """items: (ev, exch_ts, local_ts, px, qty)."""
    out = np.zeros(len(items), event_dtype)
    for i, (ev, ets, lts, px, qty) in enumerate(items):
        out[i] = (ev, ets, lts, px, qty, 0, 0, 0.0)
    return out


def bid(ts, px, qty, lts=None):
    return (BOTH | BUY_EVENT | DEPTH_EVENT, ts, ts if lts is None else lts, px, qty)


def ask(ts, px, qty, lts=None):
    return (BOTH | SELL_EVENT | DEPTH_EVENT, ts, ts if lts is None else lts, px, qty)


def sell_trade(ts, px, qty):
    return (BOTH | SELL_EVENT | TRADE_EVENT, ts, ts, px, qty)


def buy_trade(ts, px, qty):
    return (BOTH | BUY_EVENT | TRADE_EVENT, ts, ts, px, qty)
