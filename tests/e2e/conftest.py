"""End-to-end fixtures: a guard that keeps third-party client libraries on loopback."""
from __future__ import annotations

import ipaddress
import socket

import pytest


def _is_loopback(host) -> bool:
    if host is None:
        return True  # getaddrinfo(None, port): a local bind address
    if isinstance(host, bytes):
        host = host.decode()
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class LoopbackGuard:
    """Refuses (and records) every name lookup and connect to anything but loopback, in every thread: the
    client libraries under test default to Binance's hosts, and no byte may leave 127.0.0.1."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def check(self, what: str, host) -> None:
        if not _is_loopback(host):
            self.refused.append(f"{what} {host!r}")
            raise ConnectionRefusedError(f"loopback guard: {what} to {host!r} refused (tests stay on 127.0.0.1)")

    def install(self, mp: pytest.MonkeyPatch) -> None:
        real_getaddrinfo, real_connect, real_connect_ex = socket.getaddrinfo, socket.socket.connect, \
            socket.socket.connect_ex
        guard = self

        def getaddrinfo(host, *args, **kwargs):
            guard.check("name lookup", host)
            return real_getaddrinfo(host, *args, **kwargs)

        def address_host(sock, address):
            return address[0] if sock.family in (socket.AF_INET, socket.AF_INET6) else "localhost"

        def connect(sock, address):
            guard.check("connect", address_host(sock, address))
            return real_connect(sock, address)

        def connect_ex(sock, address):
            guard.check("connect", address_host(sock, address))
            return real_connect_ex(sock, address)

        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(scope="module")
def loopback_only():
    """Module-wide network guard; fails the module's teardown if anything tried to leave loopback."""
    import aiohttp.resolver

    # aiohttp resolves through socket.getaddrinfo only with its threaded resolver (aiodns would bypass the guard)
    assert aiohttp.resolver.DefaultResolver is aiohttp.resolver.ThreadedResolver, "aiodns installed: guard blind"
    guard = LoopbackGuard()
    with pytest.MonkeyPatch.context() as mp:
        guard.install(mp)
        yield guard
    assert not guard.refused, f"attempted to leave loopback: {guard.refused}"


@pytest.fixture(scope="module")
def client_emu(loopback_only):
    """An emulator for the client-library tests: synthetic BTCUSDT at real time, account `k`/`s`, and the
    replay already printing trades (so tickers, candles and the tape have something to show)."""
    import time

    from hftbacktest.emulator import Emulator

    with Emulator.start("synthetic:BTCUSDT:30", speed=1.0) as emu:
        emu.add_account("k", "s", balance=100_000)
        deadline = time.monotonic() + 30
        while not emu._call(lambda: len(emu.streams["BTCUSDT"].tape.trades) >= 5):
            assert time.monotonic() < deadline, "the replay printed no trades"
            time.sleep(0.05)
        yield emu


@pytest.fixture
def resting_bid(client_emu):
    """`resting_bid(fraction)`: a BTCUSDT bid price below the touch (it rests) and inside PERCENT_PRICE."""
    def price(fraction: float = 0.99) -> float:
        return round(client_emu.book("BTCUSDT", 1)["bids"][0][0] * 0.1 * fraction, 1)
    return price
