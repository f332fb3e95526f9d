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

_ROOT = Path(__file__).parent
_FILES = ("backtest/bot.py", "backtest/views.py", "recorder.py", "live/bot.py", "types.py")


def _kernel_sources(root: Path) -> list[Path]:
    found = []
    for folder, subfolders, names in os.walk(root / "kernels"):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")  # hundreds of numba cache files
        found += sorted(Path(folder) / name for name in names if name.endswith(".py"))
    return found


def digest(root: Path = _ROOT) -> str:
    """Hex digest over the sources compiled into user code (kernels, bot views, recorder, live bot, dtypes)."""
    h = hashlib.blake2b(digest_size=6)
    for path in _kernel_sources(root) + [root / name for name in _FILES]:
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    return h.hexdigest()


SALT = os.environ.get("HFTBACKTEST_CACHE_SALT") or digest()
