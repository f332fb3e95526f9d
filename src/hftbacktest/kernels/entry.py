"""The engine's C-ABI entry point: one cached `cfunc` dispatching on an operation code (FN_* in abi.py), called
by the bot's overloads through its address (see abi.py for why).

The loop operations are `inline="always"`, so this function links the compiled `goto` once; numba's cache does not
track callees, so a change to any kernel needs this file touched to refresh a stale cached entry point."""
from __future__ import annotations

from numba import cfunc

from . import loop
from . import orders as ob
from .abi import (
    ENTRY_ARGS,
    FN_CANCEL,
    FN_CLEAR_INACTIVE,
    FN_ELAPSE,
    FN_GOTO_END,
    FN_MODIFY,
    FN_SUBMIT,
    FN_TABLE_FIND,
    FN_WAIT_NEXT_FEED,
    FN_WAIT_ORDER_RESPONSE,
    I,
    struct_from_ptr,
)
from .orders import table_type
from .state import engine_type


@cfunc(I(*ENTRY_ARGS), cache=True, error_model="numpy")
def c_entry(op, p, i1, i2, i3, i4, i5, f1, f2):
    if op == FN_TABLE_FIND:
        return ob.find(struct_from_ptr(p, table_type), i1)
    e = struct_from_ptr(p, engine_type)
    if op == FN_ELAPSE:
        return loop.elapse(e, i1)
    if op == FN_WAIT_NEXT_FEED:
        return loop.wait_next_feed(e, i1 != 0, i2)
    if op == FN_WAIT_ORDER_RESPONSE:
        return loop.wait_order_response(e, i1, i2, i3)
    if op == FN_GOTO_END:
        return loop.goto_end(e)
    if op == FN_SUBMIT:  # i4 packs time_in_force (low byte) and order type (next byte)
        return loop.submit(e, i1, i2, i3, f1, f2, i4 & 0xFF, (i4 >> 8) & 0xFF, i5 != 0)
    if op == FN_MODIFY:
        return loop.modify(e, i1, i2, f1, f2, i3 != 0)
    if op == FN_CANCEL:
        return loop.cancel(e, i1, i2, i3 != 0)
    if op == FN_CLEAR_INACTIVE:
        loop.clear_inactive_orders(e, i1)
        return 0
    return -1


def address() -> int:
    return c_entry.address
