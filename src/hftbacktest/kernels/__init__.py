"""numba kernels of the engine. Importing this package first makes numba's cache safe across processes and drops
numba caches built from other sources (see hftbacktest._numba_tricks.cache)."""
from .._numba_tricks.salt import drop_stale_caches

drop_stale_caches()
