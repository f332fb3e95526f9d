"""Calling the cached engine from user code: the entry point's operation codes (its arguments: kernels/loop.py
`entry`); the pointer intrinsics live in hftbacktest._numba_tricks.pointers (re-exported here).

numba links the whole LLVM library of every jitted function a new function calls and re-optimises it; for the
engine loop that costs tens of seconds per user strategy. So the engine is compiled once as a C-ABI `cfunc` (one
entry point dispatching on an operation code, cached on disk) that takes the engine as a raw pointer; its address
is stored in the engine at build time and the bot's overloads call it indirectly.
"""
from __future__ import annotations

from numba.extending import register_jitable

from .._numba_tricks.pointers import (  # noqa: F401
    ENTRY_ARGS, F, I, call_entry, call_prob, record_from_ptr, struct_from_ptr, struct_ptr,
)

# operation codes of the entry point
FN_ELAPSE = 0
FN_WAIT_NEXT_FEED = 1
FN_WAIT_ORDER_RESPONSE = 2
FN_GOTO_END = 3
FN_SUBMIT_BUY = 4
FN_SUBMIT_SELL = 5
FN_MODIFY = 6
FN_CANCEL = 7
FN_CLEAR_INACTIVE = 8
FN_TABLE_FIND = 9
FN_CLOSE = 10

# The entry point's arguments after (op, pointer). Each slot means one thing whatever the operation; an operation
# reads the slots it needs and ignores the others (callers pass 0):
#   asset_no  asset number (-1 in FN_CLEAR_INACTIVE: every asset)
#   order_id  the order's id, as int64
#   ns        nanoseconds: the duration of FN_ELAPSE, the timeout of FN_WAIT_*
#   kind      time_in_force | order_type << 8 of FN_SUBMIT_*
#   flag      1: wait for the exchange's response (submit, modify, cancel); for FN_WAIT_NEXT_FEED, also stop at
#             an order response
#   price, qty
ENTRY_SLOTS = ("asset_no", "order_id", "ns", "kind", "flag", "price", "qty")


@register_jitable
def order_kind(time_in_force, order_type):
    """The `kind` slot of FN_SUBMIT_* (plain Python from Python, inlined in jitted code)."""
    return time_in_force | (order_type << 8)
