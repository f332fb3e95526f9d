"""Perpetual-futures extras: order latency per request type, mark price, funding settlement.

Latency lanes: an `intp_order_latency` table with a `req` column is split at build into one table per request
type (`s.lat_new`, `s.lat_cxl`, `s.lat_mod`); a request uses its type's table, or the whole table (the shared
lane, `s.lat_tab`, exactly the 2.x model) when its type has no rows. The response to a request uses the lane of
that request; fill reports not caused by a request use the shared lane. `s.lat_lx` = cursors
[entry, response] per lane (NEW, CANCELED, REPLACED), then the lane of the request being answered (0 = shared).

Mark price: the local side stores each MARK_PRICE row's px in `s.perp_f[0]` (NaN before the first).

Funding (`s.perp_i[0] != 0`, from the `funding` field of the asset's configuration record): the exchange side
keeps the mark price (101) and the funding rate (102) in force; a FUNDING_RATE row announces the rate for its
funding time (`ival`, or `exch_ts` when `ival` is 0, which is what the reference converter's `T` timestamps give).
The first exchange event strictly after that time, or a rate announced for a later time, settles it once:
`position × mark × rate` (linear, × contract size) or `position × contract size / mark × rate` (inverse, in coin)
is paid from the balance of both sides and added to the cumulative funding.
Live, the bot applies each FUNDING_FEE_EVENT row from the connector with `funding_fee` (the local side only).
`s.perp_f` = [local mark, exchange mark, rate in force, cumulative funding paid];
`s.perp_i` = [enabled, pending funding time (0: none), last settled funding time].
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .._numba_tricks.borrow import borrowed
from ..types import CANCELED, FUNDING_RATE_EVENT, MARK_PRICE_EVENT, NEW, REPLACED
from .models import ASSET_INVERSE, intp_entry, intp_response

LANE_CODES = (NEW, CANCELED, REPLACED)  # request codes a latency table's `req` column may hold (0: any)


@njit(cache=True, error_model="numpy")
def set_latency_lanes(s, lat_new, lat_cxl, lat_mod):
    """Owning helper: store the per-request-type tables (empty: that type uses the shared table)."""
    s.lat_new = lat_new
    s.lat_cxl = lat_cxl
    s.lat_mod = lat_mod


@borrowed(inline="always")
def _lane(s, req):
    """Lane index (0 NEW, 1 CANCELED, 2 REPLACED) of a request type that has rows, else -1 (the shared table)."""
    if req == NEW and s.lat_new.shape[0] > 0:
        return 0
    if req == CANCELED and s.lat_cxl.shape[0] > 0:
        return 1
    if req == REPLACED and s.lat_mod.shape[0] > 0:
        return 2
    return -1


@borrowed(inline="always")
def _lane_table(s, k):
    if k == 0:
        return s.lat_new
    if k == 1:
        return s.lat_cxl
    return s.lat_mod


@borrowed
def entry_latency(s, req, ts):
    """Entry latency of a request of type `req` sent at ts (interpolated-table model)."""
    k = _lane(s, req)
    if k < 0:
        lat, s.lat_ce = intp_entry(s.lat_tab, s.lat_ce, ts)
        return lat
    lat, s.lat_lx[2 * k] = intp_entry(_lane_table(s, k), s.lat_lx[2 * k], ts)
    return lat


@borrowed
def response_latency(s, ts):
    """Response latency of a reply stamped ts at the exchange, in the lane of the request being answered."""
    k = _lane(s, s.lat_lx[6])
    if k < 0:
        lat, s.lat_cr = intp_response(s.lat_tab, s.lat_cr, ts)
        return lat
    lat, s.lat_lx[2 * k + 1] = intp_response(_lane_table(s, k), s.lat_lx[2 * k + 1], ts)
    return lat


@borrowed
def settle_due(s, ts):
    """Settle the pending funding time if the exchange clock (ts) has passed it."""
    t = s.perp_i[1]
    if t != 0 and ts > t:
        _settle(s)


@borrowed
def _settle(s):
    """Pay the pending funding time with the exchange position, mark price and rate in force now."""
    pi = s.perp_i
    pf = s.perp_f
    pos = s.sv_x[0].position
    mark = pf[1]
    pi[2] = pi[1]
    pi[1] = 0
    if pos == 0.0 or not np.isfinite(mark) or mark <= 0.0:
        return
    if s.asset_type == ASSET_INVERSE:
        paid = pos * s.cs / mark * pf[2]
    else:
        paid = pos * s.cs * mark * pf[2]
    _pay(s, s.sv_x, paid)
    _pay(s, s.sv_l, paid)
    pf[3] += paid


@borrowed(inline="always")
def _pay(s, sv, paid):
    if s.asset_type == ASSET_INVERSE:
        sv[0].balance += paid  # inverse balances are kept negated (equity = -balance - position * cs / price)
    else:
        sv[0].balance -= paid


@borrowed
def funding_fee(s, paid):
    """Live: a funding fee the exchange charged (a FUNDING_FEE_EVENT row), counted as a settlement is."""
    _pay(s, s.sv_l, paid)
    s.perp_f[3] += paid


@borrowed
def exch_row(s, kind, ts, px, ival):
    """An EXCH row at ts, after `settle_due`: record the mark price / the rate for the next funding time."""
    if kind == MARK_PRICE_EVENT:
        s.perp_f[1] = px
    elif kind == FUNDING_RATE_EVENT:
        t = ival if ival > 0 else ts
        if t > s.perp_i[2]:  # a funding time already settled is never paid again
            if s.perp_i[1] != 0 and t > s.perp_i[1]:
                # a rate for a later time (stamped at the settlement instant itself): the pending time has passed
                _settle(s)
            s.perp_i[1] = t
            s.perp_f[2] = px
