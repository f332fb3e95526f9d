"""The first-ever engine compile, shared with a second process.

On a cold numba cache `kernels/entry.py` starts `python -m hftbacktest.kernels.warmup` before compiling the entry
point. While this process types and lowers the event loop, the helper compiles into the same cache what this
process needs only later: build-time constructors and the chunk check (needed after the entry point), and the
exchange kernels that the loop's typing reaches last (order entry, queue and resting fills). When this process
gets there it finds them cached. If the helper is late or fails, this process compiles them itself: the result
is the same, only the time differs. Set HFTBACKTEST_PARALLEL_COMPILE=0 to turn the helper off.
"""
from __future__ import annotations

import atexit
import os
import subprocess
import sys

_helper: subprocess.Popen | None = None


def start() -> None:
    """Start the helper process (once per process; no-op when turned off)."""
    global _helper
    if _helper is not None or os.environ.get("HFTBACKTEST_PARALLEL_COMPILE", "1") == "0":
        return
    env = {**os.environ, "HFTBACKTEST_PARALLEL_COMPILE": "0"}
    try:
        _helper = subprocess.Popen([sys.executable, "-m", "hftbacktest.kernels.warmup"], env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return
    atexit.register(_reap)


def wait(timeout: float = 300.0) -> None:
    """Let the helper finish (for a process whose only job is to fill the cache, like the demo's background one)."""
    if _helper is not None and _helper.poll() is None:
        try:
            _helper.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass


def _reap() -> None:
    """At exit: stop a helper still running (what it cached so far stays; numba writes cache files by rename), so
    no compile outlives the process that asked for it, e.g. a connector being stopped and restarted."""
    if _helper is not None and _helper.poll() is None:
        _helper.kill()
        _helper.wait()


def compile_late_kernels() -> None:
    """The helper's work: constructors and chunk check first (needed only after the entry point), then the
    exchange kernels, with the signatures the event loop calls them with."""
    import numba
    from numba import types

    # Python wrappers of what is compiled here are cached too: every StructRef boxing must be registered, as in a
    # user's process, or a later call from Python would find a wrapper unable to (un)box DepthType
    from ..backtest import bot
    from . import depth as dp
    from . import exchange as xp
    from . import models as md
    from . import rows
    from . import state as st
    from .orders import order_array_type

    i64, f64, b = types.int64, types.float64, types.boolean
    farr = types.float64[::1]
    dp.new_depth.compile((i64, f64, f64, f64, f64, b))
    st.new_asset_list.compile(())
    cfg = types.Array(numba.from_dtype(st.asset_config_dtype), 1, "C")
    st.new_asset_state.compile((cfg, types.int64[:, ::1], dp.depth_type, dp.depth_type, st.data_array_type, i64))
    bot._append_asset.compile((types.ListType(st.asset_state_type), st.asset_state_type))
    st.new_engine.compile((types.ListType(st.asset_state_type), i64, i64))
    rows.check_rows.compile((st.data_array_type, i64, i64))
    s = st.asset_state_type
    xp.ack_new.compile((s, order_array_type, i64, i64))
    xp._queue_fill.compile((s, i64, i64, f64))
    xp._fill_resting_all.compile((s, i64, i64))
    md.queue_depth.compile((i64, f64, farr, farr, i64, f64, f64, i64))

if __name__ == "__main__":
    compile_late_kernels()
