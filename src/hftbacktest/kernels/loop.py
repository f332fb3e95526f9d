"""The event loop: one clock over every asset's local/exchange data and order buses, plus the
public operations (elapse, wait_*, submit/modify/cancel) as cached kernels the bot object forwards to.

Data files are switched lazily: when a processor exhausts its chunk, `_next_chunk` leaves nopython mode through
`objmode` to ask the Python feed (registered in FEEDS under the engine's key) for the next array.
"""
from __future__ import annotations

import sys

import numpy as np
from numba import njit, objmode

from .._numba_tricks.borrow import borrowed
from ..types import BUY, EXCH_EVENT, LOCAL_EVENT, SELL, ReturnCode, event_dtype
from . import exchange as xp
from . import local as lp
from . import orders as ob
from . import perp
from .abi import (
    FN_CANCEL,
    FN_CLEAR_INACTIVE,
    FN_CLOSE,
    FN_ELAPSE,
    FN_GOTO_END,
    FN_MODIFY,
    FN_SUBMIT_BUY,
    FN_SUBMIT_SELL,
    FN_TABLE_FIND,
    FN_WAIT_NEXT_FEED,
    FN_WAIT_ORDER_RESPONSE,
    struct_from_ptr,
)
from .numeric import I64_MAX, I64_MIN
from .orders import table_type
from .state import asset, data_array_type, engine_type

OK = int(ReturnCode.OK)
END_OF_DATA = int(ReturnCode.END_OF_DATA)
MARKET_FEED = int(ReturnCode.MARKET_FEED)
ORDER_RESPONSE = int(ReturnCode.ORDER_RESPONSE)
CLOSED = int(ReturnCode.CLOSED)
INVALID_ORDER_REQUEST = int(ReturnCode.INVALID_ORDER_REQUEST)
DATA_ERROR = int(ReturnCode.DATA_ERROR)

WAIT_NONE = 0
WAIT_ID = 1
WAIT_ANY = 2

FEEDS: dict = {}  # engine key -> feed object with .chunk(asset, which, index) -> read-only event array
_EMPTY = np.zeros(0, event_dtype)
_EMPTY.flags.writeable = False


def _load_chunk(key, asset, which, index):
    feed = FEEDS[key]
    try:
        return feed.chunk(asset, which, index), 0
    except Exception as exc:  # surfaced as code 100 like the reference, message kept on the feed
        feed.error = exc
        print(f"hftbacktest: data error: {exc}", file=sys.stderr)
        return _EMPTY, DATA_ERROR


@njit(cache=True, error_model="numpy")
def _next_chunk(key, asset, which, index):
    with objmode(arr=data_array_type, rc="int64"):
        arr, rc = _load_chunk(key, asset, which, index)
    return arr, rc


@njit(cache=True, error_model="numpy")
def _switch_chunk(e, a, s, which):
    """Give processor `which` (0 local, 1 exchange) its next chunk; False at the end of the data or on a data
    error (then e.error is set). Owning: it replaces s.data_l / s.data_x."""
    index = (s.file_l if which == 0 else s.file_x) + 1
    if index >= s.nfiles:
        return False
    arr, rc = _next_chunk(e.key, a, which, index)
    if rc != 0:
        e.error = rc
        return False
    if which == 0:
        s.file_l = index
        s.data_l = arr
        s.pos_l = 0
    else:
        s.file_x = index
        s.data_x = arr
        s.pos_x = 0
    return True


@borrowed
def _seek_local(e, a, s):
    """Position the local cursor on its next LOCAL row (from pos_l); returns that row's local_ts or I64_MAX."""
    while True:
        data = s.data_l
        n = data.shape[0]
        p = s.pos_l
        while p < n:
            if np.int64(data[p].ev) & LOCAL_EVENT:
                s.pos_l = p
                return data[p].local_ts
            p += 1
        s.pos_l = p
        if not _switch_chunk(e, a, s, np.int64(0)):
            return I64_MAX


@borrowed
def _seek_exch(e, a, s):
    while True:
        data = s.data_x
        n = data.shape[0]
        p = s.pos_x
        while p < n:
            if np.int64(data[p].ev) & EXCH_EVENT:
                s.pos_x = p
                return data[p].exch_ts
            p += 1
        s.pos_x = p
        if not _switch_chunk(e, a, s, np.int64(1)):
            return I64_MAX


@borrowed
def initialize(e):
    """First elapse/wait: place every cursor on its first row; cur_ts = the earliest timestamp."""
    slots = e.slots
    for a in range(e.num_assets):
        s = asset(e, a)
        slots[4 * a] = _seek_local(e, a, s)
        slots[4 * a + 2] = _seek_exch(e, a, s)
        if e.error != 0:
            return e.error
    first = I64_MAX
    for j in range(slots.shape[0]):
        if slots[j] < first:
            first = slots[j]
    if first == I64_MAX:
        return END_OF_DATA
    e.cur_ts = first
    return OK


# --- public operations (the bot's methods reach them through the entry point's operation codes) -------------------


@borrowed(inline="always")
def clear_inactive_orders(e, asset_no):
    if asset_no < 0:
        for a in range(e.num_assets):
            ob.clear_inactive(asset(e, a).ord_l)
    else:
        ob.clear_inactive(asset(e, asset_no).ord_l)


@borrowed
def clear_last_trades(e, asset_no):
    if asset_no < 0:
        for a in range(e.num_assets):
            asset(e, a).ntrades = 0
    else:
        asset(e, asset_no).ntrades = 0


@borrowed(inline="always")
def _prepare(e, op, asset_no, order_id, ns, kind, flag, price, qty):
    """The part of operation `op` before time advances (FN_* codes and argument slots: abi.py).

    Returns (done, rc, target, wait_mode, wait_asset, wait_id, wait_next_feed): when `done`, rc is the result;
    otherwise the loop runs to `target` with those wait conditions."""
    wait_next = False
    mode = WAIT_NONE
    w_asset = np.int64(0)
    oid = np.int64(0)
    target = I64_MAX
    if op == FN_ELAPSE or op == FN_WAIT_NEXT_FEED or op == FN_GOTO_END:
        if e.cur_ts == I64_MAX:
            rc = initialize(e)
            if rc != OK:
                return True, rc, target, mode, w_asset, oid, wait_next
        if op == FN_ELAPSE:
            target = e.cur_ts + ns
        elif op == FN_WAIT_NEXT_FEED:
            target = e.cur_ts + ns
            wait_next = True
            if flag != 0:
                mode = WAIT_ANY
    elif op == FN_WAIT_ORDER_RESPONSE:
        target = e.cur_ts + ns
        mode = WAIT_ID
        w_asset = asset_no
        oid = order_id
    else:
        if op == FN_SUBMIT_BUY or op == FN_SUBMIT_SELL:
            side = BUY if op == FN_SUBMIT_BUY else SELL
            rc = lp.submit(asset(e, asset_no), e.cur_ts, order_id, side, price, qty, kind & 0xFF, (kind >> 8) & 0xFF)
        elif op == FN_MODIFY:
            rc = lp.modify(asset(e, asset_no), e.cur_ts, order_id, price, qty)
        elif op == FN_CANCEL:
            rc = lp.cancel(asset(e, asset_no), e.cur_ts, order_id)
        else:
            rc = np.int64(INVALID_ORDER_REQUEST)  # not an operation code
        if rc != OK or flag == 0:
            return True, rc, target, mode, w_asset, oid, wait_next
        mode = WAIT_ID
        w_asset = asset_no
        oid = order_id
    return False, np.int64(OK), target, mode, w_asset, oid, wait_next


@borrowed(jit=False)
def entry(op, p, asset_no, order_id, ns, kind, flag, price, qty):
    """The engine's single entry point, compiled once as a C-ABI `cfunc` by kernels/entry.py: `p` points to the
    engine (or to an order table for FN_TABLE_FIND); the other arguments are the named slots of abi.py. The event
    loop is written out here rather than called, so its code is compiled and optimised exactly once (a called
    kernel would be finalised again in every caller)."""
    if op == FN_TABLE_FIND:
        return ob.find(struct_from_ptr(p, table_type), order_id)
    e = struct_from_ptr(p, engine_type)
    if op == FN_CLEAR_INACTIVE:  # changes no bus or cursor: quiet_until stays exact
        clear_inactive_orders(e, asset_no)
        return np.int64(OK)
    e.quiet_until = I64_MIN  # an order operation or an error leaves it unknown
    if op == FN_CLOSE:
        e.closed = True
        return np.int64(OK)
    if e.closed:  # nothing advances time or queues an order after close()
        return np.int64(CLOSED)
    done, rc, target, wait_mode, wait_asset, wait_id, wait_next_feed = _prepare(
        e, op, asset_no, order_id, ns, kind, flag, price, qty)
    if done:
        return rc
    slots = e.slots
    nslots = slots.shape[0]
    for a in range(e.num_assets):
        s = asset(e, a)
        slots[4 * a + 1] = ob.bus_head_ts(s.to_local)
        slots[4 * a + 3] = ob.bus_head_ts(s.to_exch)
    result = OK
    cur = np.int64(0)
    s = asset(e, 0)
    while True:
        ts = slots[0]
        j = 0
        for k in range(1, nslots):
            if slots[k] < ts:
                ts = slots[k]
                j = k
        if ts == I64_MAX:
            return END_OF_DATA
        if ts > target:
            e.cur_ts = target
            e.quiet_until = ts  # every slot is exact here: nothing can happen before ts without an operation
            return result
        a = j >> 2
        kind = j & 3
        if a != cur:  # the typed list's getitem costs ~40 ns: fetch the asset only when it changes
            s = asset(e, a)
            cur = a
        if kind == 0:
            lp.process_data(s, s.data_l, s.pos_l)
            s.pos_l += 1
            slots[j] = _seek_local(e, a, s)
            if e.error != 0:
                return e.error
            if wait_next_feed:
                target = ts
                result = MARKET_FEED
        elif kind == 1:
            if lp.process_responses(s, ts, wait_id, wait_mode == WAIT_ID and a == wait_asset, wait_mode == WAIT_ANY):
                target = ts
                if wait_next_feed:
                    result = ORDER_RESPONSE
            slots[j] = ob.bus_head_ts(s.to_local)
        elif kind == 2:
            r = s.data_x[s.pos_x]
            if s.perp_i[0] != 0:  # funding enabled
                perp.settle_due(s, r.exch_ts)
                perp.exch_row(s, np.int64(r.ev) & 0xFF, r.exch_ts, r.px, r.ival)
            rc = xp.process_data(s, np.int64(r.ev), r.exch_ts, r.px, r.qty)
            if rc != OK:
                return rc
            s.pos_x += 1
            slots[j] = _seek_exch(e, a, s)
            if e.error != 0:
                return e.error
            slots[j - 1] = ob.bus_head_ts(s.to_local)
        else:
            if s.perp_i[0] != 0:
                perp.settle_due(s, ts)
            rc = xp.process_requests(s, ts)
            if rc != OK:
                return rc
            slots[j] = ob.bus_head_ts(s.to_exch)
            slots[j - 2] = ob.bus_head_ts(s.to_local)
