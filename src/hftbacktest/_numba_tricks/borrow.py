"""Hot engine kernels compiled without reference counting ("borrowed" kernels).

numba increfs every array or StructRef it reads from a struct field or receives as an argument, and decrefs it
when the variable dies, each time through an out-of-line call doing an atomic add. On the per-event path that
was two thirds of the replay time (9.8 M events: 3.15 s with it, 1.03 s without). The engine owns all its state
for its whole life, so its hot kernels can borrow instead: a function decorated with `@borrowed` is lowered with
every incref/decref left out (numba's lowering is told through `NRTContext.incref/decref`, patched below, which
looks at the name of the LLVM function being generated).

Rules for a borrowed kernel, all about ownership (they keep reference counts exact):
* no allocation (np.zeros/empty, `resized`, typed-List access): do it in an owning (plain `njit`) helper that
  stores the result into the struct itself, like `depth._alloc_window` or `orders._grow`;
* no assignment of an array or StructRef to a struct field (same: an owning helper does it);
* no local alias of a field kept across a call that may replace that field (re-read it after the call);
* no call to a function returning a new array/StructRef (the reference would leak), no returning one to an
  owning caller; assets are reached with `asset(e, a)`, a borrowed pointer, never `e.assets[a]`.
On a numba version not in `_numba_tricks.TESTED`, or if numba's internals change shape, the patch is not
installed (one warning line says so): borrowed kernels then compile as ordinary, reference-counted ones (correct,
only slower). tests/unit/test_borrowed_kernels.py checks both the elision and
that a whole backtest allocates and frees the same number of meminfos.
"""
from __future__ import annotations

from numba import njit

BORROWED: set[str] = set()  # "module.qualname" of every borrowed kernel
INSTALLED = False


def borrowed(fn=None, *, jit=True, **options):
    """`njit(cache=True, error_model="numpy", **options)` for a kernel lowered without reference counting.
    `jit=False` only registers a function that is compiled elsewhere (the cfunc entry point)."""

    def wrap(f):
        BORROWED.add(f"{f.__module__}.{f.__qualname__}")
        if not jit:
            return f
        return njit(cache=True, error_model="numpy", **options)(f)

    return wrap(fn) if fn is not None else wrap


def _qualified_name(symbol: str) -> str | None:
    """'a.b.c' from numba's Itanium-style symbol '_ZN1a1b1c...' (length-prefixed parts, then ABI tags)."""
    if not symbol.startswith("_ZN"):
        return None
    parts, i, n = [], 3, len(symbol)
    while i < n and symbol[i].isdigit():
        j = i
        while j < n and symbol[j].isdigit():
            j += 1
        size = int(symbol[i:j])
        parts.append(symbol[j:j + size])
        i = j + size
    return ".".join(parts)


def _lowering_borrowed(builder) -> bool:
    fn = getattr(builder, "function", None)
    name = getattr(fn, "name", None)
    return name is not None and _qualified_name(name) in BORROWED


def _install() -> None:
    global INSTALLED
    from . import numba_is_tested, warn_untested

    if not numba_is_tested():
        warn_untested()
        return
    try:
        from numba.core.runtime.context import NRTContext
    except ImportError:  # pragma: no cover - numba reorganised: stay reference-counted
        return
    if getattr(NRTContext, "_hftbacktest_borrowed", False):
        INSTALLED = True
        return
    incref, decref = getattr(NRTContext, "incref", None), getattr(NRTContext, "decref", None)
    if incref is None or decref is None:  # pragma: no cover
        return

    def patched_incref(self, builder, typ, value):
        if not _lowering_borrowed(builder):
            incref(self, builder, typ, value)

    def patched_decref(self, builder, typ, value):
        if not _lowering_borrowed(builder):
            decref(self, builder, typ, value)

    NRTContext.incref = patched_incref
    NRTContext.decref = patched_decref
    NRTContext._hftbacktest_borrowed = True
    INSTALLED = True


_install()
