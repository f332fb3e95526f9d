"""Lazy package exports (PEP 562): heavy modules (numba, aiohttp) load on first attribute access, not on import."""
from __future__ import annotations

from importlib import import_module


def lazy_exports(package: str, namespace: dict, exports: dict[str, str]):
    """Returns `(__getattr__, __dir__)` for `package` resolving each name in `exports` from its module on demand."""

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
