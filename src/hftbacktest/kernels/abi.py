"""Calling the cached engine kernels from user code through function pointers.

numba links the whole LLVM library of every jitted function a new function calls and re-optimises it; for the
engine loop that costs tens of seconds per user strategy. So the heavy kernels are also compiled as C-ABI
`cfunc` (one entry point dispatching on an operation code, cached on disk) that takes the engine as a raw pointer;
its address is stored in the engine at build time and the bot's overloads call it indirectly: user code only
compiles a few loads and one call, and the engine is compiled once, not once per operation.
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

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


@intrinsic
def struct_ptr(typingctx, obj):
    """Address of a StructRef's meminfo as int64 (borrowed: whoever owns `obj` keeps it alive)."""

    def codegen(context, builder, sig, args):
        st = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0])
        return builder.ptrtoint(st.meminfo, ir.IntType(64))

    return types.int64(obj), codegen


@intrinsic
def struct_from_ptr(typingctx, ptr, struct_type_ref):
    """Rebuild a StructRef value of the given type from its meminfo address (takes a new reference)."""
    struct_type = struct_type_ref.instance_type

    def codegen(context, builder, sig, args):
        st = cgutils.create_struct_proxy(struct_type)(context, builder)
        st.meminfo = builder.inttoptr(args[0], st.meminfo.type)
        context.nrt.incref(builder, struct_type, st._getvalue())
        return st._getvalue()

    return struct_type(types.int64, struct_type_ref), codegen


@intrinsic
def record_from_ptr(typingctx, ptr, record_type_ref):
    """A record view at address `ptr` (the engine's state arrays are never reallocated)."""
    rec_type = record_type_ref.instance_type

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(rec_type))

    return rec_type(types.int64, record_type_ref), codegen


I, F = types.int64, types.float64
ENTRY_ARGS = (I, I, I, I, I, I, I, F, F)  # op, target pointer, five integers, two floats


@intrinsic
def call_entry(typingctx, fn, op, p, i1, i2, i3, i4, i5, f1, f2):
    """Call the engine's single C entry point (kernels.entry.c_entry) through its address `fn`."""

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(64), [context.get_value_type(t) for t in ENTRY_ARGS])
        return builder.call(builder.inttoptr(args[0], fnty.as_pointer()), list(args[1:]))

    return I(I, *ENTRY_ARGS), codegen


@intrinsic
def call_prob(typingctx, fn, front, back):
    """Call a user's queue probability function, compiled as a C-ABI `double(double, double)`, at address `fn`."""

    def codegen(context, builder, sig, args):
        dbl = ir.DoubleType()
        fnty = ir.FunctionType(dbl, [dbl, dbl])
        return builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [args[1], args[2]])

    return F(I, F, F), codegen
