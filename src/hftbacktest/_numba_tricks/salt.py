"""`SALT`: a short digest of the package sources whose code numba compiles into users' own functions.

numba's on-disk cache validates a cached function against its own source file only. A user's
`@njit(cache=True)` strategy contains our overloads inlined (bot views, order properties, recorder) and the
layout of our StructRefs; after an upgrade of this package it would load that stale machine code (wrong results
or a segfault). The salt is part of the numba type names of the bot, view and recorder StructRefs, so a changed
package changes the strategy's signature: numba misses its cache and recompiles.

Hashing these files (~20, 140 kB) takes 1-2 ms at import. In a regular install they never change, so
neither does the salt; in an editable checkout every edit of these files changes it.

`HFTBACKTEST_CACHE_SALT` replaces the digest. It exists for tests of the mechanism (and to pin the salt while
iterating on the package); never set it in production, it defeats the protection.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from . import cache

_ROOT = Path(__file__).parent.parent
_FILES = ("backtest/bot.py", "backtest/views.py", "recorder.py", "live/bot.py", "types.py")


def _kernel_sources(root: Path) -> list[Path]:
    """The kernels and these tricks (how the kernels are lowered and cached is part of their machine code)."""
    found = []
    for top in ("kernels", "_numba_tricks"):
        for folder, subfolders, names in os.walk(root / top):
            subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")  # hundreds of numba cache files
            found += sorted(Path(folder) / name for name in names if name.endswith(".py"))
    return found


def _digest(root: Path, paths: list[Path]) -> str:
    h = hashlib.blake2b(digest_size=6)
    for path in paths:
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    return h.hexdigest()


def digest(root: Path = _ROOT) -> str:
    """Hex digest over the sources compiled into user code (kernels, numba tricks, bot views, recorder, live bot,
    dtypes)."""
    return _digest(root, _kernel_sources(root) + [root / name for name in _FILES])


SALT = os.environ.get("HFTBACKTEST_CACHE_SALT") or digest()


# cache directory -> the sources its cached code is built from, besides the kernels, these tricks and dtypes
_CACHE_DEPENDENCIES = {
    "kernels": (),
    "backtest": ("backtest/bot.py", "backtest/views.py"),
    "live": ("live/bot.py", "backtest/views.py"),
    ".": ("recorder.py", "backtest/bot.py", "backtest/views.py"),
}


def drop_stale_caches(root: Path = _ROOT) -> None:
    """Delete numba's cached machine code of this package when the sources it was built from changed.

    numba checks a cached function against its own file only, but the engine's functions are compiled against
    StructRef layouts and callees in other files (a changed field in kernels/state.py leaves a stale cached
    entry point in loop.py's cache: a segfault, also after a package upgrade). A marker file per cache directory
    remembers the digest the cached code was built from; on a mismatch that directory's cache files are removed
    before anything loads (fails closed, see `cache.drop_stale_caches`)."""
    base = _kernel_sources(root) + [root / "types.py"]
    cache.drop_stale_caches(root, {folder: _digest(root, base + [root / name for name in extra])
                                   for folder, extra in _CACHE_DEPENDENCIES.items()})
