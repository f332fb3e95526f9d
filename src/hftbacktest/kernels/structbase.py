"""Base class for the engine's StructRef types."""
from __future__ import annotations

from numba.core import types

from .._cache_salt import SALT


class CompactStructRef(types.StructRef):
    """A StructRef type named after its class only (plus the package's cache salt).

    numba names a StructRef type after its full field list, nested types included; the engine's types nest
    deeply, and those multi-kilobyte names end up in every mangled symbol, which made compiling a user's
    strategy take tens of seconds. Each subclass is instantiated exactly once, so the class name is unique.
    The salt (`_cache_salt.SALT`) changes with the package sources, so a user's cached strategy compiled
    against other versions of these types (fields, inlined views) is recompiled, never reloaded."""

    def __init__(self, fields):
        super().__init__(fields)
        self.name = f"hftbacktest.{type(self).__name__}.{SALT}"

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)
