"""Atomic file output: write a temporary file in the destination folder, fsync it, then `os.replace` it."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_writer(path, mode: str = "wb"):
    """Open a temporary sibling of `path` for writing; it replaces `path` only if the block exits cleanly."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Replace `path` with `data` so readers see either the old or the new content, never a mix."""
    with atomic_writer(path) as f:
        f.write(data)
