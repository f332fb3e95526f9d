"""IPC codec round trips and the iceoryx2 channel: fan-out, unicast, seq loss, stale-node cleanup."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftbacktest.errors import ConfigError, IpcError
from hftbacktest.live.ipc import BotChannel, ChannelConfig, ConnectorChannel
from hftbacktest.live.ipc import codec as c

i64 = st.integers(-(1 << 63), (1 << 63) - 1)
u64 = st.integers(0, (1 << 64) - 1)
f64 = st.floats(allow_nan=False)
symbols = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20)
orders = st.builds(
    c.WireOrder, f64, f64, f64, i64, i64, f64, i64, i64, u64, st.booleans(),
    st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(-128, 127), st.integers(0, 255),
)
events = st.tuples(u64, i64, i64, f64, f64, u64, i64, f64)
scalars = st.one_of(st.none(), st.booleans(), i64, f64, st.text(max_size=30))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)
live_events = st.one_of(
    st.just(c.BatchStart()),
    st.just(c.BatchEnd()),
    st.builds(c.Feed, symbols, events),
    st.builds(c.OrderUpdate, symbols, orders),
    st.builds(c.Position, symbols, f64, i64),
    st.builds(c.Error, st.sampled_from(list(c.ErrorKind)[:3]), values, st.just(0)),
    st.builds(c.Error, st.just(c.ErrorKind.Custom), values, i64),
)
requests = st.one_of(st.builds(c.OrderRequest, symbols, orders), st.builds(c.RegisterInstrument, symbols, f64, f64),
                     st.builds(c.BotHello, st.integers(1, 2**31), st.text(max_size=64)), st.just(c.BotGoodbye()))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(live_events)
def test_every_event_variant_round_trips(msg):
    raw = c.encode_event(msg)
    assert len(raw) <= c.MAX_PAYLOAD_SIZE
    assert c.decode_event(raw) == msg


@settings(max_examples=200, deadline=None, derandomize=True)
@given(requests)
def test_every_request_variant_round_trips(msg):
    assert c.decode_request(c.encode_request(msg)) == msg


@given(symbols, orders)
def test_order_request_from_record_bytes_equals_the_codec(symbol, order):
    import numpy as np

    from hftbacktest.types import order_dtype

    rec = np.zeros(1, order_dtype)
    for name, value in order._asdict().items():
        rec[0][name] = value
    rec[0]["_q1"] = rec[0]["_q2"] = 0xDEADBEEF  # local queue-model words never reach the wire
    fast = c.encode_order_record(c.order_request_header(symbol), rec[0].tobytes())
    assert fast == c.encode_request(c.OrderRequest(symbol, order))


def test_long_error_message_is_truncated_under_the_limit():
    raw = c.encode_event(c.Error(c.ErrorKind.OrderError, {"code": -1111, "msg": "x" * 2000}))
    assert len(raw) <= c.MAX_PAYLOAD_SIZE
    assert c.decode_event(raw).value["code"] == -1111


def test_oversized_and_foreign_payloads_raise_typed_errors():
    with pytest.raises(IpcError, match="exceeds"):
        c.encode_event(c.Error(c.ErrorKind.ConnectionInterrupted, ["y" * 100] * 10))
    with pytest.raises(IpcError, match="version"):
        c.decode_event(bytes([c.VERSION + 1, 3]))
    with pytest.raises(IpcError, match="malformed"):
        c.decode_event(c.encode_event(c.Position("btcusdt", 1.0, 2))[:-3])


def _name(tag: str) -> str:
    return f"t{tag}{os.getpid()}"


def test_fan_out_broadcast_and_unicast_with_two_bots():
    name = _name("fan")
    con = ConnectorChannel(name)
    b1, b2 = BotChannel(name, 11), BotChannel(name, 22)
    try:
        b1.send(c.encode_request(c.RegisterInstrument("btcusdt", 0.1, 0.001)))
        b2.send(c.encode_request(c.RegisterInstrument("ethusdt", 0.01, 0.001)))
        got = [con.recv(), con.recv()]
        assert sorted(bot for bot, _ in got) == [11, 22]
        assert con.recv() is None
        feed = c.encode_event(c.Feed("btcusdt", (1, 2, 3, 4.0, 5.0, 0, 0, 0.0)))
        to_b2 = c.encode_event(c.Position("ethusdt", -1.0, 9))
        con.send(c.TO_ALL, feed)
        con.send(22, to_b2)
        assert b1.recv() == feed and b1.recv() is None
        assert b2.recv() == feed and b2.recv() == to_b2 and b2.recv() is None
        assert b1.lost == 0 and b2.lost == 0
    finally:
        for ch in (b1, b2, con):
            ch.close()


def test_full_subscriber_buffer_drops_oldest_and_seq_reports_the_loss():
    name = _name("ovf")
    cfg = ChannelConfig(buffer_size=4, max_bots=2)
    con = ConnectorChannel(name, cfg)
    bot = BotChannel(name, 5, cfg)
    try:
        for i in range(10):
            con.send(c.TO_ALL, c.encode_event(c.Position("x", float(i), i)))
        received = []
        while (raw := bot.recv()) is not None:
            received.append(c.decode_event(raw).qty)
        assert received == [6.0, 7.0, 8.0, 9.0]  # the publisher never blocked; the oldest were dropped
        assert bot.lost == 0  # the first sample seen sets the baseline...
        con.send(c.TO_ALL, c.encode_event(c.Position("x", 10.0, 10)))
        for i in range(11, 20):
            con.send(c.TO_ALL, c.encode_event(c.Position("x", float(i), i)))
        while bot.recv() is not None:
            pass
        assert bot.lost == 6  # ...then 10..15 overflowed away between reads
    finally:
        bot.close()
        con.close()


def test_bad_names_and_ids_are_config_errors():
    with pytest.raises(ConfigError):
        BotChannel(_name("id"), 0)
    with pytest.raises(ConfigError):
        ConnectorChannel("a/b")


def test_second_connector_with_the_same_name_fails_clearly():
    name = _name("dup")
    con = ConnectorChannel(name)
    try:
        with pytest.raises(IpcError, match="another connector"):
            ConnectorChannel(name)
    finally:
        con.close()


def test_services_of_a_kill_9_bot_are_reclaimed(tmp_path):
    """A bot killed with SIGKILL leaves shared memory behind; the next start cleans it and reuses the name."""
    name = _name("kill")
    script = textwrap.dedent(
        f"""
        import sys, time
        from hftbacktest.live.ipc import BotChannel
        ch = BotChannel({name!r}, 99)
        print("up", flush=True)
        sys.stdin.readline()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        check = textwrap.dedent(
            f"""
            from hftbacktest.live.ipc import ConnectorChannel, BotChannel, cleanup
            r = cleanup()
            con = ConnectorChannel({name!r}); bot = BotChannel({name!r}, 99)
            bot.send(b"\\x01\\x02"); got = con.recv()
            assert got == (99, b"\\x01\\x02"), got
            print("ok", r["dead_nodes"])
            """
        )
        out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("ok")
    finally:
        if proc.poll() is None:
            proc.kill()


def _private_dir(tmp_path, monkeypatch):
    """Our own runtime directory (so another test's files do not count), as a user would get it."""
    base = tmp_path / "rt"
    monkeypatch.setenv("HFTBACKTEST_RUNTIME_DIR", str(base))
    return base


_CHANNEL_TRAFFIC = """
import sys
from hftbacktest.live.ipc import BotChannel, ConnectorChannel, access
con = ConnectorChannel("perm"); bot = BotChannel("perm", 7)
for _ in range(3):
    bot.send(b"\\x02\\x03"); con.send(7, b"\\x02\\x04"); con.update_connections(); bot.update_connections()
assert con.recv() and bot.recv()
access.write_token("perm")
for p in access.our_files(access.runtime_dir()):
    print(p)
print("end", flush=True)
sys.stdin.readline()
"""


def _mode(path) -> int:
    return os.lstat(path).st_mode & 0o7777


def test_every_ipc_file_is_private_to_its_user(tmp_path, monkeypatch):
    """Connector + bot with traffic: every shared-memory segment, lock, management and token file is 0600 or
    stricter (iceoryx2 itself creates its global management segment 0666 and its directories 0750), every
    directory 0700. Another user (when the test can switch to one) can open none of them."""
    import stat

    base = _private_dir(tmp_path, monkeypatch)
    proc = subprocess.Popen([sys.executable, "-c", _CHANNEL_TRAFFIC], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    try:
        paths = []
        while (line := proc.stdout.readline().strip()) not in ("end", ""):
            paths.append(line)
        assert proc.poll() is None, "the channel process failed"
        names = " ".join(paths)
        for kind in ("global_mgmt", ".data", ".dynamic", ".connection", ".node_monitor", ".service", "perm.token"):
            assert kind in names, (kind, paths)  # the listing covers every kind of file iceoryx2 makes
        assert any(p.startswith("/dev/shm/") for p in paths)
        for p in paths:
            mode = _mode(p)
            if stat.S_ISDIR(os.lstat(p).st_mode):
                assert mode == 0o700, (p, oct(mode))
            else:
                assert mode & 0o077 == 0, (p, oct(mode))
        assert _mode(base / "perm.token") == 0o600
        if os.getuid() == 0:  # as root we can check from an unprivileged user's side
            probe = textwrap.dedent("""
                import os, sys
                os.setgid(65534); os.setuid(65534)
                opened = []
                for p in sys.argv[1:]:
                    try:
                        os.close(os.open(p, os.O_RDONLY))
                        opened.append(p)
                    except PermissionError:
                        pass
                print(opened)
                """)
            other = subprocess.run([sys.executable, "-c", probe, *[p for p in paths if not os.path.isdir(p)]],
                                   capture_output=True, text=True, timeout=60)
            assert other.returncode == 0, other.stderr
            assert other.stdout.strip() == "[]", other.stdout
    finally:
        proc.stdin.close()
        proc.wait(30)


def test_a_runtime_dir_owned_by_someone_else_is_refused(tmp_path, monkeypatch):
    from hftbacktest.live.ipc import access

    base = _private_dir(tmp_path, monkeypatch)
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    assert access.runtime_dir() == base and _mode(base) == 0o700  # ours: tightened
    if os.getuid() != 0:
        pytest.skip("needs root to create a directory owned by another user")
    os.chown(base, 65534, 65534)
    with pytest.raises(IpcError, match="belongs to uid 65534"):
        access.runtime_dir()


def test_token_file_is_written_private_and_atomically(tmp_path, monkeypatch):
    from hftbacktest.live.ipc import access

    base = _private_dir(tmp_path, monkeypatch)
    path, token = access.write_token("bf")
    assert path == base / "bf.token" and _mode(path) == 0o600 and len(token) == 64
    assert access.read_token("bf") == token
    path2, token2 = access.write_token("bf")  # a restarted connector: a new token replaces the old one
    assert token2 != token and access.read_token("bf") == token2
    assert sorted(p.name for p in base.iterdir()) == ["bf.token"]  # no temporary file left
    access.remove_token("bf", token)  # not ours any more: kept
    assert access.read_token("bf") == token2
    access.remove_token("bf", token2)
    assert access.read_token("bf") is None
    hello = c.BotHello(1, token2)
    assert token2 not in repr(hello) and token2 not in str(hello) and token2 not in f"{hello}"
