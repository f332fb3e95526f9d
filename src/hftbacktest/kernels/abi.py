"""Calling the cached engine from user code: the entry point's operation codes (its arguments: kernels/loop.py
`entry`); the pointer intrinsics live in hftbacktest._numba_tricks.pointers (re-exported here).

numba links the whole LLVM library of every jitted function a new function calls and re-optimises it; for the
engine loop that costs tens of seconds per user strategy. So the engine is compiled once as a C-ABI `cfunc` (one
entry point dispatching on an operation code, cached on disk) that takes the engine as a raw pointer; its address
is stored in the engine at build time and the bot's overloads call it indirectly.
"""
from __future__ import annotations

from .._numba_tricks.pointers import (  # noqa: F401
    ENTRY_ARGS, F, I, call_entry, call_prob, record_from_ptr, struct_from_ptr, struct_ptr,
)

# operation codes of the entry point
FN_ELAPSE = 0
FN_WAIT_NEXT_FEED = 1
FN_WAIT_ORDER_RESPONSE = 2
FN_GOTO_END = 3
FN_SUBMIT = 4
FN_MODIFY = 5
FN_CANCEL = 6
FN_CLEAR_INACTIVE = 7
FN_TABLE_FIND = 8
FN_CLOSE = 9
