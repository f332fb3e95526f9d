"""The live bot: a numba StructRef with the backtest bot's methods, so one `@njit` strategy runs in both.

Per instrument it holds one of the backtest engine's asset states (depth, local order table, state values,
trades, latencies) and updates them with the engine's kernels. Only the waits (`elapse`, `wait_next_feed`,
`wait_order_response`) and the order requests leave nopython mode, through an `objmode` block that polls or
writes the IPC channel (`runtime.LiveRuntime`); depth and order reads stay compiled.
"""
from __future__ import annotations

import ctypes
import time

import numpy as np
from llvmlite import ir
from numba import njit, objmode, types
from numba.core import cgutils
from numba.core.extending import intrinsic, overload_attribute, overload_method
from numba.experimental import structref
from numba.typed import List

from .._numba_tricks.salt import SALT
from ..backtest import bot as _views  # noqa: F401  (registers the depth/order/state views the strategy reads)
from ..backtest.views import depth_view_type, orders_view_type, recast
from ..kernels import depth as dp
from ..kernels.entry import address as entry_address
from ..kernels import local as lc
from ..kernels import orders as ob
from ..kernels import perp
from ..kernels.exchange import apply_fill
from ..kernels.state import asset_config_dtype, asset_state_type, event_array_type, new_asset_state
from ..kernels.orders import order_array_type
from ..types import (
    BUY, CANCELED, EXPIRED, FILLED, FUNDING_FEE_EVENT, NEW, NONE, PARTIALLY_FILLED, REPLACED, SELL, ReturnCode,
    event_dtype,
)
from .runtime import ST_CHECK_PENDING, ST_HANDLER_FAILED, ST_INTERRUPTED, ST_MORE, runtime

# return codes (types.ReturnCode; the live-only ones follow the reference's live bot), as plain ints for numba
OK = int(ReturnCode.OK)
END_OF_DATA = int(ReturnCode.END_OF_DATA)  # interrupted by SIGINT/SIGTERM: the live analogue of the end of the data
MARKET_FEED = int(ReturnCode.MARKET_FEED)
ORDER_RESPONSE = int(ReturnCode.ORDER_RESPONSE)
ORDER_ID_EXIST = int(ReturnCode.ORDER_ID_EXIST)
ORDER_NOT_FOUND = int(ReturnCode.ORDER_NOT_FOUND)
INVALID_ORDER_STATUS = int(ReturnCode.INVALID_ORDER_STATUS)
INSTRUMENT_NOT_FOUND = int(ReturnCode.INSTRUMENT_NOT_FOUND)
TIMEOUT = int(ReturnCode.TIMEOUT)
INTERRUPTED = int(ReturnCode.INTERRUPTED)
CUSTOM = int(ReturnCode.CUSTOM)

REQUEST_TIMEOUT_NS = 60_000_000_000  # default: a request unanswered this long is given up (`Custom(1006)`)

# wait modes
_W_ELAPSE = 0
_W_FEED = 1
_W_FEED_OR_ORDER = 2
_W_ORDER = 3


@structref.register
class LiveBotType(types.StructRef):
    """Named after the class and the package's cache salt (`_numba_tricks.salt.SALT`), not its field list: a user's
    `@njit(cache=True)` strategy compiled against another version of this package has another signature, so numba
    recompiles it instead of loading machine code built for other fields or overloads."""

    def __init__(self, fields):
        super().__init__(fields)
        self.name = f"hftbacktest.LiveBotType.{SALT}"

    has_funding = True  # the Recorder records hbt.funding (recorder.py)

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


live_bot_type = LiveBotType(
    [
        ("assets", types.ListType(asset_state_type)),
        ("num_assets", types.int64),
        ("key", types.int64),  # LiveRuntime registry key
        ("st_feed", event_array_type),  # staging arrays shared with the runtime
        ("st_feed_asset", types.int64[::1]),
        ("st_orders", order_array_type),
        ("st_order_asset", types.int64[::1]),
        ("st_position", types.float64[::1]),
        ("st_position_set", types.uint8[::1]),
        ("st_counts", types.int64[::1]),
        ("st_latency", types.int64[:, ::1]),
        ("st_n_latency", types.int64[::1]),
        ("st_replayed", types.uint8[::1]),
        ("poll_fn", types.int64),  # address of the runtime's poll callback: int64 poll(int64 key)
        ("clock_fn", types.int64),  # address of libc clock_gettime
        ("request_timeout", types.int64),  # ns; also the longest `wait=True` of an order request
        ("has_hook", types.boolean),  # an order_recv_hook is installed
    ]
)


class LiveBot(structref.StructRefProxy):
    """Python handle of the live bot; pass it to the `@njit` strategy. Methods also work from plain Python."""

    @property
    def num_assets(self):
        """Number of instruments the bot trades."""
        return _num_assets(self)

    def elapse(self, duration):
        """Wait `duration` ns of wall-clock time, applying market data and order updates as they arrive. Returns
        0, END_OF_DATA (1) once SIGINT/SIGTERM arrived, CUSTOM (19) if the error handler or the order hook
        raised."""
        return int(_elapse(self, int(duration)))

    def wait_next_feed(self, include_order_resp, timeout):
        """Wait for the next market data (or, with include_order_resp, order update), at most `timeout` ns.
        Returns MARKET_FEED (2), ORDER_RESPONSE (3), or 0 when the timeout passed first."""
        return int(_wait_next_feed(self, bool(include_order_resp), int(timeout)))

    def wait_order_response(self, asset_no, order_id, timeout):
        """Wait for the answer to the order's pending request, at most `timeout` ns. Returns ORDER_RESPONSE (3),
        or 0 when the timeout passed first."""
        return int(_wait_order_response(self, asset_no, np.int64(np.uint64(order_id)), int(timeout)))

    @property
    def current_timestamp(self):
        """Wall-clock time, ns since the epoch."""
        return time.time_ns()

    def orders(self, asset_no):
        """The instrument's orders as the bot knows them: get(id), values(), `in`, len."""
        return _orders(self, asset_no)

    def last_trades(self, asset_no):
        """Market trades received since the last clear_last_trades (needs the instrument's
        last_trades_capacity)."""
        return _last_trades(self, asset_no)

    def clear_last_trades(self, asset_no):
        """Forget the recorded market trades of the instrument (-1: of every instrument)."""
        _clear_last_trades(self, asset_no)

    def modify(self, asset_no, order_id, price, qty, wait):
        """Amend a resting LIMIT order's price and quantity (Binance's order amendment; docs/live.md). With
        `wait`, return once answered. Returns a ReturnCode (0: sent)."""
        return int(_modify(self, asset_no, np.int64(np.uint64(order_id)), float(price), float(qty), wait))

    def depth(self, asset_no):
        """The instrument's order book as the connector streams it, a live view."""
        return _depth(self, asset_no)

    def state_values(self, asset_no):
        """The instrument's state record (position and trade counters), a live view."""
        # np.record (`.position` works, as on the backtest bot), still a view of the engine state
        return _state_values(self, asset_no).view(np.recarray)[0]

    def position(self, asset_no):
        """The instrument's position (signed; negative when short), as the exchange reports it."""
        return float(_position(self, asset_no))

    def mark_price(self, asset_no):
        """The last mark price the connector forwarded (`markPrice@1s` stream); NaN before the first."""
        return float(_perp(self, asset_no)[0])

    def funding(self, asset_no):
        """Cumulative funding fees the exchange charged since the bot started (ACCOUNT_UPDATE reason
        FUNDING_FEE; negative: received), taken from the balance as in the backtest."""
        return float(_perp(self, asset_no)[1])

    def elapse_bt(self, duration):
        return 0  # live time passes by itself, as in the compiled method

    def feed_latency(self, asset_no):
        lat = _latencies(self, asset_no)
        return (int(lat[1]), int(lat[2])) if lat[0] else None

    def order_latency(self, asset_no):
        lat = _latencies(self, asset_no)
        return (int(lat[4]), int(lat[5]), int(lat[6])) if lat[3] else None

    def submit_buy_order(self, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        """Send a buy order through the connector (`order_id` unique among the instrument's orders; an invalid
        price or quantity returns 13 and sends nothing). With `wait`, return once the exchange answered. Returns
        a ReturnCode (0: sent)."""
        return int(_submit(self, asset_no, np.int64(np.uint64(order_id)), BUY, float(price), float(qty),
                           time_in_force, order_type, wait))

    def submit_sell_order(self, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        """Send a sell order; as submit_buy_order."""
        return int(_submit(self, asset_no, np.int64(np.uint64(order_id)), SELL, float(price), float(qty),
                           time_in_force, order_type, wait))

    def cancel(self, asset_no, order_id, wait):
        """Ask the exchange to cancel an open order. With `wait`, return once answered. Returns a ReturnCode."""
        return int(_cancel(self, asset_no, np.int64(np.uint64(order_id)), wait))

    def clear_inactive_orders(self, asset_no):
        """Remove filled, cancelled and expired orders from the instrument's order table (-1: every instrument)."""
        return _clear_inactive_orders(self, asset_no)

    def close(self):
        """Detach from the connector(s) and release the bot's IPC resources. Returns 0."""
        return _close(self)


structref.define_boxing(LiveBotType, LiveBot)


# --- construction -----------------------------------------------------------------------------------------------


@njit(cache=True)
def _new_bot(tick, lot, mode, roi_lb, roi_ub, record_trades, key, feed, feed_asset, orders, order_asset, position,
             position_set, counts, latency, n_latency, replayed, entry, poll_fn, clock_fn, request_timeout, has_hook):
    """Per instrument, an engine asset state used only on its local side (no latency model, no fees, no data)."""
    assets = List.empty_list(asset_state_type)
    no_data = np.zeros(0, event_dtype)
    for a in range(tick.shape[0]):
        depth = dp.new_depth(mode[a], tick[a], lot[a], roi_lb[a], roi_ub[a], False)
        cfg = np.zeros(1, asset_config_dtype)
        cfg[0].tick_size = tick[a]
        cfg[0].lot_size = lot[a]
        cfg[0].contract_size = 1.0
        cfg[0].record_trades = record_trades[a] != 0
        s = new_asset_state(cfg, np.zeros((0, 4), np.int64), depth, depth, no_data, 0)
        s.ord_l.entry = entry  # the order views (`get`, `in`) look ids up through the engine's C entry point
        assets.append(s)
    b = structref.new(live_bot_type)
    b.assets = assets
    b.num_assets = len(assets)
    b.key = key
    b.st_feed = feed
    b.st_feed_asset = feed_asset
    b.st_orders = orders
    b.st_order_asset = order_asset
    b.st_position = position
    b.st_position_set = position_set
    b.st_counts = counts
    b.st_latency = latency
    b.st_n_latency = n_latency
    b.st_replayed = replayed
    b.poll_fn = poll_fn
    b.clock_fn = clock_fn
    b.request_timeout = request_timeout
    b.has_hook = has_hook
    return b


def new_live_bot(instruments: list, depth_modes: list[tuple[int, float, float]], rt) -> LiveBot:
    tick = np.array([i.tick_size for i in instruments], np.float64)
    lot = np.array([i.lot_size for i in instruments], np.float64)
    mode = np.array([m[0] for m in depth_modes], np.int64)
    roi_lb = np.array([m[1] for m in depth_modes], np.float64)
    roi_ub = np.array([m[2] for m in depth_modes], np.float64)
    record_trades = np.array([1 if i.last_trades_capacity > 0 else 0 for i in instruments], np.int64)
    bot = _new_bot(tick, lot, mode, roi_lb, roi_ub, record_trades, rt.key, rt.feed, rt.feed_asset, rt.orders,
                    rt.order_asset, rt.position, rt.position_set, rt.counts, rt.latency, rt.n_latency,
                    rt.replayed, entry_address(), rt.poll_address, _CLOCK_ADDRESS, rt.request_timeout_ns,
                    rt.order_recv_hook is not None)
    # Boxed as the current (salted) type: the cached constructor returns the type of the salt it was cached with.
    return LiveBot._numba_box_(live_bot_type, bot._meminfo)


# --- native calls: the hot path of every wait avoids objmode ------------------------------------------------------
# `elapse(0)` polls the IPC channels once. Through objmode that costs a few µs of boxing and frame setup; instead
# the compiled code calls the runtime's poll as a C function pointer (a ctypes callback, stored in the bot) and
# reads the wall clock straight from libc. Addresses are run-time data, so the compiled code stays cacheable.

_CLOCK_ADDRESS = ctypes.cast(ctypes.CDLL(None).clock_gettime, ctypes.c_void_p).value
_CLOCK_REALTIME = 0


@intrinsic
def _call_poll(typingctx, fn, key):
    """`int64 fn(int64 key)` through its address."""

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(64)])
        return builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [args[1]])

    return types.int64(types.int64, types.int64), codegen


@intrinsic
def _clock_ns(typingctx, fn):
    """Wall-clock nanoseconds from libc `clock_gettime(CLOCK_REALTIME, &ts)` through its address."""

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        ts = cgutils.alloca_once(builder, ir.ArrayType(i64, 2))
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32), ts.type])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [ir.Constant(ir.IntType(32), _CLOCK_REALTIME), ts])
        zero = ir.Constant(ir.IntType(32), 0)
        sec = builder.load(builder.gep(ts, [zero, zero]))
        nsec = builder.load(builder.gep(ts, [zero, ir.Constant(ir.IntType(32), 1)]))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return types.int64(types.int64), codegen


# --- the Python side, reached from objmode ----------------------------------------------------------------------


def _py_send(key, asset, orders, slot):
    rt = runtime(key)
    try:
        rt.send_order(asset, orders, slot)
    except Exception as exc:  # IPC failure: the request did not leave
        rt.log_send_failure(exc)
        return 1
    return 0


def _py_order_hook(key, asset, local, slot, staged, k):
    """Call the order_recv_hook with copies of the local order and the received update; 1 if it raised."""
    return runtime(key).call_order_hook(asset, local[slot].copy(), staged[k].copy())


def _py_request_timed_out(key, asset, orders, slot):
    return runtime(key).report_request_timeout(asset, orders[slot].copy())


def _py_close(key):
    runtime(key).close()


# --- compiled core ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _now(bot):
    return _clock_ns(bot.clock_fn)


@njit(cache=True)
def _apply_orders(bot, n, now, wait_asset, wait_id, match_any):
    """Merge staged order updates into the local tables. Returns (one answers the awaited order, the
    order_recv_hook raised)."""
    found = False
    hook_failed = False
    key = bot.key
    for k in range(n):
        a = bot.st_order_asset[k]
        s = bot.assets[a]
        r = bot.st_orders[k]
        t = s.ord_l
        slot = ob.find(t, r.order_id)
        if slot >= 0 and bot.has_hook:
            local = t.rec
            staged = bot.st_orders
            with objmode(failed="int64"):
                failed = _py_order_hook(key, a, local, slot, staged, k)
            if failed:
                hook_failed = True
        if slot >= 0:
            o = t.rec[slot]
            if (o.req == NEW or o.req == CANCELED or o.req == REPLACED) and r.req == NONE:
                i = bot.st_n_latency[0]
                if i < bot.st_latency.shape[0]:
                    bot.st_latency[i, 0] = o.local_timestamp
                    bot.st_latency[i, 1] = r.exch_timestamp
                    bot.st_latency[i, 2] = now
                    bot.st_latency[i, 3] = o.req
                    bot.st_n_latency[0] = i + 1
            st = o.status
            if st == FILLED or st == CANCELED or st == EXPIRED:
                pass  # already dead here: nothing may revive it
            elif r.exch_timestamp >= o.exch_timestamp:
                local_ts = o.local_timestamp
                t.rec[slot] = r
                o.local_timestamp = local_ts
            else:
                o.req = r.req  # an older state still ends the pending request
        else:
            slot = ob.insert(t, bot.st_orders, k)  # an order announced at registration
        if r.exec_qty > 0.0:
            # Fill accounting (balance, fee, volume) as in the backtest; the position itself is the exchange's,
            # from its account updates, which may arrive before or after the order update.
            position = s.sv_l[0].position
            apply_fill(s, s.sv_l, r)
            s.sv_l[0].position = position
        st = t.rec[slot].status
        if st == FILLED or st == CANCELED or st == EXPIRED:
            t.dirty = True
        if r.exch_timestamp > 0:
            s.ord_lat[0] = r.local_timestamp
            s.ord_lat[1] = r.exch_timestamp
            s.ord_lat[2] = now
            s.has_ord_lat = True
        if match_any or (a == wait_asset and np.int64(r.order_id) == wait_id):
            found = True
    return found, hook_failed


@njit(cache=True)
def _expire_pending_requests(bot, now):
    """Give up on requests unanswered for longer than `request_timeout`: the order's `req` is cleared locally
    and the error handler hears `Custom(1006)`. Returns True if the handler raised."""
    failed = False
    key = bot.key
    for a in range(bot.num_assets):
        t = bot.assets[a].ord_l
        for slot in range(t.top):
            if t.used[slot] == 0:
                continue
            o = t.rec[slot]
            if o.req == NONE or now - o.local_timestamp <= bot.request_timeout:
                continue
            orders = t.rec
            with objmode(rc="int64"):
                rc = _py_request_timed_out(key, a, orders, slot)
            o.req = NONE
            if rc:
                failed = True
    return failed


@njit(cache=True)
def _forget_unreplayed(bot, a, n_ord):
    """After a re-registration the connector's replay lists every live order of the asset: a local order it
    does not list is gone (filled or cancelled while updates were lost) unless its submission is still pending."""
    t = bot.assets[a].ord_l
    for slot in range(t.top):
        if t.used[slot] == 0:
            continue
        o = t.rec[slot]
        if not (o.status == NEW or o.status == PARTIALLY_FILLED) or o.req == NEW:
            continue
        listed = False
        for k in range(n_ord):
            if bot.st_order_asset[k] == a and bot.st_orders[k].order_id == o.order_id:
                listed = True
                break
        if not listed:
            o.status = EXPIRED
            o.req = NONE
            t.dirty = True


@njit(cache=True)
def _wait(bot, timeout, mode, wait_asset, wait_id):
    """Poll the connectors until the condition of `mode` holds or `timeout` ns passed (whole batches only)."""
    key = bot.key
    deadline = -1
    result = OK
    hook_or_handler_failed = False
    while True:
        st = _call_poll(bot.poll_fn, key)
        now = _clock_ns(bot.clock_fn)
        if deadline < 0:
            deadline = now + timeout
        n_feed = bot.st_counts[0]
        for k in range(n_feed):
            if (np.int64(bot.st_feed[k].ev) & 0xFF) == FUNDING_FEE_EVENT:
                perp.funding_fee(bot.assets[bot.st_feed_asset[k]], bot.st_feed[k].px)
            else:
                lc.process_data(bot.assets[bot.st_feed_asset[k]], bot.st_feed, k)
        for a in range(bot.num_assets):
            if bot.st_position_set[a]:
                bot.assets[a].sv_l[0].position = bot.st_position[a]
                bot.st_position_set[a] = 0
        n_ord = bot.st_counts[1]
        failed = False
        if n_ord > 0:
            answered, failed = _apply_orders(bot, n_ord, now, wait_asset, wait_id, mode == _W_FEED_OR_ORDER)
            if result == OK and answered and (mode == _W_ORDER or mode == _W_FEED_OR_ORDER):
                result = ORDER_RESPONSE
        if st & ST_CHECK_PENDING and _expire_pending_requests(bot, now):
            failed = True
        if result == OK and n_feed > 0 and (mode == _W_FEED or mode == _W_FEED_OR_ORDER):
            result = MARKET_FEED
        for a in range(bot.num_assets):
            if bot.st_replayed[a]:
                _forget_unreplayed(bot, a, n_ord)
                bot.st_replayed[a] = 0
        if failed:
            hook_or_handler_failed = True
        if st & ST_MORE:
            continue  # never return in the middle of a batch
        if st & ST_HANDLER_FAILED or hook_or_handler_failed:
            return CUSTOM
        if st & ST_INTERRUPTED:
            return END_OF_DATA
        if result != OK or now >= deadline:
            return result


@njit(cache=True)
def _send_request(bot, asset_no, slot):
    key = bot.key
    orders = bot.assets[asset_no].ord_l.rec
    with objmode(rc="int64"):
        rc = _py_send(key, asset_no, orders, slot)
    return rc


@njit(cache=True)
def _submit_impl(bot, asset_no, order_id, side, price, qty, tif, order_type, wait):
    if asset_no < 0 or asset_no >= bot.num_assets:
        return INSTRUMENT_NOT_FOUND
    s = bot.assets[asset_no]
    now = _now(bot)
    rc = lc.submit(s, now, order_id, side, price, qty, tif, order_type)
    if rc != OK:
        return rc
    s.to_exch.head = 0  # live requests go over IPC, not through the simulated bus
    s.to_exch.tail = 0
    slot = ob.find(s.ord_l, order_id)
    o = s.ord_l.rec[slot]
    o.status = NEW  # the reference live bot shows a submitted order as NEW while its request is pending
    if _send_request(bot, asset_no, slot) != OK:
        ob.remove(s.ord_l, slot)
        return CUSTOM
    if wait:
        return _wait(bot, bot.request_timeout, _W_ORDER, asset_no, np.int64(order_id))
    return OK


@njit(cache=True)
def _send_pending(bot, asset_no, order_id, wait):
    """Send the request the local order table just recorded (modify/cancel) to the connector, then optionally wait
    for its answer. A request that cannot be sent leaves the order as it was."""
    s = bot.assets[asset_no]
    slot = ob.find(s.ord_l, order_id)
    if _send_request(bot, asset_no, slot) != OK:
        s.ord_l.rec[slot].req = NONE
        return CUSTOM
    if wait:
        return _wait(bot, bot.request_timeout, _W_ORDER, asset_no, np.int64(order_id))
    return OK


@njit(cache=True)
def _modify_impl(bot, asset_no, order_id, price, qty, wait):
    """Amend a resting order's price and quantity (Binance `PUT /fapi/v1/order`). Like the backtest, the local
    order shows the new price/qty with `req=REPLACED` until the answer; a refusal restores the old ones."""
    if asset_no < 0 or asset_no >= bot.num_assets:
        return INSTRUMENT_NOT_FOUND
    s = bot.assets[asset_no]
    rc = lc.modify(s, _now(bot), order_id, price, qty)
    if rc != OK:
        return rc
    s.to_exch.head = 0  # sent over IPC below, not through the simulated bus
    s.to_exch.tail = 0
    s.to_local.head = 0
    s.to_local.tail = 0
    return _send_pending(bot, asset_no, order_id, wait)


@njit(cache=True)
def _cancel_impl(bot, asset_no, order_id, wait):
    if asset_no < 0 or asset_no >= bot.num_assets:
        return INSTRUMENT_NOT_FOUND
    s = bot.assets[asset_no]
    rc = lc.cancel(s, _now(bot), order_id)
    if rc != OK:
        return rc
    s.to_exch.head = 0  # sent over IPC below, not through the simulated bus
    s.to_exch.tail = 0
    return _send_pending(bot, asset_no, order_id, wait)


# --- entry points usable from plain Python (the @njit strategy goes through the overloads below) ----------------


@njit(cache=True)
def _num_assets(bot):
    return bot.num_assets


@njit(cache=True)
def _elapse(bot, duration):
    return _wait(bot, duration, _W_ELAPSE, -1, -1)


@njit(cache=True)
def _wait_next_feed(bot, include_order_resp, timeout):
    return _wait(bot, timeout, _W_FEED_OR_ORDER if include_order_resp else _W_FEED, -1, -1)


@njit(cache=True)
def _wait_order_response(bot, asset_no, order_id, timeout):
    if asset_no < 0 or asset_no >= bot.num_assets:
        return INSTRUMENT_NOT_FOUND
    return _wait(bot, timeout, _W_ORDER, asset_no, np.int64(order_id))


@njit(cache=True)
def _depth(bot, asset_no):
    return recast(bot.assets[asset_no].depth_l, depth_view_type)


@njit(cache=True)
def _state_values(bot, asset_no):
    return bot.assets[asset_no].sv_l


@njit(cache=True)
def _position(bot, asset_no):
    return bot.assets[asset_no].sv_l[0].position


@njit(cache=True)
def _perp(bot, asset_no):
    s = bot.assets[asset_no]
    return s.perp_f[0], s.perp_f[3]


@njit(cache=True)
def _latencies(bot, asset_no):
    s = bot.assets[asset_no]
    return s.has_feed_lat, s.feed_lat[0], s.feed_lat[1], s.has_ord_lat, s.ord_lat[0], s.ord_lat[1], s.ord_lat[2]


@njit(cache=True)
def _orders(bot, asset_no):
    return recast(bot.assets[asset_no].ord_l, orders_view_type)


@njit(cache=True)
def _last_trades(bot, asset_no):
    s = bot.assets[asset_no]
    return s.trades[: s.ntrades]


@njit(cache=True)
def _clear_last_trades(bot, asset_no):
    for a in range(bot.num_assets):
        if asset_no < 0 or a == asset_no:
            bot.assets[a].ntrades = 0


@njit(cache=True)
def _submit(bot, asset_no, order_id, side, price, qty, tif, order_type, wait):
    return _submit_impl(bot, asset_no, order_id, side, price, qty, tif, order_type, wait)


@njit(cache=True)
def _cancel(bot, asset_no, order_id, wait):
    return _cancel_impl(bot, asset_no, order_id, wait)


@njit(cache=True)
def _modify(bot, asset_no, order_id, price, qty, wait):
    return _modify_impl(bot, asset_no, order_id, price, qty, wait)


@njit(cache=True)
def _clear_inactive_orders(bot, asset_no):
    if asset_no < 0:
        for a in range(bot.num_assets):
            ob.clear_inactive(bot.assets[a].ord_l)
    elif asset_no < bot.num_assets:
        ob.clear_inactive(bot.assets[asset_no].ord_l)


@njit(cache=True)
def _close(bot):
    key = bot.key
    with objmode():
        _py_close(key)
    return OK


# --- methods seen by the user's @njit strategy (same names and codes as the backtest bot) ------------------------


@njit(inline="always")
def _oid(order_id):
    return np.int64(np.uint64(order_id))


@overload_method(LiveBotType, "elapse")
def _ov_elapse(bot, duration):
    return lambda bot, duration: _wait(bot, np.int64(duration), _W_ELAPSE, -1, -1)


@overload_method(LiveBotType, "elapse_bt")
def _ov_elapse_bt(bot, duration):
    return lambda bot, duration: OK


@overload_method(LiveBotType, "wait_next_feed")
def _ov_wait_next_feed(bot, include_order_resp, timeout):
    return lambda bot, include_order_resp, timeout: _wait_next_feed(bot, include_order_resp, np.int64(timeout))


@overload_method(LiveBotType, "wait_order_response")
def _ov_wait_order_response(bot, asset_no, order_id, timeout):
    return lambda bot, asset_no, order_id, timeout: _wait_order_response(bot, asset_no, _oid(order_id),
                                                                         np.int64(timeout))


@overload_attribute(LiveBotType, "current_timestamp")
def _ov_current_timestamp(bot):
    return lambda bot: _now(bot)


@overload_method(LiveBotType, "submit_buy_order")
def _ov_submit_buy(bot, asset_no, order_id, price, qty, time_in_force, order_type, wait):
    def impl(bot, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        return _submit_impl(bot, asset_no, _oid(order_id), BUY, price, qty, time_in_force, order_type, wait)
    return impl


@overload_method(LiveBotType, "submit_sell_order")
def _ov_submit_sell(bot, asset_no, order_id, price, qty, time_in_force, order_type, wait):
    def impl(bot, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        return _submit_impl(bot, asset_no, _oid(order_id), SELL, price, qty, time_in_force, order_type, wait)
    return impl


@overload_method(LiveBotType, "cancel")
def _ov_cancel(bot, asset_no, order_id, wait):
    return lambda bot, asset_no, order_id, wait: _cancel_impl(bot, asset_no, _oid(order_id), wait)


@overload_method(LiveBotType, "modify")
def _ov_modify(bot, asset_no, order_id, price, qty, wait):
    def impl(bot, asset_no, order_id, price, qty, wait):
        return _modify_impl(bot, asset_no, _oid(order_id), np.float64(price), np.float64(qty), wait)
    return impl


@overload_method(LiveBotType, "clear_inactive_orders")
def _ov_clear_inactive(bot, asset_no):
    return lambda bot, asset_no: _clear_inactive_orders(bot, asset_no)


@overload_method(LiveBotType, "close")
def _ov_close(bot):
    return lambda bot: _close(bot)


# depth and orders are handed out as the backtest's salted views (same memory, see backtest.views)
@overload_method(LiveBotType, "depth")
def _ov_depth(bot, asset_no):
    return lambda bot, asset_no: recast(bot.assets[asset_no].depth_l, depth_view_type)


@overload_method(LiveBotType, "orders")
def _ov_orders(bot, asset_no):
    return lambda bot, asset_no: recast(bot.assets[asset_no].ord_l, orders_view_type)


@overload_method(LiveBotType, "position")
def _ov_position(bot, asset_no):
    return lambda bot, asset_no: bot.assets[asset_no].sv_l[0].position


@overload_method(LiveBotType, "mark_price")
def _ov_mark_price(bot, asset_no):
    return lambda bot, asset_no: bot.assets[asset_no].perp_f[0]


@overload_method(LiveBotType, "funding")
def _ov_funding(bot, asset_no):
    return lambda bot, asset_no: bot.assets[asset_no].perp_f[3]


@overload_method(LiveBotType, "state_values")
def _ov_state_values(bot, asset_no):
    return lambda bot, asset_no: bot.assets[asset_no].sv_l[0]


@overload_method(LiveBotType, "last_trades")
def _ov_last_trades(bot, asset_no):
    return lambda bot, asset_no: _last_trades(bot, asset_no)


@overload_method(LiveBotType, "clear_last_trades")
def _ov_clear_last_trades(bot, asset_no):
    return lambda bot, asset_no: _clear_last_trades(bot, asset_no)


@overload_method(LiveBotType, "feed_latency")
def _ov_feed_latency(bot, asset_no):
    def impl(bot, asset_no):
        s = bot.assets[asset_no]
        if s.has_feed_lat:
            return (s.feed_lat[0], s.feed_lat[1])
        return None
    return impl


@overload_method(LiveBotType, "order_latency")
def _ov_order_latency(bot, asset_no):
    def impl(bot, asset_no):
        s = bot.assets[asset_no]
        if s.has_ord_lat:
            return (s.ord_lat[0], s.ord_lat[1], s.ord_lat[2])
        return None
    return impl
