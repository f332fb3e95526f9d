"""Diff-depth synchronisation, as Binance specifies it for USD-M (websocket-market-streams/
How-to-manage-a-local-order-book-correctly):

1. buffer `depthUpdate` events, fetch a REST snapshot (`lastUpdateId`);
2. drop buffered events with `u < lastUpdateId` (`stale`);
3. the first event applied must have `U <= lastUpdateId <= u` (`bridges`);
4. afterwards each event's `pu` must equal the previous event's `u` (`next_diff`), else start over at 1.

Event ids are not contiguous across events on USD-M (`U` of an event is not `pu + 1` in general), so a diff
is checked only by `pu`. The converter's compiled fast path (data/quality.py `sync_run`) is the same APPLY
rule in numba; a unit test holds the two equal.
"""
from __future__ import annotations

APPLY, REPEAT, GAP = 0, 1, 2


def stale(u: int, last_update_id: int) -> bool:
    """A buffered diff that the snapshot already contains (rule 2)."""
    return u < last_update_id


def bridges(U: int, u: int, last_update_id: int) -> bool:
    """The first diff applied after a snapshot straddles its id (rule 3)."""
    return U <= last_update_id <= u


def next_diff(U: int, u: int, pu: int, last_u: int, last_pu: int | None = None) -> int:
    """What a diff is to a synced book whose last applied diff had `last_u` / `last_pu`: APPLY (rule 4), REPEAT
    (an old or repeated diff, e.g. replayed after a reconnect: skip it) or GAP (resynchronise)."""
    if u <= last_u and (pu != last_u or (u == last_u and pu == last_pu)):
        return REPEAT
    return APPLY if pu == last_u else GAP


def snapshot_continues(last_update_id: int, last_u: int) -> bool:
    """A snapshot taken while in sync that the diff chain already covers (a periodic refresh, not a resync)."""
    return last_update_id <= last_u + 1


def snapshot_id(last_u: int) -> int:
    """The `lastUpdateId` a venue serves after diff `last_u`: its next diff (`U = last_u + 1`) bridges it."""
    return last_u + 1
