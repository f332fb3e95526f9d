"""The engine's C-ABI entry point: `loop.entry` compiled once as a cached `cfunc`, dispatching on an operation code
(FN_* in abi.py) and called by the bot's overloads through its address (see abi.py for why).

Compiled (or loaded from numba's cache) lazily, on the first `entry_point()` call: building the first bot, or
`hftbacktest compile`. Importing this module compiles nothing. On a cold cache the compile is shared with a helper
process (warmup.py)."""
from __future__ import annotations

import os
import threading

from numba.core import sigutils
from numba.core.ccallback import CFunc

from . import loop, warmup
from .abi import ENTRY_ARGS, I

_fn: CFunc | None = None
_lock = threading.Lock()


def _compile() -> CFunc:
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


def entry_point() -> CFunc:
    """The compiled entry point (compiled or loaded on the first call, once per process). The bot proxy types
    must be registered first (importing hftbacktest.backtest.bot does it): cached wrappers box them."""
    global _fn
    if _fn is None:
        with _lock:
            if _fn is None:
                _fn = _compile()
    return _fn


def address() -> int:
    return entry_point().address
