"""Atomic file output: write a temporary file in the target's folder, fsync it, then `os.replace` it into place.

A crash (even SIGKILL) mid-write leaves the previous file intact and nothing partial under the final name; at
worst a hidden `.<name>.<pid>.<random>.tmp` stays behind, which the next write to the same name removes once
its writer process is gone.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Any, Iterator

__all__ = ["atomic_path", "atomic_writer", "atomic_write_bytes", "savez", "npz_path"]


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask's set-and-restore races with other threads)
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _remove_stale(folder: str, name: str) -> None:
    """Delete temporaries of earlier writes to `name` whose writer process no longer exists."""
    prefix = f".{name}."
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        pid_part = entry[len(prefix):].split(".", 1)[0]
        if not pid_part.isdigit() or int(pid_part) == os.getpid():
            continue
        try:
            os.kill(int(pid_part), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, entry))
        except OSError:  # exists but not ours (EPERM): leave it
            pass


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to `path`; on a clean exit it is fsynced and renamed to `path`, on an
    exception it is deleted and `path` is untouched. The file gets the mode a plain `open(path, 'w')` would
    give (umask applied), or the existing file's mode when it replaces one."""
    final = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(final)
    _remove_stale(folder, name)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.{os.getpid()}.", suffix=".tmp")
    except OSError as exc:  # name the file the user asked for, not our temporary
        raise type(exc)(exc.errno, exc.strerror, os.fspath(path)) from None
    try:
        try:
            mode = os.stat(final).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
        os.close(fd)
        fd = -1
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        tmp = ""
        _fsync_dir(folder)
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """`open(path, mode)` that only appears under `path` once the block completes without an exception."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_writer writes a new file; mode must start with 'w', not {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        if not f.closed:  # a wrapper around it may have closed it
            f.flush()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` with `data`: readers see the old or the new content, never a mix."""
    with atomic_writer(path, "wb") as f:
        f.write(data)


def npz_path(path: str | os.PathLike) -> str:
    """The name numpy's savez gives a path (it appends `.npz` when missing)."""
    p = os.fspath(path)
    return p if p.endswith(".npz") else p + ".npz"


def savez(file: Any, compressed: bool = True, **arrays: Any) -> None:
    """`np.savez[_compressed](file, **arrays)`, atomic when `file` is a path (same `.npz` naming as numpy);
    an open file object is written to directly."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    if not isinstance(file, (str, os.PathLike)):
        save(file, **arrays)
        return
    with atomic_writer(npz_path(file), "wb") as f:
        save(f, **arrays)
