"""`quiet_elapse`: the bot's elapse compiled into a strategy as a compare and a store while nothing is due.

The engine keeps `quiet_until` (kernels/state.py): before that time an elapse would only set `cur_ts` and return 0.
The intrinsic does exactly that inline and calls the entry point (kernels/abi.py) otherwise: ~0.5 ns instead of
~15 ns for a wake-up with no event. An intrinsic, not a branching `@njit` helper: numba wraps a call to one in an
incref/decref pair of the bot (two atomic operations, ~10 ns) whenever the caller's loop shape defeats its
reference-count pruning.

Rule: it reads the StructRef's data through `numba.experimental.structref._Utils` (numba-internal) and assumes the
entry point's C signature `ENTRY_ARGS`. On a numba not in `TESTED`, or without that helper, `quiet_elapse` returns
None and the bot calls the entry point on every elapse (correct, ~15 ns slower per wake-up).
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .pointers import ENTRY_ARGS

FIELDS = ("cur_ts", "quiet_until", "entry")  # int64 fields of the engine's StructRef the fast path touches


def _data_struct_helper():
    try:
        from numba.experimental.structref import _Utils
    except ImportError:
        return None
    return _Utils if callable(getattr(_Utils, "get_data_struct", None)) else None


def quiet_elapse(op: int):
    """The `elapse(bot, duration)` intrinsic calling entry operation `op` when something is due, or None when
    this numba is not one it was tested with."""
    from . import numba_is_tested, warn_untested

    if not numba_is_tested():
        warn_untested()
        return None
    utils = _data_struct_helper()
    if utils is None:
        return None

    @intrinsic
    def elapse(typingctx, e, duration):
        fields = getattr(e, "field_dict", {})
        if any(fields.get(name) != types.int64 for name in FIELDS) or not isinstance(duration, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            i64 = ir.IntType(64)
            bot, dur = args[0], context.cast(builder, args[1], sig.args[1], types.int64)
            data = utils(context, builder, sig.args[0]).get_data_struct(bot)
            target = builder.add(data.cur_ts, dur)  # wraps like the engine's own sum
            rc = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))
            with builder.if_else(builder.icmp_signed("<", target, data.quiet_until), likely=True) as (quiet, due):
                with quiet:
                    data.cur_ts = target
                with due:
                    fnty = ir.FunctionType(i64, [context.get_value_type(t) for t in ENTRY_ARGS])
                    meminfo = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=bot).meminfo
                    zero, fzero = ir.Constant(i64, 0), ir.Constant(ir.DoubleType(), 0.0)
                    # slots (kernels/abi.py): asset_no, order_id, ns=duration, kind, flag, price, qty
                    call = builder.call(builder.inttoptr(data.entry, fnty.as_pointer()),
                                        [ir.Constant(i64, op), builder.ptrtoint(meminfo, i64), zero, zero, dur, zero,
                                         zero, fzero, fzero])
                    builder.store(call, rc)
            return builder.load(rc)

        return types.int64(e, duration), codegen

    return elapse
