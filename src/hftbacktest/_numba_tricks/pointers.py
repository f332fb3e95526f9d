"""Addresses of StructRefs and calls through C function pointers (numba-internals tricks, see the package docstring).

The engine's entry point is a cached C-ABI `cfunc`; user code and the bot's overloads reach it through its address
stored in the engine (kernels/abi.py has the operation codes), so a user strategy compiles a few loads and one
call instead of linking the whole engine.
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


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
ENTRY_ARGS = (I, I, I, I, I, I, I, F, F)  # op, target pointer, then the slots of kernels/abi.py


@intrinsic
def call_entry(typingctx, fn, op, p, asset_no, order_id, ns, kind, flag, price, qty):
    """Call the engine's single C entry point (kernels.entry.entry_point()) through its address `fn`."""

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
