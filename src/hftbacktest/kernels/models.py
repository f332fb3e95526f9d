"""Queue, latency, fee and asset models, selected by integer codes so one compiled kernel serves every config."""
from __future__ import annotations

import numpy as np

from .._numba_tricks.borrow import borrowed
from .abi import call_prob
from .numeric import rha, rmin

# queue model codes
QUEUE_RISK_ADVERSE = 0
QUEUE_POWER = 1
QUEUE_POWER2 = 2
QUEUE_POWER3 = 3
QUEUE_LOG = 4
QUEUE_LOG2 = 5
QUEUE_L3_FIFO = 6  # accepted by the builder, not implemented by the engine
QUEUE_CUSTOM = 7  # the user's own probability function, called through its C address

# latency model codes
LATENCY_CONSTANT = 0
LATENCY_INTP = 1

# fee model codes
FEE_TRADING_VALUE = 0
FEE_TRADING_QTY = 1
FEE_FLAT_PER_TRADE = 2

# asset type codes
ASSET_LINEAR = 0
ASSET_INVERSE = 1

# exchange model codes
EXCH_NO_PARTIAL_FILL = 0
EXCH_PARTIAL_FILL = 1


# --- queue position --------------------------------------------------------------------------------------------------


@borrowed
def queue_prob(code, n, front, back, prob_fn):
    if code == QUEUE_CUSTOM:
        return call_prob(prob_fn, front, back)
    if code == QUEUE_POWER:
        bn = back**n
        return bn / (bn + front**n)
    if code == QUEUE_POWER2:
        return back**n / (back + front) ** n
    if code == QUEUE_POWER3:
        return 1.0 - (front / (front + back)) ** n
    if code == QUEUE_LOG:
        lb = np.log(1.0 + back)
        return lb / (lb + np.log(1.0 + front))
    # QUEUE_LOG2
    return np.log(1.0 + back) / np.log(1.0 + back + front)


@borrowed
def queue_trade(code, qf, qc, slot, qty):
    qf[slot] -= qty
    if code != QUEUE_RISK_ADVERSE:
        qc[slot] += qty


@borrowed
def queue_depth(code, n, qf, qc, slot, prev_qty, new_qty, prob_fn=0):
    """A level's qty changed from prev_qty to new_qty: move the order's queue-ahead estimate.
    `prob_fn` is the address of the user's probability function (QUEUE_CUSTOM only)."""
    if code == QUEUE_RISK_ADVERSE:
        qf[slot] = rmin(qf[slot], new_qty)
        return
    chg = prev_qty - new_qty - qc[slot]
    qc[slot] = 0.0
    if chg < 0.0:
        qf[slot] = rmin(qf[slot], new_qty)
        return
    front = qf[slot]
    back = prev_qty - front
    p = queue_prob(code, n, front, back, prob_fn)
    if np.isinf(p):
        p = 1.0
    est = front - (1.0 - p) * chg + rmin(back - p * chg, 0.0)
    qf[slot] = rmin(est, new_qty)


@borrowed
def queue_is_filled(qf, slot, lot):
    """Lot-rounded qty by which trades overran the queue ahead (0 if not reached); resets the queue when filled."""
    k = rha(-qf[slot] / lot)
    if k > 0:
        qf[slot] = 0.0
        return k * lot
    return 0.0


# --- order latency --------------------------------------------------------------------------------------------------


@borrowed(inline="always")
def _intp(x, x1, y1, x2, y2):
    return np.int64((y2 - y1) / (x2 - x1) * (x - x1)) + y1


@borrowed
def intp_entry(tab, cur, ts):
    """Entry latency at ts from a recorded table (req_ts, exch_ts, resp_ts, pad); returns (latency, new cursor)."""
    n = tab.shape[0]
    if ts < tab[0, 0]:
        return tab[0, 1] - tab[0, 0], cur
    while cur + 1 < n and tab[cur + 1, 0] <= ts:
        cur += 1
    if cur + 1 >= n:
        return tab[n - 1, 1] - tab[n - 1, 0], cur
    r0 = tab[cur]
    r1 = tab[cur + 1]
    if r0[1] <= 0 or r1[1] <= 0:
        return -_intp(ts, r0[0], r0[2] - r0[0], r1[0], r1[2] - r1[0]), cur
    return _intp(ts, r0[0], r0[1] - r0[0], r1[0], r1[1] - r1[0]), cur


@borrowed
def intp_response(tab, cur, ts):
    n = tab.shape[0]
    if ts < tab[0, 1]:
        return tab[0, 2] - tab[0, 1], cur
    while cur + 1 < n and tab[cur + 1, 1] <= ts:
        cur += 1
    if cur + 1 >= n:
        return tab[n - 1, 2] - tab[n - 1, 1], cur
    r0 = tab[cur]
    r1 = tab[cur + 1]
    return _intp(ts, r0[1], r0[2] - r0[1], r1[1], r1[2] - r1[1]), cur


# --- fees and trading value -------------------------------------------------------------------------------------------


@borrowed
def trade_amount(asset_type, cs, price, qty):
    if asset_type == ASSET_INVERSE:
        return cs * qty / price
    return cs * price * qty


@borrowed
def trade_fee(fee_model, maker_fee, taker_fee, maker, amount, qty):
    rate = maker_fee if maker else taker_fee
    if fee_model == FEE_TRADING_QTY:
        return rate * qty
    if fee_model == FEE_FLAT_PER_TRADE:
        return rate
    return rate * amount
