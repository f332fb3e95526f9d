"""The types user code sees: the bot, its depth and its order tables as salted views of the engine's StructRefs.

A view has the same fields and memory as the engine's type (kernels.state / depth / orders) and a name that carries
the cache salt (`_numba_tricks.salt.SALT`). A user's cached strategy takes views as arguments, so a changed package
changes its signature and numba recompiles it instead of loading machine code built against other overloads or
layouts. The engine's own types stay unsalted: the kernels' caches, and the types their cached constructors
return, do not depend on the salt. `recast` converts between a view and its engine type (no copy); other bots
(the live bot) can hand out the same depth/order views with `recast(asset.depth_l, depth_view_type)`.

A proxy must be boxed as the view type itself (`Proxy._numba_box_(bot_type, meminfo)`): a cached constructor
returns the type that was current when it was cached, whatever the salt is now.

This module compiles nothing at import (the cache tests import it without building the engine).
"""
from __future__ import annotations

from numba.core import cgutils, types
from numba.core.extending import intrinsic
from numba.experimental import structref

from .._numba_tricks.salt import SALT
from ..kernels.depth import depth_type
from ..kernels.orders import table_type
from ..kernels.state import engine_type


class _SaltedView(types.StructRef):
    def __init__(self, fields):
        super().__init__(fields)
        self.name = f"hftbacktest.{type(self).__name__}.{SALT}"

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


@structref.register
class BotType(_SaltedView):
    pass


@structref.register
class DepthViewType(_SaltedView):
    pass


@structref.register
class OrdersViewType(_SaltedView):
    pass


bot_type = BotType(list(engine_type.field_dict.items()))
depth_view_type = DepthViewType(list(depth_type.field_dict.items()))
orders_view_type = OrdersViewType(list(table_type.field_dict.items()))


@intrinsic
def recast(typingctx, obj, type_ref):
    """The same StructRef seen as another StructRef type with the same fields (a view <-> its engine type)."""
    target = type_ref.instance_type

    def codegen(context, builder, sig, args):
        src = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0])
        dst = cgutils.create_struct_proxy(target)(context, builder)
        dst.meminfo = src.meminfo
        context.nrt.incref(builder, target, dst._getvalue())
        return dst._getvalue()

    return target(obj, type_ref), codegen
