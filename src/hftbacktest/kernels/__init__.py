"""numba kernels of the engine. Importing this package first drops numba caches built from other sources."""
from .._cache_salt import drop_stale_caches

drop_stale_caches()
