"""`hbt.orders(a).values()`: every call is an independent iterator (nested and interleaved walks)."""
import numpy as np
import pytest
from numba import njit

from hftbacktest import GTC, LIMIT, BacktestAsset, HashMapMarketDepthBacktest

from _engine_data import ask, bid, rows


def _bot_with_orders(ids):
    data = rows(bid(1000, 99.0, 2.0), ask(1000, 101.0, 3.0), bid(10**9, 99.0, 1.0))
    hbt = HashMapMarketDepthBacktest([BacktestAsset().data(data).tick_size(1.0).lot_size(1.0)
                                      .constant_order_latency(10, 10)])
    hbt.elapse(2000)
    for i in ids:
        assert hbt.submit_buy_order(0, i, 90.0 - i, 1.0, GTC, LIMIT, True) == 0
    return hbt


@njit
def _skip_one(it):
    return it.has_next()  # advances the caller's iterator: it is passed by reference to its cursor


@njit
def walk(hbt, pairs, interleaved, counts):
    n = 0
    outer = hbt.orders(0).values()
    while outer.has_next():
        a = outer.get()
        inner = hbt.orders(0).values()
        while inner.has_next():
            pairs[n, 0] = a.order_id
            pairs[n, 1] = inner.get().order_id
            n += 1
    # two live iterators advanced alternately
    x = hbt.orders(0).values()
    y = hbt.orders(0).values()
    k = 0
    while x.has_next():
        interleaved[k] = x.get().order_id
        if y.has_next():
            interleaved[k + 1] = y.get().order_id
        k += 2
    # a fresh values() in a loop starts over each time; a helper advancing it moves the caller's cursor
    for r in range(3):
        it = hbt.orders(0).values()
        _skip_one(it)
        m = 0
        while it.has_next():
            m += 1
        counts[r] = m
    # next(): the order, then None at the end
    it = hbt.orders(0).values()
    seen = 0
    o = it.next()
    while o is not None:
        seen += 1
        o = it.next()
    counts[3] = seen
    return n


def test_nested_and_interleaved_iteration_inside_njit():
    ids = [3, 5, 7]
    hbt = _bot_with_orders(ids)
    pairs = np.zeros((16, 2), np.int64)
    interleaved = np.zeros(8, np.int64)
    counts = np.zeros(4, np.int64)
    n = walk(hbt, pairs, interleaved, counts)
    assert n == 9
    assert sorted(map(tuple, pairs[:n])) == [(a, b) for a in ids for b in ids]
    # x and y each visit every order in the same (slot) order
    assert list(interleaved[0::2][:3]) == list(interleaved[1::2][:3]) and sorted(interleaved[0::2][:3]) == ids
    assert list(counts) == [2, 2, 2, 3]


def test_nested_iteration_from_python():
    hbt = _bot_with_orders([1, 2])
    outer = hbt.orders(0).values()
    seen = []
    while outer.has_next():
        a = outer.get()
        inner = hbt.orders(0).values()
        while inner.has_next():
            seen.append((a.order_id, inner.get().order_id))
    assert sorted(seen) == [(1, 1), (1, 2), (2, 1), (2, 2)]


@njit
def _get_without_has_next(hbt):
    return hbt.orders(0).values().get().order_id


@njit
def _exhausted_stays_exhausted(hbt):
    it = hbt.orders(0).values()
    n = 0
    while it.has_next():
        n += 1
    return n, it.has_next(), it.next() is None


def test_iterator_edges_like_the_reference():
    """Reference Values: get() with no current order raises RuntimeError; once exhausted, has_next() stays False."""
    hbt = _bot_with_orders([4])
    with pytest.raises(RuntimeError):
        _get_without_has_next(hbt)
    assert _exhausted_stays_exhausted(hbt) == (1, False, True)
    it = hbt.orders(0).values()
    with pytest.raises(RuntimeError):
        it.get()
    assert it.has_next() and it.get().order_id == 4 and not it.has_next() and not it.has_next()
    with pytest.raises(RuntimeError):
        it.get()


@njit
def _tick_size_of(hbt, order_id):
    o = hbt.orders(0).get(order_id)
    return o.tick_size, o.price_tick, o.price


def test_order_tick_size_is_the_tick_size_not_the_price_tick():
    """The reference's Order.tick_size returns price_tick (a bug against its own docstring); ours the tick size."""
    hbt = _bot_with_orders([3])
    assert _tick_size_of(hbt, 3) == (1.0, 87, 87.0)
    order = hbt.orders(0).get(3)
    assert (order.tick_size, order.price_tick, order.price) == (1.0, 87, 87.0)
