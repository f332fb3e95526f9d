"""Event-data tools: validation/correction helpers, Binance converters (`hftbacktest.data.utils`), quality
checks and the synthetic feed generator (`hftbacktest.data.synthetic`)."""
from .validation import correct_event_order, correct_local_timestamp, validate_event_order

__all__ = ("correct_local_timestamp", "correct_event_order", "validate_event_order", "FuseMarketDepth")


def __getattr__(name):
    if name == "FuseMarketDepth":
        from .fuse import FuseMarketDepth

        return FuseMarketDepth
    raise AttributeError(name)
