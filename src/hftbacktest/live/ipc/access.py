"""Who may use a connector's IPC: only the connector's OS user, and only bots that present its token.

* Every file of our iceoryx2 services lives under a per-user runtime directory (mode 0700, owned by us) or in
  /dev/shm under a prefix derived from that directory; after each step that creates files, `tighten()` removes
  every group/other permission bit (iceoryx2 creates its global management segment 0666 and its directories
  0750) and refuses files with our prefix owned by someone else.
* At start the connector writes a random token to `<runtime dir>/<name>.token` (0600). A bot reads it when it
  registers and sends it in its `BotHello`; the connector refuses every other request from a bot that has not
  presented it.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

from ...errors import IpcError

SHM_DIR = Path("/dev/shm")
_PRIVATE = 0o077  # group and other bits


def runtime_dir() -> Path:
    """`$HFTBACKTEST_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/hftbacktest`, else `/tmp/hftbacktest-<uid>`; created 0700.

    An existing directory must be ours (another user could have planted it in /tmp); its mode is tightened."""
    env = os.environ.get("HFTBACKTEST_RUNTIME_DIR")
    if env:
        path = Path(env)
    elif os.environ.get("XDG_RUNTIME_DIR") and os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "hftbacktest"
    else:
        path = Path(f"/tmp/hftbacktest-{os.getuid()}")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise IpcError(f"cannot create the IPC runtime directory {path}: {exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise IpcError(f"IPC runtime directory {path} is not a directory (a symlink?); remove it")
    if st.st_uid != os.getuid():
        raise IpcError(f"IPC runtime directory {path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}); "
                       "remove it or set HFTBACKTEST_RUNTIME_DIR")
    if stat.S_IMODE(st.st_mode) & _PRIVATE:
        os.chmod(path, 0o700)
    return path


def iceoryx_root(base: Path) -> Path:
    return base / "iceoryx2"


def shm_prefix(base: Path) -> str:
    """File-name prefix of our iceoryx2 resources: one per runtime directory, so another user's (or another
    runtime directory's) services never share a /dev/shm name with ours."""
    return "hbt" + hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:10] + "_"


def our_files(base: Path) -> list[Path]:
    """Every file and directory our IPC has created: the runtime directory's tree and our /dev/shm segments."""
    out = [base]
    for dirpath, dirnames, filenames in os.walk(base):
        out += [Path(dirpath, n) for n in dirnames + filenames]
    prefix = shm_prefix(base)
    try:
        out += [SHM_DIR / n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]
    except FileNotFoundError:  # pragma: no cover - no /dev/shm on this platform
        pass
    return out


def tighten(base: Path) -> None:
    """Strip group/other permissions from every file of ours; refuse a file with our prefix someone else owns."""
    uid = os.getuid()
    for path in our_files(base):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # removed meanwhile (a dead node's resources)
        if st.st_uid != uid:
            raise IpcError(f"IPC file {path} belongs to uid {st.st_uid}, not to you; refusing to use it")
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & _PRIVATE:
            try:
                os.chmod(path, mode & ~_PRIVATE)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise IpcError(f"cannot restrict the permissions of IPC file {path}: {exc}") from exc


def token_path(name: str, base: Path | None = None) -> Path:
    return (base or runtime_dir()) / f"{name}.token"


def write_token(name: str) -> tuple[Path, str]:
    """A fresh random token in `<runtime dir>/<name>.token`, mode 0600 from its creation, replaced atomically."""
    path = token_path(name)
    token = secrets.token_hex(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, token.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise IpcError(f"cannot write the connector token {path}: {exc}") from exc
    return path, token


def read_token(name: str) -> str | None:
    """The token of connector `name`, or None when it has not written one (not running)."""
    path = token_path(name)
    try:
        st = os.stat(path)
        if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & _PRIVATE:
            raise IpcError(f"connector token {path} must be yours with mode 0600")
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IpcError(f"cannot read the connector token {path}: {exc}") from exc


def remove_token(name: str, token: str) -> None:
    """Remove the token file if it still holds `token` (a newer connector may have replaced it)."""
    try:
        if read_token(name) == token:
            token_path(name).unlink()
    except (OSError, IpcError):
        pass
