"""numba's on-disk cache, made safe for several processes and for changed sources.

numba (0.68) stores a function's cache as one index file (`<name>.nbi`: key -> data file name) plus one data
file per compiled signature, numbered in the order they were added (`<name>.<n>.nbc`). Two processes that
compile different signatures of one function at the same time both take number n for their own key, and the data
file written last wins: the index then sends one of the keys to the other key's machine code, which a third
process loads and runs (a segfault, or silently wrong results). An index written before its data file, or data
deleted by a purge in between, opens the same window.

`install()` replaces the save/load pair of numba's `IndexDataCacheFile`:
* a data file is named after a digest of its key and holds `(tag, key, payload)`; it is written (temp file +
  rename, as numba does) before the index refers to it;
* the index is read, updated and written under an exclusive lock file next to it (no entry is lost to a
  concurrent writer);
* a load returns the payload only if the data file's key is the requested key; a missing, half-deleted,
  foreign (another layout, an unpatched writer) or mismatching data file is a cache miss: numba compiles.

`drop_stale_caches` removes the package's cached code when the sources it was compiled from changed (numba checks
a function against its own file only, but the engine's code depends on StructRef layouts in other files).

`install_light_load` loads the package's own cached functions without numba's compiler registries (below).

Both fail closed: if numba's cache classes are not the ones recognised here, or a cache folder holds files this
module does not recognise, nothing is deleted and caching is turned off for the process (`CACHING` is False;
numba compiles into a private temporary folder removed at exit).
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import inspect
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

_TAG = "hftbacktest-cache-entry-1"
CACHING = True  # False once caching was turned off for this process
_INSTALLED = False
_REQUIRED = ("_load_index", "_save_index", "_load_data", "_save_data", "_open_for_write", "_data_path")
# what a numba cache folder may hold: index, data, their in-flight temp files, compiled Python, our marker/locks
_KNOWN = re.compile(r".*\.(nbi|nbc|pyc)(\.tmp\.[0-9a-f]+)?$|.*\.nbi\.lock$|hftbacktest\.digest(\.tmp\.[0-9a-f]+)?$")


def _recognised(cls) -> bool:
    if not all(callable(getattr(cls, name, None)) for name in _REQUIRED):
        return False
    try:
        return (list(inspect.signature(cls.save).parameters) == ["self", "key", "data"]
                and list(inspect.signature(cls.load).parameters) == ["self", "key"]
                and list(inspect.signature(cls.__init__).parameters) == ["self", "cache_path", "filename_base",
                                                                         "source_stamp"])
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def _locked(path: str):
    """Exclusive advisory lock on `path` (best effort: without fcntl or a writable folder, no lock)."""
    try:
        import fcntl

        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _data_name(self, key) -> str:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=10).hexdigest()
    return f"{self._index_name[:-len('.nbi')]}.{digest}.nbc"


def _save(self, key, data):
    name = _data_name(self, key)
    self._save_data(name, (_TAG, key, data))
    with _locked(self._index_path + ".lock"):
        overloads = self._load_index()
        overloads[key] = name
        self._save_index(overloads)


def _load(self, key):
    name = self._load_index().get(key)
    if name is None:
        return None
    try:
        entry = self._load_data(name)
    except Exception:  # deleted by a purge, truncated, or written by another layout: compile instead
        return None
    if not (isinstance(entry, tuple) and len(entry) == 3 and entry[0] == _TAG):
        return None
    try:
        same = entry[1] == key
    except Exception:
        same = False
    return entry[2] if same else None


def disable(reason: str) -> None:
    """Turn numba's cache off for this process (one warning line): compile everything, load nothing."""
    global CACHING
    if not CACHING:
        return
    CACHING = False
    from numba.core import config

    private = tempfile.mkdtemp(prefix="hftbacktest-nocache-")
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    config.CACHE_DIR = private
    warnings.warn(f"hftbacktest: numba cache turned off for this process ({reason}); everything is compiled",
                  RuntimeWarning, stacklevel=3)


def install() -> bool:
    """Patch numba's cache file class (once per process). False, and caching off, if it is not recognised."""
    global _INSTALLED
    if _INSTALLED:
        return True
    try:
        from numba.core.caching import IndexDataCacheFile
    except ImportError:
        disable("numba's cache layout is not recognised")
        return False
    if getattr(IndexDataCacheFile, "_hftbacktest_safe", False):
        _INSTALLED = True
        return True
    if not _recognised(IndexDataCacheFile):
        disable("numba's cache layout is not recognised")
        return False
    IndexDataCacheFile.save = _save
    IndexDataCacheFile.load = _load
    IndexDataCacheFile._hftbacktest_safe = True
    _INSTALLED = True
    return True


def _cache_dir_of(source_dir: Path) -> Path | None:
    """The folder numba caches functions of files in `source_dir` into (None: numba does not cache there)."""
    from numba.core.caching import FunctionCache

    scope: dict = {}
    exec(compile("def probe():\n    pass\n", str(source_dir / "__init__.py"), "exec"), scope)
    try:
        return Path(FunctionCache(scope["probe"]).cache_path)
    except RuntimeError:  # no usable cache location
        return None


def drop_stale_caches(root: Path, digests: dict[str, str]) -> None:
    """For each package folder of `digests` (folder -> digest of the sources its cached code depends on), delete
    that folder's numba cache files when the digest differs from the one recorded next to them.

    Fails closed: an unrecognised cache layout, or a file in a cache folder that is not one of numba's (or ours),
    turns caching off instead of deleting anything."""
    if not CACHING:
        return
    try:
        from numba.core.caching import FunctionCache  # noqa: F401
    except ImportError:
        disable("numba's cache layout is not recognised")
        return
    for folder, current in digests.items():
        try:
            cache_dir = _cache_dir_of(root / folder)
        except Exception as exc:  # numba's locators changed: we cannot tell where stale code would be
            disable(f"cannot locate numba's cache ({type(exc).__name__})")
            return
        if cache_dir is None:
            continue
        marker = cache_dir / "hftbacktest.digest"
        try:
            if marker.read_text() == current:
                continue
        except OSError:
            pass
        try:
            names = [p.name for p in cache_dir.iterdir() if p.is_file()]
        except FileNotFoundError:
            names = []
        except OSError as exc:
            disable(f"cannot read {cache_dir} ({exc.strerror})")
            return
        unknown = [n for n in names if not _KNOWN.fullmatch(n)]
        if unknown:
            disable(f"unrecognised file {unknown[0]!r} in {cache_dir}")
            return
        for name in names:
            if name.endswith((".nbi", ".nbc")):
                (cache_dir / name).unlink(missing_ok=True)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_dir / f"hftbacktest.digest.tmp.{os.getpid():x}"
            tmp.write_text(current)
            os.replace(tmp, marker)
        except OSError:
            pass


# --- loading the package's cached code without numba's compiler registries ------------------------------------------
# numba's `Cache.load_overload` refreshes the target context before loading: it imports and installs every typing
# and lowering registry (~0.15 s of CPU, a third of a fresh process's one-file conversion). Machine code loaded from
# the cache needs none of them, only the runtime's symbols: NRT (`rtsys.initialize`), numba's C helpers and libm
# (installed when the context is created) and the string-hash secret (`numba.cpython.hashing` at import). The
# package's own functions are loaded that way; every other function, and every compile, still refreshes.
_PACKAGE = __name__.split(".")[0] + "."
_LOAD_REQUIRED = ("load_overload", "_load_overload", "_guard_against_spurious_io_errors")


def _runtime_ready(target_context) -> None:
    import numba.cpython.hashing  # noqa: F401  (registers _Py_HashSecret with LLVM)
    from numba.core.runtime import rtsys

    rtsys.initialize(target_context)


def install_light_load(Cache=None) -> bool:
    """Patch numba's `Cache.load_overload` (or the given class's) for the package's functions, once; only on a
    tested numba whose cache class has the expected methods. False when left alone."""
    from . import numba_is_tested

    try:
        from numba.core.runtime import rtsys  # noqa: F401

        if Cache is None:
            from numba.core.caching import Cache
    except ImportError:
        return False
    if Cache.__dict__.get("_hftbacktest_light", False):
        return True
    if not numba_is_tested() or not all(callable(getattr(Cache, n, None)) for n in _LOAD_REQUIRED):
        return False
    full = Cache.load_overload

    def load_overload(self, sig, target_context):
        module = getattr(getattr(self, "_py_func", None), "__module__", None) or ""
        if not module.startswith(_PACKAGE):
            return full(self, sig, target_context)
        _runtime_ready(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    Cache.load_overload = load_overload
    Cache._hftbacktest_light = True
    return True
