"""The package's uses of numba internals, in one place, with the rules that keep them correct.

* `borrow`   — `@borrowed` kernels lowered without reference counting (numba's `NRTContext.incref/decref`
  patched while such a function is lowered). Rules: a borrowed kernel never allocates, never stores an array or
  StructRef into a struct field, never keeps a local alias of a field across a call that may replace it, never
  calls or returns anything that hands over a new reference; owning (plain `njit`) helpers do those things.
  Installed only on a tested numba (`TESTED`); elsewhere the same kernels compile reference-counted.
* `pointers` — StructRef meminfo addresses and C function pointers (`struct_ptr`, `struct_from_ptr`,
  `record_from_ptr`, `call_entry`, `call_prob`). Rule: an address is only dereferenced while its owner (the
  engine, the bot proxy) is alive; `struct_from_ptr` takes a new reference, `record_from_ptr` takes none (only
  for arrays that are never reallocated).
* `elapse`   — `quiet_elapse`: the bot's elapse as an intrinsic reading the engine StructRef's data directly (only
  `cur_ts` moves while nothing is due). Rule: built only on a tested numba with the StructRef helper it uses;
  otherwise None and the bot calls the entry point every time.
* `cache`    — numba's on-disk cache made safe across processes (entries written data-first under a lock, each
  data file tagged with its key and checked at load) and purged when the package's sources change. Rule: if the
  cache layout is not the one recognised here, caching is turned off for the process (compile, never guess).
  The package's own cached functions load without numba's compiler registries (only the runtime's symbols);
  only on a tested numba, others load as numba does.

`TESTED` lists the numba versions (major, minor) these were tested with; pyproject.toml pins the same range.
"""
from __future__ import annotations

import warnings

import numba

TESTED = ((0, 68),)


def numba_version() -> tuple[int, int]:
    try:
        major, minor = numba.__version__.split(".")[:2]
        return int(major), int(minor)
    except ValueError:  # a development build with an odd version string
        return (0, 0)


def numba_is_tested() -> bool:
    return numba_version() in TESTED


_warned = False


def warn_untested() -> None:
    """One line, once per process, when numba is not a tested version."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"hftbacktest: numba {numba.__version__} is not a tested version "
                      f"({', '.join('%d.%d' % v for v in TESTED)}): reference-count elision is off (correct, slower)",
                      RuntimeWarning, stacklevel=3)


from . import cache as _cache  # noqa: E402

_cache.install()  # before any of the package's (or a user's) cached numba code is compiled or loaded
_cache.install_light_load()
