"""The engine's C-ABI entry point: `loop.entry` compiled once as a cached `cfunc`, dispatching on an operation code
(FN_* in abi.py) and called by the bot's overloads through its address (see abi.py for why).

On a cold cache the compile is shared with a helper process (warmup.py)."""
from __future__ import annotations

import os

from numba.core import sigutils
from numba.core.ccallback import CFunc

from . import loop, warmup
from .abi import ENTRY_ARGS, I


def _entry_point() -> CFunc:
    """What `numba.cfunc(sig, cache=True, error_model="numpy")` does, with a look at the cache in between."""
    sig = sigutils.normalize_signature(I(*ENTRY_ARGS))
    fn = CFunc(loop.entry, sig, locals={}, options={"error_model": "numpy"})
    fn.enable_caching()
    try:
        cold = not os.path.exists(fn._cache._cache_file._index_path)
    except AttributeError:  # numba internals moved: just compile here
        cold = False
    if cold:
        warmup.start()
    fn.compile()
    return fn


# the compile helper imports the Python layer (for its boxing registrations) but must not compile the entry point
c_entry = None if os.environ.get(warmup.HELPER_ENV) == "1" else _entry_point()


def address() -> int:
    return c_entry.address
