"""The engine's C-ABI entry point: `loop.entry` compiled once as a cached `cfunc`, dispatching on an operation code
(FN_* in abi.py) and called by the bot's overloads through its address (see abi.py for why).

numba's cache does not track callees, so a change to any kernel needs this file (or loop.py) touched to refresh a
stale cached entry point."""
from __future__ import annotations

from numba import cfunc

from . import loop
from .abi import ENTRY_ARGS, I

c_entry = cfunc(I(*ENTRY_ARGS), cache=True, error_model="numpy")(loop.entry)


def address() -> int:
    return c_entry.address
