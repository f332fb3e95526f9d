"""End to end on loopback: emulator process + connector process + a LiveBot running the grid strategy.

Every assertion about orders is checked against the emulator's own ledger and state (`/_emu/ledger`,
`/_emu/state`): orders placed, filled, cancelled; none lost or duplicated; the bot's position equals the account's.
"""
from __future__ import annotations

import importlib.util
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
import urllib.request
from numba import njit
from test_emulator_client import isolate_child, kill_group

from hftbacktest import GTX, LIMIT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "e2e-"
KEY = SECRET = "demo"
ADMIN = {"X-EMU-ADMIN-TOKEN": "admin-token-of-the-live-e2e-tests"}  # the emulator's /_emu plane, via its env
# Ticks below the best bid for an order that must rest for a test's whole length: the synthetic market moves about
# $6 per sqrt(second) (3 % daily volatility) plus jumps, so $40 away fills within a minute on a slow box; $300 will not.
FAR = 3000


def _load_example(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # numba's on-disk cache must be able to import the strategy's module again
    spec.loader.exec_module(mod)
    return mod


class Proc:
    """A child process whose output lines are collected by a thread, so tests wait on lines, not on time."""

    def __init__(self, args, stream: str, env: dict | None = None):
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                  preexec_fn=isolate_child)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        for pipe in (self.p.stdout, self.p.stderr):
            threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe):
        for line in pipe:
            self.log.append(line)
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 60.0, start: bool = False) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.p.poll() is not None and self.lines.empty():
                raise AssertionError(f"never saw {text!r}; output:\n{''.join(self.log[-40:])}")
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line.startswith(text) if start else text in line:
                return line

    def stop(self, sig=None) -> int:
        try:
            if self.p.poll() is None:
                self.p.terminate() if sig is None else self.p.send_signal(sig)
                try:
                    self.p.wait(15)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            kill_group(self.p)  # the whole group, whatever state the child is in
            self.p.wait(5)
        return self.p.returncode


class Venue:
    def __init__(self, rest: str, ws: str, name: str, connector: Proc, emulator: Proc):
        self.rest, self.ws, self.name, self.connector, self.emulator = rest, ws, name, connector, emulator

    def start_connector(self, extra_config: str = "") -> None:
        """(Re)start the connector; `extra_config` lines are appended to a copy of its TOML config."""
        args = list(self.connector_args)
        if extra_config:
            cfg = Path(args[-1])
            extra = cfg.with_name("extra-" + cfg.name)
            extra.write_text(cfg.read_text() + extra_config)
            extra.chmod(0o600)
            args[-1] = str(extra)
        self.connector = Proc(args, "stderr")
        self.connector.wait_for(f"connector {self.name!r} up")

    def get(self, path: str):
        with urllib.request.urlopen(urllib.request.Request(self.rest + path, headers=ADMIN), timeout=10) as resp:
            return orjson.loads(resp.read())

    def post(self, path: str, body: dict):
        req = urllib.request.Request(self.rest + path, data=orjson.dumps(body), method="POST",
                                     headers={"Content-Type": "application/json", **ADMIN})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return orjson.loads(resp.read())

    def account(self) -> dict:
        return self.get("/_emu/state")["accounts"][KEY]

    def ledger(self) -> list[dict]:
        return self.get(f"/_emu/ledger?api_key={KEY}")


def _start_emulator(ports: tuple[str, str] = ("0", "0")) -> tuple[Proc, str, str]:
    emu = Proc([sys.executable, "-m", "hftbacktest.cli", "emulator", "--market", "synthetic:BTCUSDT", "--seed", "7",
                "--listen-key-validity", "3600", "--admin", "--port", ports[0], "--ws-port", ports[1]], "stdout",
               {"HFTBACKTEST_EMU_ADMIN_TOKEN": ADMIN["X-EMU-ADMIN-TOKEN"]})
    rest = emu.wait_for("REST ", start=True).split()[1]
    ws = emu.wait_for("WS ", start=True).split()[1]
    return emu, rest, ws


def _start_venue(tmp: Path, name: str, transport: str = "rest") -> Venue:
    emu, rest, ws = _start_emulator()
    cfg = tmp / "connector.toml"
    cfg.write_text(f'stream_url = "{ws}"\napi_url = "{rest}"\norder_prefix = "{PREFIX}"\n'
                   f'api_key = "{KEY}"\nsecret = "{SECRET}"\nbackoff_max_s = 1.0\n'
                   # short enough for test_stalled_market_stream_resyncs_the_book; the synthetic book moves often
                   'max_book_age_s = 3.0\nstream_idle_timeout_s = 6.0\n'
                   + (f'order_transport = "ws"\nws_api_url = "{ws.rsplit("/ws", 1)[0]}/ws-fapi/v1"\n'
                      if transport == "ws" else ""))
    cfg.chmod(0o600)
    v = Venue(rest, ws, name, None, emu)
    v.transport = transport
    v.connector_args = [sys.executable, "-m", "hftbacktest.connector", "--name", name, "--connector",
                        "binancefutures", "--config", str(cfg)]
    try:
        v.start_connector()
        if transport == "ws":
            v.connector.wait_for("order WebSocket API connected")
    except BaseException:
        emu.stop()
        raise
    return v


def _stop_venue(v: Venue) -> None:
    con = v.connector
    try:
        rc = con.stop()
    finally:
        v.emulator.stop()
    assert rc == 0, "".join(con.log[-30:])  # SIGTERM is a graceful shutdown
    assert not any(KEY in line and "api_key" in line for line in con.log)


@pytest.fixture(scope="module", params=["rest", "ws"])
def venue(request, tmp_path_factory):
    """Emulator + connector, once per order transport (REST, Binance's WebSocket API with REST fallback)."""
    v = _start_venue(tmp_path_factory.mktemp("live"), f"e2e{os.getpid()}{request.param}", request.param)
    yield v
    _stop_venue(v)


@pytest.fixture(scope="module")
def grid():
    return _load_example("gridtrading")


def _bot(venue, errors, latency_path=None):
    from hftbacktest.live import HashMapMarketDepth, Instrument, LiveBotBuilder, OrderLatencyLogger

    b = (LiveBotBuilder()
         .register(Instrument(venue.name, "BTCUSDT", 0.1, 0.001, HashMapMarketDepth(0.1, 0.001)))
         .error_handler(errors.append))
    if latency_path:
        b = b.order_recorder(OrderLatencyLogger(latency_path))
    return b.build()


def _open_orders(hbt) -> dict[int, tuple]:
    out = {}
    it = hbt.orders(0).values()
    while it.has_next():
        o = it.get()
        if o.status in (1, 5):
            out[int(o.order_id)] = (int(o.price_tick), int(o.side))
    return out


def _cancel_all(hbt, seconds=10.0):
    """Cancel every open order until none is left. One whose request is still in flight answers 11 (as in the
    backtest): it is cancelled once its response arrived. A cancel the exchange refused is sent again: a tight grid
    can exceed the 300 orders per 10 s limit, and the connector then holds every REST request for `Retry-After`."""
    deadline = time.monotonic() + seconds
    while True:
        codes = {order_id: hbt.cancel(0, order_id, False) for order_id in _open_orders(hbt)}
        assert set(codes.values()) <= {0, 11}, codes
        if not codes:
            return
        assert time.monotonic() < deadline, codes
        hbt.wait_next_feed(True, 100_000_000)


def _settle(hbt, venue, seconds=10.0):
    """Let every update in flight reach the bot: poll until the bot's and the exchange's views agree."""
    deadline = time.monotonic() + seconds
    while True:
        hbt.elapse(100_000_000)
        acct = venue.account()
        pos = acct["positions"].get("BTCUSDT", {}).get("qty", 0.0)
        exch_open = {(round(float(o["price"]) / 0.1), 1 if o["side"] == "BUY" else -1)
                     for o in acct["open_orders"] if o["clientOrderId"].startswith(PREFIX)}
        bot_open = set(_open_orders(hbt).values())
        if (abs(hbt.position(0) - pos) < 1e-9 and bot_open == exch_open) or time.monotonic() > deadline:
            return pos, exch_open, bot_open


def _check_ledger(ledger):
    """Each client order id is created once and ends at most once."""
    ours = [e for e in ledger if str(e.get("clientOrderId", e.get("c", ""))).startswith(PREFIX)]
    key = lambda e: e.get("clientOrderId", e.get("c"))
    kind = lambda e: e.get("event", e.get("x", e.get("type")))
    news = Counter(key(e) for e in ours if kind(e) == "NEW")
    ends = Counter(key(e) for e in ours if kind(e) in ("CANCELED", "EXPIRED", "FILLED", "REJECTED"))
    assert news and max(news.values()) == 1, "an order was created twice"
    assert not ends or max(ends.values()) == 1, "an order ended twice"
    return ours, kind


def test_grid_strategy_live_matches_the_exchange(venue, grid, tmp_path):
    from hftbacktest import Recorder
    from hftbacktest.live import ErrorKind

    errors = []
    latency = tmp_path / "latency.jsonl"
    hbt = _bot(venue, errors, latency)
    try:
        recorder = Recorder(1, 10_000)
        # Tight grid (1 tick from mid, 1-tick spacing) so the synthetic market trades through it within seconds.
        steps = grid.gridtrading(hbt, recorder.recorder, 80, 100_000_000, 3, 1, 1, 0.002, 0.01)
        assert steps == 80
        assert _open_orders(hbt)
        _cancel_all(hbt)
        pos, exch_open, bot_open = _settle(hbt, venue)
        assert not bot_open  # every cancel was confirmed
        assert abs(hbt.position(0) - pos) < 1e-9
        assert bot_open == exch_open
        ours, kind = _check_ledger(venue.ledger())
        kinds = Counter(kind(e) for e in ours)
        assert kinds["NEW"] > 5 and kinds["CANCELED"] > 0 and kinds["TRADE"] + kinds["FILLED"] > 0, kinds
        # Each fill arrives twice (TRADE_LITE first, then ORDER_TRADE_UPDATE) and is counted once.
        fills = [e for e in ours if kind(e) == "TRADE"]
        _wait_until(hbt, lambda: hbt.state_values(0)["num_trades"] >= len(fills), 10, "every fill")
        assert hbt.state_values(0)["num_trades"] == len(fills)
        assert abs(hbt.state_values(0)["trading_volume"] - sum(e["lastQty"] for e in fills)) < 1e-9
        assert not [e for e in errors if e.kind == ErrorKind.CriticalConnectionError]
    finally:
        hbt.close()

    from hftbacktest.live import latency_log_to_npz

    arr = latency_log_to_npz([latency], tmp_path / "latency.npz")
    assert len(arr) >= kinds["NEW"] // 2 and np.all(np.diff(arr["req_ts"]) >= 0)
    answered = arr[arr["exch_ts"] > 0]
    assert np.all(answered["resp_ts"] >= answered["req_ts"])


FAULTS = [
    {"kind": "ws_drop", "channel": "market"},
    {"kind": "depth_gap"},
    {"kind": "listen_key_expire"},
    {"kind": "rest_5xx", "status": 503, "when": "after", "path": "/fapi/v1/order"},
    {"kind": "rest_429", "retry_after": 1, "path": "/fapi/v1/order"},
    {"kind": "ws_drop", "channel": "user"},
]
# Over the WS API the order faults are lost replies of executed requests (resolved by querying the order).
WS_FAULTS = [f for f in FAULTS if not f["kind"].startswith("rest_")] + [{"kind": "ws_api_drop"}] * 2


def test_connector_recovers_from_faults_without_losing_orders(venue, grid):
    """Faults are injected between chunks of the running strategy; afterwards bot and exchange agree exactly."""
    from hftbacktest import Recorder
    from hftbacktest.live import ErrorKind

    errors = []
    hbt = _bot(venue, errors)
    try:
        recorder = Recorder(1, 10_000)
        grid.gridtrading(hbt, recorder.recorder, 10, 100_000_000, 3, 1, 1, 0.002, 0.01)
        for fault in FAULTS if venue.transport == "rest" else WS_FAULTS:
            venue.post("/_emu/fault", dict(fault))
            assert grid.gridtrading(hbt, recorder.recorder, 15, 100_000_000, 3, 1, 1, 0.002, 0.01) == 15
        _cancel_all(hbt)
        pos, exch_open, bot_open = _settle(hbt, venue, 15.0)
        log_tail = "".join(line for line in venue.connector.log[-60:] if "heartbeat" not in line)
        assert abs(hbt.position(0) - pos) < 1e-9, log_tail
        assert bot_open == exch_open, log_tail
        _check_ledger(venue.ledger())
        fired = {f["kind"] for f in venue.get("/_emu/faults") if f["what"] == "fired"}
        order_faults = {"rest_5xx", "rest_429"} if venue.transport == "rest" else {"ws_api_drop"}
        assert {"ws_drop", "depth_gap", "listen_key_expire"} | order_faults <= fired, fired
        kinds = Counter(e.kind for e in errors)
        assert kinds[ErrorKind.ConnectionInterrupted] >= 3  # market drop, depth gap, user stream drops
        # A 429 throttles (the affected request fails with -1003 or is retried) but never escalates.
        assert not [e for e in errors if e.kind == ErrorKind.CriticalConnectionError]
        # The book was rebuilt after the gap: it matches the exchange's. The market keeps moving while we look, so
        # the bot's touch must lie within what the exchange showed just before and just after the bot caught up.
        before = venue.get("/_emu/state")["books"]["BTCUSDT"]
        hbt.elapse(100_000_000)
        book = _bbo(hbt)
        after = venue.get("/_emu/state")["books"]["BTCUSDT"]
        for got, key in ((book[0], "best_bid"), (book[1], "best_ask")):
            lo, hi = sorted((before[key], after[key]))
            assert lo - 20 <= got <= hi + 20, (key, got, before[key], after[key])
        assert book[0] < book[1]
    finally:
        hbt.close()


def _wait_until(hbt, condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        hbt.wait_next_feed(True, 100_000_000)


def test_stalled_market_stream_resyncs_the_book(venue):
    """A market connection that stays open but goes silent: the book is resynced by age (max_book_age_s), then
    the connection is replaced (stream_idle_timeout_s), and the bot's book follows the exchange again."""
    from hftbacktest.live import ErrorKind

    errors = []
    hbt = _bot(venue, errors)
    try:
        _wait_until(hbt, lambda: np.isfinite(hbt.depth(0).best_bid), 30, "a book")
        venue.post("/_emu/fault", {"kind": "ws_half_open", "channel": "market"})
        interrupted = lambda text: any(e.kind == ErrorKind.ConnectionInterrupted and text in str(e.value)
                                       for e in errors)
        _wait_until(hbt, lambda: interrupted("btcusdt book unchanged"), 20, "the stale-book resync")
        _wait_until(hbt, lambda: interrupted("market stream: no data"), 20, "the idle-stream reconnect")
        def follows_the_exchange():
            top = venue.get("/_emu/state")["books"]["BTCUSDT"]
            bid, ask = _bbo(hbt)
            return abs(bid - top["best_bid"]) <= 20 and abs(ask - top["best_ask"]) <= 20 and bid < ask

        _wait_until(hbt, follows_the_exchange, 20, "the book to follow the exchange again")
        assert not [e for e in errors if e.kind == ErrorKind.CriticalConnectionError]
    finally:
        hbt.close()


def _bbo(hbt):
    d = hbt.depth(0)
    return d.best_bid_tick, d.best_ask_tick


def test_latency_log_drives_a_backtest_of_the_same_strategy(grid, tmp_path, sample_data_dir):
    """The same @njit function runs as a backtest, with order latency taken from a live-style log."""
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, Recorder
    from hftbacktest.data.utils import binancefutures
    from hftbacktest.live import OrderLatencyLogger, latency_log_to_npz

    data = binancefutures.convert(str(sample_data_dir / "btcusdt_20240808.gz"), combined_stream=True)
    start = int(data["local_ts"][0])
    log = OrderLatencyLogger(tmp_path / "lat.jsonl")
    for k in range(200):  # 20 ms entry, 40 ms round trip, across the data's time span
        t = start + k * 1_000_000_000
        log.record(t, t + 20_000_000, t + 40_000_000, 1)
    log.close()
    latency_log_to_npz([tmp_path / "lat.jsonl"], tmp_path / "lat.npz")
    asset = (BacktestAsset().data([data]).linear_asset(1.0).intp_order_latency([str(tmp_path / "lat.npz")])
             .power_prob_queue_model(2.0).no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0)
             .tick_size(0.1).lot_size(0.001))
    hbt = HashMapMarketDepthBacktest([asset])
    recorder = Recorder(1, 100_000)
    steps = grid.gridtrading(hbt, recorder.recorder, 600, 100_000_000, 3, 1, 1, 0.002, 0.01)
    assert steps == 600
    assert hbt.state_values(0)["num_trades"] > 0
    hbt.close()


@njit(cache=True)
def _amend_sequence(hbt, order_id, qty):
    """Submit a post-only bid far from the market, amend it, repeat the amendment (refused), then amend it
    across the spread (Binance cancels a GTX order that would take). Returns what the strategy saw at each step."""
    while not np.isfinite(hbt.depth(0).best_bid) or not np.isfinite(hbt.depth(0).best_ask):
        if hbt.elapse(50_000_000) != 0:
            return np.zeros(10, np.int64)
    tick = hbt.depth(0).tick_size
    bid = hbt.depth(0).best_bid_tick - 300
    out = np.zeros(10, np.int64)
    out[0] = hbt.submit_buy_order(0, order_id, bid * tick, qty, GTX, LIMIT, True)
    out[1] = hbt.modify(0, order_id, (bid - 1) * tick, 2 * qty, True)
    o = hbt.orders(0).get(order_id)
    out[2] = o.price_tick - bid
    out[3] = round(o.qty / qty)
    out[4] = o.req
    out[5] = hbt.modify(0, order_id, (bid - 1) * tick, 2 * qty, True)  # nothing to change: -5027
    out[6] = hbt.orders(0).get(order_id).price_tick - bid
    out[7] = hbt.modify(0, order_id, (hbt.depth(0).best_ask_tick + 50) * tick, 2 * qty, True)
    out[8] = hbt.orders(0).get(order_id).status
    out[9] = hbt.orders(0).get(order_id).req
    return out


def test_modify_inside_njit_follows_the_exchange(venue):
    from hftbacktest.live import ErrorKind

    errors = []
    hbt = _bot(venue, errors)
    try:
        seen = _amend_sequence(hbt, 77, 0.002)
    finally:
        hbt.close()
    assert seen[0] == 3 and seen[1] == 3  # answered, like wait=True in the backtest
    assert (seen[2], seen[3], seen[4]) == (-1, 2, 0)  # new price and qty confirmed, no request pending
    assert seen[5] == 3 and seen[6] == -1  # refused: unchanged
    assert [e.value["code"] for e in errors if e.kind == ErrorKind.OrderError] == [-5027]
    assert (seen[7], seen[8], seen[9]) == (3, 4, 0)  # CANCELED by the amendment, nothing pending
    ours = [e for e in venue.ledger() if e.get("event") == "AMENDMENT" and e["clientOrderId"].startswith(PREFIX)]
    assert len(ours) == 1 and ours[0]["qty"] == 0.004
    cid = ours[0]["clientOrderId"]
    assert [e["event"] for e in venue.ledger() if e.get("clientOrderId") == cid] == ["NEW", "AMENDMENT", "CANCELED"]


def _run_example(args, timeout=180):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=isolate_child)
    return proc


def test_live_order_error_handling_example(venue):
    """The example's error policy counts Binance's rejections and stops the strategy (code 19) at the limit."""
    venue.post("/_emu/fault", {"kind": "order_reject", "code": -2019, "msg": "Margin is insufficient.",
                               "count": 3})
    proc = _run_example(["examples/live_order_error_handling.py", "--connector", venue.name, "--symbol", "btcusdt",
                         "--seconds", "60", "--max-rejections", "3"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished with code 19; 3 rejections" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert proc.stderr.count("order rejected (-2019)") == 3, proc.stderr[-3000:]
    assert "3 rejections: stopping" in proc.stderr


def test_gridtrading_example_live_mode(venue):
    proc = _run_example(["examples/gridtrading.py", "--live", "--connector", venue.name, "--symbol", "btcusdt",
                         "--seconds", "3", "--grid-num", "2", "--interval", "1", "--half-spread", "1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "live: 30 steps" in proc.stdout and "0 orders still open" in proc.stdout, proc.stdout
    open_orders = [o for o in venue.account()["open_orders"] if o["clientOrderId"].startswith(PREFIX)]
    assert open_orders == []  # the example cancelled what it had placed before exiting


def test_liquidation_fill_reaches_the_bots_balance_and_trade_count(venue):
    """Binance's own close of the position (an `autoclose-*` order) moves the bot's position and also its balance,
    trade count and volume, exactly once per fill, though each fill comes as TRADE_LITE and ORDER_TRADE_UPDATE."""
    from hftbacktest import GTC, MARKET

    errors = []
    hbt = _bot(venue, errors)
    try:
        _wait_until(hbt, lambda: np.isfinite(hbt.depth(0).best_ask), 30, "a book")
        assert hbt.submit_buy_order(0, 4747, hbt.depth(0).best_ask, 0.004, GTC, MARKET, True) == 3
        pos, _, _ = _settle(hbt, venue)
        assert abs(pos) > 0 and abs(hbt.position(0) - pos) < 1e-9
        sv = hbt.state_values(0)
        trades0, volume0, balance0 = int(sv["num_trades"]), float(sv["trading_volume"]), float(sv["balance"])
        seq0 = max(e["seq"] for e in venue.ledger())
        venue.post("/_emu/fault", {"kind": "liquidation", "symbol": "BTCUSDT", "api_key": KEY})
        _wait_until(hbt, lambda: abs(hbt.position(0)) < 1e-12, 15, "the liquidation to flatten the position")
        closes = [e for e in venue.ledger() if e["seq"] > seq0 and e.get("event") == "TRADE"]
        assert closes and all(e["clientOrderId"].startswith("autoclose-") for e in closes), closes
        _wait_until(hbt, lambda: hbt.state_values(0)["num_trades"] >= trades0 + len(closes), 10, "the fills")
        sv = hbt.state_values(0)
        assert int(sv["num_trades"]) == trades0 + len(closes)
        assert abs(float(sv["trading_volume"]) - volume0 - sum(e["lastQty"] for e in closes)) < 1e-9
        side = 1.0 if pos < 0 else -1.0  # the close's direction: a sell raises the balance
        proceeds = -side * sum(e["lastQty"] * e["lastPrice"] for e in closes)
        assert abs(float(sv["balance"]) - balance0 - proceeds) < 1e-6
        venue.connector.wait_for("exchange-placed fill autoclose-", 10)
    finally:
        hbt.close()


_CRASHING_BOT = """
import os, signal, sys
from hftbacktest import GTX, LIMIT
from hftbacktest.live import Instrument, LiveBotBuilder
hbt = LiveBotBuilder().register(Instrument(sys.argv[1], "btcusdt", 0.1, 0.001)).build()
while hbt.wait_next_feed(False, 1_000_000_000) != 2 or hbt.depth(0).best_bid_tick <= 0:
    pass
price = (hbt.depth(0).best_bid_tick - %d) * 0.1
assert hbt.submit_buy_order(0, 4242, price, 0.002, GTX, LIMIT, True) == 3
assert hbt.orders(0).get(4242).status == 1
print("placed", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close(), no goodbye
"""


def _adopted(hbt, order_id, seconds=10.0):
    _wait_until(hbt, lambda: order_id in _open_orders(hbt), seconds, f"order {order_id} to be handed over")
    return hbt.orders(0).get(order_id)


def test_open_orders_of_a_departed_bot_are_handed_to_the_next_one(venue):
    """A bot that closes (goodbye) or dies (kill -9) leaves orders at the exchange; the next bot registering the
    symbol gets them in its registration replay and can manage them: nothing lost, nothing duplicated."""
    errors = []
    first = _bot(venue, errors)
    try:
        _wait_until(first, lambda: np.isfinite(first.depth(0).best_bid), 30, "a book")
        price = (first.depth(0).best_bid_tick - FAR) * 0.1
        assert first.submit_buy_order(0, 4141, price, 0.002, GTX, LIMIT, True) == 3
    finally:
        first.close()
    proc = _run_example(["-c", _CRASHING_BOT % FAR, venue.name], timeout=120)
    assert proc.returncode == -9 and "placed" in proc.stdout, proc.stderr[-3000:]
    heir = _bot(venue, errors)
    try:
        assert hbt_order_state(_adopted(heir, 4141)) == (1, 0)  # NEW, no request pending
        assert hbt_order_state(_adopted(heir, 4242)) == (1, 0)
        _cancel_all(heir)
        pos, exch_open, bot_open = _settle(heir, venue)
        assert not bot_open and bot_open == exch_open
    finally:
        heir.close()
    log = "".join(venue.connector.log)
    assert "adopts btcusdt order 4141" in log and "adopts btcusdt order 4242" in log
    _check_ledger(venue.ledger())


def hbt_order_state(order):
    return int(order.status), int(order.req)


def test_bot_rebuilds_its_state_when_a_killed_connector_comes_back(venue):
    """kill -9 the connector: the bot hears 'connector silent'; a new connector announces itself (Custom 1004),
    the bot re-registers and replaces its orders, position and book from the new connector's replay. With
    cancel_on_start (the default) the exchange's orders are cancelled, so the bot's order is gone on both sides."""
    from hftbacktest.live import ErrorKind

    errors = []
    hbt = _bot(venue, errors)
    try:
        _wait_until(hbt, lambda: np.isfinite(hbt.depth(0).best_bid), 30, "a book")
        price = (hbt.depth(0).best_bid_tick - FAR) * 0.1
        assert hbt.submit_buy_order(0, 4343, price, 0.002, GTX, LIMIT, True) == 3
        old = venue.connector
        old.p.kill()
        old.stop()
        has = lambda kind, code=0: any(e.kind == kind and e.code == code for e in errors)
        _wait_until(hbt, lambda: has(ErrorKind.CriticalConnectionError), 15, "'connector silent'")
        venue.start_connector()
        _wait_until(hbt, lambda: has(ErrorKind.Custom, 1004), 15, "the connector's announcement")
        pos, exch_open, bot_open = _settle(hbt, venue, 15.0)
        assert 4343 not in _open_orders(hbt) and not exch_open and bot_open == exch_open
        assert abs(hbt.position(0) - pos) < 1e-9

        def follows_the_exchange():
            top = venue.get("/_emu/state")["books"]["BTCUSDT"]
            bid, ask = _bbo(hbt)
            return abs(bid - top["best_bid"]) <= 20 and abs(ask - top["best_ask"]) <= 20 and bid < ask

        _wait_until(hbt, follows_the_exchange, 20, "the book to follow the exchange again")
        assert hbt.submit_buy_order(0, 4344, price, 0.002, GTX, LIMIT, True) == 3  # trading resumes
        assert hbt.orders(0).get(4344).status == 1
        _cancel_all(hbt)
    finally:
        hbt.close()


def test_restarted_connector_with_adopt_orders_keeps_the_bots_orders(venue):
    """adopt_orders = true: a connector restarted after a crash takes over our open orders at the exchange (the
    client id carries the bot's order id) instead of cancelling them; the re-registering bot keeps them live."""
    from hftbacktest.live import ErrorKind

    errors = []
    hbt = _bot(venue, errors)
    try:
        _wait_until(hbt, lambda: np.isfinite(hbt.depth(0).best_bid), 30, "a book")
        price = (hbt.depth(0).best_bid_tick - FAR) * 0.1
        assert hbt.submit_buy_order(0, 4545, price, 0.002, GTX, LIMIT, True) == 3
        venue.connector.p.kill()
        venue.connector.stop()
        venue.start_connector("adopt_orders = true\ncancel_on_start = false\n")
        has_1004 = lambda: any(e.kind == ErrorKind.Custom and e.code == 1004 for e in errors)
        # upper bounds for a restarted process to import and reconnect, generous for a loaded CI box
        _wait_until(hbt, has_1004, 60, "the connector's announcement")
        venue.connector.wait_for("adopted btcusdt order 4545", 60)
        pos, exch_open, bot_open = _settle(hbt, venue, 30.0)  # an upper bound: returns once both views agree
        assert bot_open == exch_open == {(round(price / 0.1), 1)}  # still live on both sides
        assert hbt.cancel(0, 4545, True) == 3 and hbt.orders(0).get(4545).status == 4  # and manageable
        pos, exch_open, bot_open = _settle(hbt, venue, 10.0)
        assert not bot_open and not exch_open
    finally:
        hbt.close()


def test_a_bot_without_the_connectors_token_cannot_place_an_order(venue):
    """A process that can open the connector's services but has not read its token file: its hello (wrong token)
    and its orders (no hello at all, or after the wrong one) are refused, answered, logged without the token and
    never reach the exchange."""
    from hftbacktest.live.ipc import BotChannel, access
    from hftbacktest.live.ipc import codec as c
    from hftbacktest.types import BUY, EXPIRED, GTX, NEW

    token = access.read_token(venue.name)
    assert token and oct(access.token_path(venue.name).stat().st_mode & 0o777) == "0o600"
    order = c.WireOrder(0.002, 0.002, 0.0, 0, 100, 0.1, 0, 0, 4646, False, LIMIT, NEW, 0, BUY, GTX)
    ledger_before = len(venue.ledger())
    for bot_id, hello in ((0x5151, None), (0x5252, c.BotHello(os.getpid(), "0" * 64))):
        ch = BotChannel(venue.name, bot_id)
        try:
            if hello is not None:
                ch.send(c.encode_request(hello))
            ch.send(c.encode_request(c.OrderRequest("btcusdt", order)))
            deadline, got = time.monotonic() + 30, []
            while not (any(isinstance(m, c.OrderUpdate) for m in got) and any(isinstance(m, c.Error) for m in got)):
                assert time.monotonic() < deadline, got
                raw = ch.recv()
                if raw is None:
                    time.sleep(0.01)
                elif ch.last_id == bot_id:
                    got.append(c.decode_event(raw))
        finally:
            ch.close()
        update = next(m for m in got if isinstance(m, c.OrderUpdate))
        assert update.order.order_id == 4646 and update.order.status == EXPIRED
        assert any(isinstance(m, c.Error) and m.kind == c.ErrorKind.CriticalConnectionError and "token" in m.value
                   for m in got), got
        venue.connector.wait_for(f"from bot {bot_id}: it has not presented this connector's token", 10)
    assert len(venue.ledger()) == ledger_before  # nothing reached the exchange
    assert not any(token in line for line in venue.connector.log)


def test_connector_reconciles_with_an_exchange_that_restarted_empty(tmp_path):
    """kill -9 the exchange and start it again with no orders and no position: after the connector reconnects
    it reconciles, and the bot's order table and position match the exchange's (no phantom order) within a
    bound; trading then resumes on the new exchange."""
    from hftbacktest.types import EXPIRED, IOC

    v = _start_venue(tmp_path, f"e2erst{os.getpid()}")
    errors = []
    hbt = _bot(v, errors)
    try:
        _wait_until(hbt, lambda: np.isfinite(hbt.depth(0).best_bid), 30, "a book")
        ask = hbt.depth(0).best_ask_tick
        assert hbt.submit_buy_order(0, 1, (ask + 50) * 0.1, 0.002, IOC, LIMIT, True) == 3  # taker: a position
        _wait_until(hbt, lambda: abs(hbt.position(0) - 0.002) < 1e-9, 15, "the position")
        bid = hbt.depth(0).best_bid_tick
        for k in range(5):
            assert hbt.submit_buy_order(0, 10 + k, (bid - FAR - k) * 0.1, 0.002, GTX, LIMIT, True) == 3
        pos, exch_open, bot_open = _settle(hbt, v)
        assert len(bot_open) == 5 and bot_open == exch_open and abs(pos - 0.002) < 1e-9

        ports = tuple(url.rsplit(":", 1)[1].split("/")[0] for url in (v.rest, v.ws))
        v.emulator.p.kill()
        v.emulator.stop()
        v.emulator, rest, ws = _start_emulator(ports)
        assert (rest, ws) == (v.rest, v.ws)
        assert v.account()["open_orders"] == [] and not v.account()["positions"].get("BTCUSDT", {}).get("qty")
        # an upper bound: reconnect backoff (<= 1 s) + reconciliation, generous for a loaded box
        _wait_until(hbt, lambda: not _open_orders(hbt) and hbt.position(0) == 0.0, 60, "the bot to match")
        assert all(hbt.orders(0).get(10 + k).status == EXPIRED for k in range(5))
        v.connector.wait_for("reconciling orders and positions with the exchange", 10)

        _wait_until(hbt, lambda: np.isfinite(hbt.depth(0).best_bid), 30, "a book")
        bid = hbt.depth(0).best_bid_tick
        assert hbt.submit_buy_order(0, 20, (bid - FAR) * 0.1, 0.002, GTX, LIMIT, True) == 3  # trading resumes
        pos, exch_open, bot_open = _settle(hbt, v)
        assert bot_open == exch_open == {(bid - FAR, 1)} and pos == hbt.position(0) == 0.0
        _cancel_all(hbt)
        _check_ledger(v.ledger())
    finally:
        hbt.close()
        _stop_venue(v)


def _dead_port() -> int:
    import socket

    with socket.socket() as s:  # bound then closed: nobody listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connector_that_cannot_reach_the_exchange_says_so_and_exits_1(venue, tmp_path):
    """A dead REST port: a few attempts, each logged as 'cannot reach the exchange', then exit 1 and never 'up'.
    A REST URL that answers but is not Binance's (404): exit 1 at once, naming api_url."""
    port = _dead_port()
    for api_url, expected in ((f"http://127.0.0.1:{port}", f"cannot reach the exchange at http://127.0.0.1:{port}"),
                              (venue.rest + "/not-binance", "is api_url right?")):
        cfg = tmp_path / "dead.toml"
        cfg.write_text(f'stream_url = "{venue.ws}"\napi_url = "{api_url}"\napi_key = "{KEY}"\nsecret = "{SECRET}"\n'
                       'critical_after = 3\nbackoff_initial_s = 0.05\n')
        cfg.chmod(0o600)
        proc = _run_example(["-m", "hftbacktest.connector", "--name", f"dead{os.getpid()}", "--connector",
                             "binancefutures", "--config", str(cfg)], timeout=60)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert expected in proc.stderr and " up (" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("example", [["examples/gridtrading.py", "live"], ["examples/live_order_error_handling.py"]])
def test_live_examples_exit_1_when_no_connector_runs(example):
    """No connector with that name: the bot hears 'connector silent' (after 5 s), stops and exits 1."""
    proc = _run_example([*example, "--connector", f"nobody{os.getpid()}", "--seconds", "60"])
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert "connector silent" in proc.stderr.splitlines()[-1], proc.stderr[-3000:]


def _signed(venue, method: str, path: str, params: dict):
    """A signed REST request as another client of the same account would send it (not through the connector)."""
    import hashlib
    import hmac
    from urllib.parse import urlencode

    query = urlencode({**params, "timestamp": int(time.time() * 1000)})
    sig = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"{venue.rest}{path}?{query}&signature={sig}", method=method,
                                 headers={"X-MBX-APIKEY": KEY})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return orjson.loads(resp.read())


def test_orders_cancelled_and_fills_made_while_the_user_stream_is_down_are_reconciled(venue):
    """The user stream drops and stays refused; meanwhile another client cancels the bot's orders and buys on the
    account. The bot cannot know until the stream is back; then reconciliation shows it both: no phantom orders,
    the exchange's position."""
    from hftbacktest.types import CANCELED

    errors = []
    hbt = _bot(venue, errors)
    try:
        _wait_until(hbt, lambda: np.isfinite(hbt.depth(0).best_bid), 30, "a book")
        bid = hbt.depth(0).best_bid_tick
        for k in range(3):
            assert hbt.submit_buy_order(0, 7070 + k, (bid - FAR - k) * 0.1, 0.002, GTX, LIMIT, True) == 3
        pos_before, exch_open, bot_open = _settle(hbt, venue)
        assert len(bot_open) == 3 and bot_open == exch_open

        venue.post("/_emu/fault", {"kind": "ws_drop", "channel": "user", "refuse_s": 600})
        # the fault closes the user stream after its next message: this order's NEW event
        assert hbt.submit_buy_order(0, 7073, (bid - FAR - 3) * 0.1, 0.002, GTX, LIMIT, True) == 3
        venue.connector.wait_for("user stream dropped", 30)
        _signed(venue, "DELETE", "/fapi/v1/allOpenOrders", {"symbol": "BTCUSDT"})
        _signed(venue, "POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                  "quantity": "0.003", "newClientOrderId": "another-client-1"})
        pos = venue.account()["positions"]["BTCUSDT"]["qty"]
        assert abs(pos - pos_before - 0.003) < 1e-9 and not venue.account()["open_orders"]
        hbt.elapse(500_000_000)
        assert len(_open_orders(hbt)) == 4  # the stream is refused: the bot cannot know yet

        clear = urllib.request.Request(venue.rest + "/_emu/fault?kind=ws_drop", method="DELETE", headers=ADMIN)
        urllib.request.urlopen(clear, timeout=10).close()  # reconnects are accepted again
        _wait_until(hbt, lambda: not _open_orders(hbt) and abs(hbt.position(0) - pos) < 1e-9, 60,
                    "the bot to match the exchange")  # an upper bound: reconnect backoff + reconciliation
        assert all(hbt.orders(0).get(7070 + k).status == CANCELED for k in range(4))
        venue.connector.wait_for("reconciling orders and positions with the exchange (user stream reconnected)", 10)
    finally:
        hbt.close()
