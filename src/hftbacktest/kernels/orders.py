"""Order storage: an id-keyed order table (local and exchange side) and the FIFO order buses between them.

* `IntMap`: open-addressing i64 -> i64 hash map over numpy arrays (order id -> slot, price tick -> first slot).
* `OrderTable`: orders live in slots of an `order_dtype` array (so `hbt.orders(a).get(id)` is a record view into
  it); iteration order is slot order. The exchange side also keeps, per resting order, the queue-model state and
  a per-side price ladder (tick -> doubly-linked list of slots) so per-event lookups are O(1).
* `Bus`: the request/response queue (timestamps forced non-decreasing).
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.experimental import structref
from numba.np import numpy_support
from numba.typed import List

from .._numba_tricks.borrow import borrowed
from ..types import BUY, CANCELED, EXPIRED, FILLED, order_dtype
from .structbase import CompactStructRef
from .numeric import I64_MAX, I64_MIN, resized


@structref.register
class IntMapType(CompactStructRef):
    pass


@structref.register
class OrderTableType(CompactStructRef):
    pass


@structref.register
class BusType(CompactStructRef):
    pass


class IntMap(structref.StructRefProxy):
    pass


class Bus(structref.StructRefProxy):
    pass


structref.define_boxing(IntMapType, IntMap)
structref.define_boxing(BusType, Bus)

order_record_type = numpy_support.from_dtype(order_dtype)
order_array_type = types.Array(order_record_type, 1, "C")

intmap_type = IntMapType(
    [
        ("keys", types.int64[::1]),
        ("vals", types.int64[::1]),
        ("st", types.uint8[::1]),  # 0 empty, 1 used, 2 deleted
        ("n", types.int64),
        ("ndel", types.int64),
    ]
)

table_type = OrderTableType(
    [
        ("rec", order_array_type),
        ("used", types.uint8[::1]),
        ("top", types.int64),  # slots >= top were never used
        ("n", types.int64),
        ("free", types.int64[::1]),
        ("nfree", types.int64),
        ("ids", intmap_type),
        ("dirty", types.boolean),  # may hold inactive orders (local side: skip clear_inactive scans)
        ("entry", types.int64),  # address of the C entry point (user-code views look ids up through it)
        ("cursor", types.int64),  # iteration cursor of `values()`
        ("retired", types.ListType(order_array_type)),  # record arrays replaced by growth (see _grow)
        # exchange side only
        ("qf", types.float64[::1]),  # queue: qty ahead
        ("qc", types.float64[::1]),  # queue: cumulative traded qty since the last depth change
        ("lnext", types.int64[::1]),
        ("lprev", types.int64[::1]),
        ("lad_buy", intmap_type),
        ("lad_sell", intmap_type),
        ("nbuy", types.int64),
        ("nsell", types.int64),
        ("max_buy", types.int64),
        ("min_sell", types.int64),
    ]
)

bus_type = BusType(
    [
        ("rec", order_array_type),
        ("ts", types.int64[::1]),
        ("head", types.int64),
        ("tail", types.int64),
    ]
)


# --- IntMap --------------------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def new_intmap(cap):
    m = structref.new(intmap_type)
    m.keys = np.zeros(cap, np.int64)
    m.vals = np.zeros(cap, np.int64)
    m.st = np.zeros(cap, np.uint8)
    m.n = 0
    m.ndel = 0
    return m


@borrowed(inline="always")
def _hash(k, mask):
    x = np.uint64(k) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64((x >> np.uint64(29)) & np.uint64(mask))


@borrowed
def imap_get(m, k):
    """Value for key k, or -1."""
    mask = m.keys.shape[0] - 1
    i = _hash(k, mask)
    while True:
        s = m.st[i]
        if s == 0:
            return np.int64(-1)
        if s == 1 and m.keys[i] == k:
            return m.vals[i]
        i = (i + 1) & mask


@borrowed
def _imap_insert_raw(keys, vals, st, k, v):
    mask = keys.shape[0] - 1
    i = _hash(k, mask)
    while st[i] == 1:
        i = (i + 1) & mask
    keys[i] = k
    vals[i] = v
    st[i] = 1


@borrowed
def imap_put(m, k, v):
    mask = m.keys.shape[0] - 1
    i = _hash(k, mask)
    first_del = -1
    while True:
        s = m.st[i]
        if s == 0:
            break
        if s == 1 and m.keys[i] == k:
            m.vals[i] = v
            return
        if s == 2 and first_del < 0:
            first_del = i
        i = (i + 1) & mask
    if first_del >= 0:
        i = first_del
        m.ndel -= 1
    m.keys[i] = k
    m.vals[i] = v
    m.st[i] = 1
    m.n += 1
    if (m.n + m.ndel) * 2 > m.keys.shape[0]:
        _imap_rehash(m)


@njit(cache=True, error_model="numpy")
def _imap_rehash(m):
    """Rebuild without tombstones, doubling when more than a quarter full (owning: replaces the arrays)."""
    cap = m.keys.shape[0]
    if m.n * 4 > cap:
        cap *= 2
    keys = np.zeros(cap, np.int64)
    vals = np.zeros(cap, np.int64)
    st = np.zeros(cap, np.uint8)
    for j in range(m.keys.shape[0]):
        if m.st[j] == 1:
            _imap_insert_raw(keys, vals, st, m.keys[j], m.vals[j])
    m.keys = keys
    m.vals = vals
    m.st = st
    m.ndel = 0


@borrowed
def imap_del(m, k):
    mask = m.keys.shape[0] - 1
    i = _hash(k, mask)
    while True:
        s = m.st[i]
        if s == 0:
            return
        if s == 1 and m.keys[i] == k:
            m.st[i] = 2
            m.n -= 1
            m.ndel += 1
            return
        i = (i + 1) & mask


@borrowed
def imap_clear(m):
    """Remove every key (in place: the arrays keep their size)."""
    m.st[:] = 0
    m.n = 0
    m.ndel = 0


# --- OrderTable ----------------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def new_table(cap):
    t = structref.new(table_type)
    t.rec = np.zeros(cap, order_dtype)
    t.used = np.zeros(cap, np.uint8)
    t.top = 0
    t.n = 0
    t.free = np.zeros(cap, np.int64)
    t.nfree = 0
    t.ids = new_intmap(4 * cap)
    t.dirty = False
    t.entry = 0
    t.cursor = -1
    t.retired = List.empty_list(order_array_type)
    t.qf = np.zeros(cap, np.float64)
    t.qc = np.zeros(cap, np.float64)
    t.lnext = np.full(cap, -1, np.int64)
    t.lprev = np.full(cap, -1, np.int64)
    t.lad_buy = new_intmap(4 * cap)
    t.lad_sell = new_intmap(4 * cap)
    t.nbuy = 0
    t.nsell = 0
    t.max_buy = I64_MIN
    t.min_sell = I64_MAX
    return t


@borrowed
def find(t, oid):
    """Slot of order id `oid` (i64 bit pattern of the u64 id), or -1."""
    return imap_get(t.ids, np.int64(oid))


@njit(cache=True, error_model="numpy")
def _grow(t):
    """Double the table (owning). The old record array is kept alive with the table: user code may still hold an
    order record (`orders.get(id)`, `values().get()`), a bare pointer into it, which would otherwise point into
    freed memory (garbage, or a segfault once the allocator unmaps it). Such a record then shows the order as it
    was before the growth. Kept memory is less than the table's current size (capacities double)."""
    cap = t.rec.shape[0]
    ncap = cap * 2
    t.retired.append(t.rec)
    t.rec = resized(t.rec, ncap, 0, cap)
    t.used = resized(t.used, ncap, 0, cap)
    t.free = resized(t.free, ncap, 0, cap)
    t.qf = resized(t.qf, ncap, 0, cap)
    t.qc = resized(t.qc, ncap, 0, cap)
    ln = resized(t.lnext, ncap, 0, cap)
    lp = resized(t.lprev, ncap, 0, cap)
    for k in range(cap, ncap):
        ln[k] = -1
        lp[k] = -1
    t.lnext = ln
    t.lprev = lp


@borrowed
def insert(t, src, i):
    """Copy order record src[i] into a new slot; returns the slot."""
    if t.nfree > 0:
        t.nfree -= 1
        slot = t.free[t.nfree]
    else:
        if t.top == t.rec.shape[0]:
            _grow(t)
        slot = t.top
        t.top += 1
    t.rec[slot] = src[i]
    t.used[slot] = 1
    t.n += 1
    imap_put(t.ids, np.int64(t.rec[slot].order_id), slot)
    return slot


@borrowed
def remove(t, slot):
    imap_del(t.ids, np.int64(t.rec[slot].order_id))
    t.used[slot] = 0
    t.n -= 1
    t.free[t.nfree] = slot
    t.nfree += 1
    if t.n == 0:
        t.nfree = 0
        t.top = 0


@borrowed
def clear_inactive(t):
    if not t.dirty:
        return
    for slot in range(t.top):
        if t.used[slot] == 1:
            st = t.rec[slot].status
            if st == EXPIRED or st == FILLED or st == CANCELED:
                remove(t, slot)
    t.dirty = False


@borrowed
def next_used(t, slot):
    """First used slot >= slot, or -1."""
    while slot < t.top:
        if t.used[slot] == 1:
            return slot
        slot += 1
    return np.int64(-1)


# --- exchange ladder (resting orders by side and price tick) ---------------------------------------------------------


@borrowed
def ladder_add(t, slot):
    tick = t.rec[slot].price_tick
    lad = t.lad_buy if t.rec[slot].side == BUY else t.lad_sell
    head = imap_get(lad, tick)
    t.lprev[slot] = -1
    t.lnext[slot] = head
    if head >= 0:
        t.lprev[head] = slot
    imap_put(lad, tick, slot)
    if t.rec[slot].side == BUY:
        t.nbuy += 1
        if tick > t.max_buy:
            t.max_buy = tick
    else:
        t.nsell += 1
        if tick < t.min_sell:
            t.min_sell = tick


@borrowed
def _recompute_bounds(t):
    t.max_buy = I64_MIN
    t.min_sell = I64_MAX
    for s in range(t.top):
        if t.used[s] == 1:
            p = t.rec[s].price_tick
            if t.rec[s].side == BUY:
                if p > t.max_buy:
                    t.max_buy = p
            elif p < t.min_sell:
                t.min_sell = p


@borrowed
def ladder_remove(t, slot):
    """Unlink a resting order from its ladder and free its slot."""
    tick = t.rec[slot].price_tick
    is_buy = t.rec[slot].side == BUY
    lad = t.lad_buy if is_buy else t.lad_sell
    prv = t.lprev[slot]
    nxt = t.lnext[slot]
    if prv >= 0:
        t.lnext[prv] = nxt
    elif nxt >= 0:
        imap_put(lad, tick, nxt)
    else:
        imap_del(lad, tick)
    if nxt >= 0:
        t.lprev[nxt] = prv
    t.lnext[slot] = -1
    t.lprev[slot] = -1
    remove(t, slot)
    if is_buy:
        t.nbuy -= 1
        if tick == t.max_buy:
            _recompute_bounds(t)
    else:
        t.nsell -= 1
        if tick == t.min_sell:
            _recompute_bounds(t)


@borrowed
def ladder_head(t, is_buy, tick):
    return imap_get(t.lad_buy if is_buy else t.lad_sell, tick)


# --- Bus -----------------------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def new_bus(cap):
    b = structref.new(bus_type)
    b.rec = np.zeros(cap, order_dtype)
    b.ts = np.zeros(cap, np.int64)
    b.head = 0
    b.tail = 0
    return b


@njit(cache=True, error_model="numpy")
def _bus_compact(b):
    """Full at the tail: move the live messages to the front, doubling when more than half full (owning)."""
    n = b.tail - b.head
    cap = b.rec.shape[0] * 2 if n * 2 > b.rec.shape[0] else b.rec.shape[0]
    b.rec = resized(b.rec, cap, b.head, b.tail)
    b.ts = resized(b.ts, cap, b.head, b.tail)
    b.head = 0
    b.tail = n


@borrowed
def bus_append(b, src, i, ts):
    """Enqueue a copy of src[i] at max(ts, last timestamp) so a later message never overtakes an earlier one."""
    if b.tail > b.head and b.ts[b.tail - 1] > ts:
        ts = b.ts[b.tail - 1]
    if b.tail == b.rec.shape[0]:
        _bus_compact(b)
    b.rec[b.tail] = src[i]
    b.ts[b.tail] = ts
    b.tail += 1


@borrowed
def bus_head_ts(b):
    if b.head == b.tail:
        return np.int64(I64_MAX)
    return b.ts[b.head]


@borrowed
def bus_pop(b):
    """Index (into b.rec) of the popped head; valid until the next append."""
    i = b.head
    b.head += 1
    if b.head == b.tail:
        b.head = 0
        b.tail = 0
    return i
