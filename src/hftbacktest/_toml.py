"""Reading TOML files with typed errors that name the file (configs, fault specs, secrets files)."""
from __future__ import annotations

import logging
import os
import stat
import tomllib
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger("hftbacktest")


def read_toml(path: str | os.PathLike, what: str = "config", private: bool = False) -> dict:
    """The parsed file, or ConfigError naming it. `private`: warn when others may read it (it holds secrets)."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read {what} file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    if private:
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            log.warning("%s holds secrets but is readable by others (mode %o); chmod 600 it", p, mode)
    return raw
