"""Order enumerations under the reference's `hftbacktest.order` module path."""
from .types import (  # noqa: F401
    BUY,
    CANCELED,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    GTX,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    NONE,
    PARTIALLY_FILLED,
    REJECTED,
    SELL,
    UNSUPPORTED,
)
