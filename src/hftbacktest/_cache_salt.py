"""The cache salt and the stale-cache purge live in `hftbacktest._numba_tricks.salt` (re-exported here)."""
from ._numba_tricks.salt import SALT, digest, drop_stale_caches  # noqa: F401
