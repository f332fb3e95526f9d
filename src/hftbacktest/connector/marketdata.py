"""Binance diff-depth bootstrap (the rules of `binance.depth`), and stream payload -> event-row conversion.

Pure logic (no I/O) so it can be tested with replayed Binance payloads. Event rows are the 8-tuple of
the backtest event dtype: (ev, exch_ts, local_ts, px, qty, order_id, ival, fval).
"""
from __future__ import annotations

from ..binance import depth
from ..binance.wire import is_market_trade
from ..binance.numbers import number
from ..types import (
    BUY_EVENT, DEPTH_BBO_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, LOCAL_EVENT, SELL_EVENT, TRADE_EVENT,
)

LOCAL_BID_DEPTH = DEPTH_EVENT | BUY_EVENT | LOCAL_EVENT
LOCAL_ASK_DEPTH = DEPTH_EVENT | SELL_EVENT | LOCAL_EVENT
LOCAL_DEPTH_CLEAR = DEPTH_CLEAR_EVENT | LOCAL_EVENT  # no side flag: both sides
LOCAL_BUY_TRADE = TRADE_EVENT | BUY_EVENT | LOCAL_EVENT
LOCAL_SELL_TRADE = TRADE_EVENT | SELL_EVENT | LOCAL_EVENT
LOCAL_BID_BBO = DEPTH_BBO_EVENT | BUY_EVENT | LOCAL_EVENT
LOCAL_ASK_BBO = DEPTH_BBO_EVENT | SELL_EVENT | LOCAL_EVENT

SYNCING = "SYNCING"
LIVE = "LIVE"


def _ev(kind: int, exch_ts: int, local_ts: int, px: float, qty: float, ival: int = 0) -> tuple:
    return (kind, exch_ts, local_ts, px, qty, 0, ival, 0.0)


class DepthGap(Exception):
    """The U/u/pu chain broke: the book must be rebuilt from a new snapshot."""


class StaleSnapshot(Exception):
    """The REST snapshot is older than the first buffered diff: fetch another."""


class SymbolBook:
    """One symbol's L2 book as the connector maintains it, plus the snapshot/diff synchronisation state."""

    def __init__(self, symbol: str):
        self.symbol = symbol
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.exch_ts = 0
        self.updated_ns = 0  # local time of the last snapshot or applied diff
        self.resync()

    def resync(self) -> None:
        """Back to SYNCING: buffer diffs until a snapshot arrives."""
        self.state = SYNCING
        self.buffer: list[dict] = []
        self.last_u = -1
        self.last_pu = -1
        self._first_after_snapshot = False

    def on_depth(self, msg: dict, local_ts: int) -> list[tuple]:
        """Apply one `depthUpdate`; returns the event rows to publish (empty while syncing or for duplicates).

        Raises DepthGap when the `pu` chain breaks (the caller reports it and calls `resync`)."""
        if self.state == SYNCING:
            self.buffer.append(msg)
            return []
        U, u, pu = msg["U"], msg["u"], msg["pu"]
        if self._first_after_snapshot:  # self.last_u is the snapshot's lastUpdateId
            if depth.stale(u, self.last_u):
                return []
            if not depth.bridges(U, u, self.last_u):
                raise DepthGap(f"depth gap {self.symbol}: first diff U={U} u={u} does not bridge snapshot {self.last_u}")
            self._first_after_snapshot = False
        else:
            verdict = depth.next_diff(U, u, pu, self.last_u, self.last_pu)
            if verdict == depth.REPEAT:
                return []  # already applied
            if verdict == depth.GAP:
                raise DepthGap(f"depth gap {self.symbol} pu={pu} last_u={self.last_u}")
        self.last_u, self.last_pu = u, pu
        return self._apply(msg, local_ts)

    def on_snapshot(self, snap: dict, local_ts: int) -> list[tuple]:
        """Install a REST snapshot: returns clear + every level + surviving buffered diffs.

        Raises StaleSnapshot if the buffered stream already moved past it, DepthGap if the buffer itself broke."""
        last_id = int(snap["lastUpdateId"])
        pending = [m for m in self.buffer if not depth.stale(m["u"], last_id)]
        if pending and not depth.bridges(pending[0]["U"], pending[0]["u"], last_id):
            raise StaleSnapshot(f"snapshot {last_id} older than buffered diff U={pending[0]['U']} for {self.symbol}")
        ts = int(snap.get("T") or snap.get("E") or 0) * 1_000_000
        self.bids = {number(p): number(q) for p, q in snap["bids"] if number(q) > 0}
        self.asks = {number(p): number(q) for p, q in snap["asks"] if number(q) > 0}
        self.exch_ts = ts
        self.updated_ns = local_ts
        out = [_ev(LOCAL_DEPTH_CLEAR, ts, local_ts, 0.0, 0.0)]
        out += [_ev(LOCAL_BID_DEPTH, ts, local_ts, p, q) for p, q in self.bids.items()]
        out += [_ev(LOCAL_ASK_DEPTH, ts, local_ts, p, q) for p, q in self.asks.items()]
        self.state = LIVE
        self.buffer = []
        self.last_u = last_id
        self._first_after_snapshot = True
        for msg in pending:
            out += self.on_depth(msg, local_ts)
        return out

    def _apply(self, msg: dict, local_ts: int) -> list[tuple]:
        ts = int(msg.get("T") or msg["E"]) * 1_000_000
        self.exch_ts = ts
        self.updated_ns = local_ts
        out = []
        for side, book, kind in ((msg["b"], self.bids, LOCAL_BID_DEPTH), (msg["a"], self.asks, LOCAL_ASK_DEPTH)):
            for p, q in side:
                px, qty = number(p), number(q)
                if qty > 0:
                    book[px] = qty
                else:
                    book.pop(px, None)
                out.append(_ev(kind, ts, local_ts, px, qty))
        return out

    def is_stale(self, now_ns: int, max_age_s: float) -> bool:
        """A live book that has not changed for `max_age_s`: its stream may have stalled without closing."""
        return self.state == LIVE and now_ns - self.updated_ns > max_age_s * 1e9

    def snapshot_events(self, local_ts: int) -> list[tuple]:
        """The whole book as clear + levels (bids then asks), for a bot that registers late."""
        if self.state != LIVE:
            return []
        out = [_ev(LOCAL_DEPTH_CLEAR, self.exch_ts, local_ts, 0.0, 0.0)]
        out += [_ev(LOCAL_BID_DEPTH, self.exch_ts, local_ts, p, q) for p, q in sorted(self.bids.items(), reverse=True)]
        out += [_ev(LOCAL_ASK_DEPTH, self.exch_ts, local_ts, p, q) for p, q in sorted(self.asks.items())]
        return out


def trade_event(msg: dict, local_ts: int) -> tuple | None:
    """`trade` payload -> event row; only MARKET trades count (insurance-fund/ADL prints are not trades)."""
    if not is_market_trade(msg):
        return None
    kind = LOCAL_SELL_TRADE if msg["m"] else LOCAL_BUY_TRADE
    return _ev(kind, int(msg["T"]) * 1_000_000, local_ts, number(msg["p"]), number(msg["q"]), int(msg.get("t", 0)))


def book_ticker_events(msg: dict, local_ts: int) -> list[tuple]:
    ts = int(msg.get("T") or msg["E"]) * 1_000_000
    return [
        _ev(LOCAL_BID_BBO, ts, local_ts, number(msg["b"]), number(msg["B"])),
        _ev(LOCAL_ASK_BBO, ts, local_ts, number(msg["a"]), number(msg["A"])),
    ]
