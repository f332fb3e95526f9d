"""Event-data tools: validation/correction helpers, Binance converters (`hftbacktest.data.utils`), quality
checks and the synthetic feed generator (`hftbacktest.data.synthetic`). numba kernels load on first use."""
from .._lazy import lazy_exports

__all__ = ("correct_local_timestamp", "correct_event_order", "validate_event_order", "FuseMarketDepth")
__getattr__, __dir__ = lazy_exports(__name__, globals(), {
    "correct_local_timestamp": ".validation",
    "correct_event_order": ".validation",
    "validate_event_order": ".validation",
    "FuseMarketDepth": ".fuse",
})
