"""Event record layout, flag constants and enumerations shared by every layer.

The numeric values match hftbacktest 2.x exactly, so `.npz` files and user code are interchangeable.
This module has no numba and no I/O; everything else imports from here.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

# --- event kinds (low byte of `ev`) -------------------------------------------------------------
DEPTH_EVENT = 1
TRADE_EVENT = 2
DEPTH_CLEAR_EVENT = 3
DEPTH_SNAPSHOT_EVENT = 4
DEPTH_BBO_EVENT = 5
ADD_ORDER_EVENT = 10
CANCEL_ORDER_EVENT = 11
MODIFY_ORDER_EVENT = 12
FILL_EVENT = 13

# --- flag bits -----------------------------------------------------------------------------------
EXCH_EVENT = 1 << 31
LOCAL_EVENT = 1 << 30
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28

EVENT_KIND_MASK = 0xFF

UNTIL_END_OF_DATA = 9223372036854775807  # i64::MAX
INVALID_MIN = -9223372036854775808  # i64::MIN: "no best bid"
INVALID_MAX = 9223372036854775807  # i64::MAX: "no best ask" / "no event"
ALL_ASSETS = -1
WAIT_ORDER_RESPONSE_NONE = -1
WAIT_ORDER_RESPONSE_ANY = -2

# --- custom event ids emitted by the Binance converter (no side flag) ----------------------------
INDEX_PRICE_EVENT = 100
MARK_PRICE_EVENT = 101
FUNDING_RATE_EVENT = 102
BEST_BID_EVENT = 103
BEST_ASK_EVENT = 104
# live only (connector -> bot): a funding fee the exchange charged, px = amount paid (negative: received)
FUNDING_FEE_EVENT = 105

# --- order enumerations --------------------------------------------------------------------------
BUY = 1
SELL = -1
NONE = 0

NEW = 1
EXPIRED = 2
FILLED = 3
CANCELED = 4
PARTIALLY_FILLED = 5
REJECTED = 6
REPLACED = 7
UNSUPPORTED = 255

GTC = 0
GTX = 1
FOK = 2
IOC = 3

LIMIT = 0
MARKET = 1


class Side(IntEnum):
    BUY = BUY
    SELL = SELL
    NONE = NONE


class Status(IntEnum):
    NONE = NONE
    NEW = NEW
    EXPIRED = EXPIRED
    FILLED = FILLED
    CANCELED = CANCELED
    PARTIALLY_FILLED = PARTIALLY_FILLED
    REJECTED = REJECTED
    REPLACED = REPLACED
    UNSUPPORTED = UNSUPPORTED


class TimeInForce(IntEnum):
    GTC = GTC
    GTX = GTX
    FOK = FOK
    IOC = IOC


class OrdType(IntEnum):
    LIMIT = LIMIT
    MARKET = MARKET


class ReturnCode(IntEnum):
    """Integer codes returned by elapse/wait/submit/modify/cancel (same values as hftbacktest 2.x; 16-19 are the
    live bot's, CLOSED is ours). The kernels and the live bot take their constants from here."""

    OK = 0
    END_OF_DATA = 1
    MARKET_FEED = 2
    ORDER_RESPONSE = 3
    ORDER_ID_EXIST = 10
    ORDER_REQUEST_IN_PROCESS = 11
    ORDER_NOT_FOUND = 12
    INVALID_ORDER_REQUEST = 13
    INVALID_ORDER_STATUS = 14
    END_OF_DATA_ERROR = 15
    INSTRUMENT_NOT_FOUND = 16
    TIMEOUT = 17
    INTERRUPTED = 18
    CUSTOM = 19
    CLOSED = 20  # the bot was closed: no operation advances time or sends orders any more
    DATA_ERROR = 100


# --- record dtypes -------------------------------------------------------------------------------
event_dtype = np.dtype(
    [
        ("ev", "u8"),
        ("exch_ts", "i8"),
        ("local_ts", "i8"),
        ("px", "f8"),
        ("qty", "f8"),
        ("order_id", "u8"),
        ("ival", "i8"),
        ("fval", "f8"),
    ],
    align=True,
)

state_values_dtype = np.dtype(
    [
        ("position", "f8"),
        ("balance", "f8"),
        ("fee", "f8"),
        ("num_trades", "i8"),
        ("trading_volume", "f8"),
        ("trading_value", "f8"),
    ],
    align=True,
)

order_dtype = np.dtype(
    [
        ("qty", "f8"),
        ("leaves_qty", "f8"),
        ("exec_qty", "f8"),
        ("exec_price_tick", "i8"),
        ("price_tick", "i8"),
        ("tick_size", "f8"),
        ("exch_timestamp", "i8"),
        ("local_timestamp", "i8"),
        ("order_id", "u8"),
        ("_q1", "u8"),
        ("_q2", "u8"),
        ("maker", "bool"),
        ("order_type", "u1"),
        ("req", "u1"),
        ("status", "u1"),
        ("side", "i1"),
        ("time_in_force", "u1"),
    ],
    align=True,
)

record_dtype = np.dtype(
    [
        ("timestamp", "i8"),
        ("price", "f8"),
        ("position", "f8"),
        ("balance", "f8"),
        ("fee", "f8"),
        ("num_trades", "i8"),
        ("trading_volume", "f8"),
        ("trading_value", "f8"),
    ],
    align=True,
)

# Recorded order latency rows (what `intp_order_latency` reads).
order_latency_dtype = np.dtype(
    [("req_ts", "i8"), ("exch_ts", "i8"), ("resp_ts", "i8"), ("_padding", "i8")],
    align=True,
)
# The same rows with the request type (NEW, CANCELED, REPLACED; 0 any) in place of the padding: one latency lane
# per request type (kernels/perp.py).
order_latency_req_dtype = np.dtype(
    [("req_ts", "i8"), ("exch_ts", "i8"), ("resp_ts", "i8"), ("req", "i8")],
    align=True,
)

EVENT_ARRAY = NDArray[Any]
