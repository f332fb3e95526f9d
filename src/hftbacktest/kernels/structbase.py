"""Base class for the engine's StructRef types."""
from __future__ import annotations

from numba.core import types


class CompactStructRef(types.StructRef):
    """A StructRef type named after its class only.

    numba names a StructRef type after its full field list, nested types included; the engine's types nest
    deeply, and those multi-kilobyte names end up in every mangled symbol, which made compiling a user's
    strategy take tens of seconds. Each subclass is instantiated exactly once, so the class name is unique."""

    def __init__(self, fields):
        super().__init__(fields)
        self.name = f"hftbacktest.{type(self).__name__}"

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)
