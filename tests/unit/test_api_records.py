"""Order-view properties (`order.price`, `.cancellable`, ...) must not shadow real fields of other records."""
from __future__ import annotations

import numpy as np
from numba import njit

import hftbacktest  # noqa: F401  (registers the bot's numba extensions)
from hftbacktest import HashMapMarketDepthBacktest  # noqa: F401
from hftbacktest.types import record_dtype


@njit
def _sum_prices(rows):
    total = 0.0
    for i in range(rows.shape[0]):
        total += rows[i].price + rows[i]["price"]
    return total


def test_record_with_a_price_field_reads_its_own_field_inside_njit():
    rows = np.zeros(3, record_dtype)
    rows["price"] = [1.0, 2.0, 4.0]
    assert _sum_prices(rows) == 14.0
