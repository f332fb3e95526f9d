"""The admin plane (`/_emu/...`) is off by default, token-bound, JSON-only, same-origin only, and never replaces an
account; the emulator's secrets come from a file or the environment, never from its command line."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from types import SimpleNamespace

import aiohttp
import pytest
from test_emulator_client import EmuClient, interrupt, isolate_child

from hftbacktest.emulator import Emulator, EmulatorConfig
from hftbacktest.emulator.admin import ADMIN_HEADER, ADMIN_TOKEN_ENV, load_secrets
from hftbacktest.errors import ConfigError

pytestmark = pytest.mark.e2e
TOKEN = "t0ken-for-the-admin-tests-only"


@pytest.fixture(scope="module")
def emu():
    with Emulator.start("synthetic:BTCUSDT:1", speed=1.0, config=EmulatorConfig(admin_token=TOKEN)) as emu:
        emu.add_account("owner", "owner-secret")
        yield emu


async def _admin(emu, method: str, path: str, *, token: str | None = TOKEN, headers: dict | None = None,
                 **kwargs):
    h = dict(headers or {})
    if token is not None:
        h[ADMIN_HEADER] = token
    async with aiohttp.ClientSession() as s:
        async with s.request(method, emu.rest_url + path, headers=h, **kwargs) as r:
            return r.status, await r.json(content_type=None), r.headers


def test_admin_plane_is_off_unless_enabled():
    with Emulator.start("synthetic:BTCUSDT:1", speed=1.0) as emu:
        for method, path in (("GET", "/_emu/state"), ("POST", "/_emu/fault"), ("POST", "/_emu/account")):
            status, body, _ = asyncio.run(_admin(emu, method, path, json={"kind": "rest_429"}))
            assert status == 404 and "disabled" in body["error"], (method, path, body)
        assert emu.fault_log() == [] and emu.state()["accounts"] == {}


def test_admin_needs_the_token(emu):
    for token in (None, "", "wrong-token-of-some-length", TOKEN + "x"):
        status, body, _ = asyncio.run(_admin(emu, "POST", "/_emu/fault", token=token, json={"kind": "rest_429"}))
        assert status == 401 and ADMIN_HEADER in body["error"], token
    assert not emu.fault_log()
    status, state, _ = asyncio.run(_admin(emu, "GET", "/_emu/state"))
    assert status == 200 and "owner" in state["accounts"]


def test_admin_bodies_must_be_json(emu):
    body = b'{"kind": "liquidation", "api_key": "owner"}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": ctype} if ctype else {}
        status, reply, _ = asyncio.run(_admin(emu, "POST", "/_emu/fault", headers=headers, data=body))
        assert status == 415, (ctype, reply)
    assert not emu.fault_log()
    status, reply, _ = asyncio.run(_admin(emu, "POST", "/_emu/fault", headers={"Content-Type": "application/json"},
                                          data=b"[1, 2]"))
    assert status == 400 and "JSON object" in reply["error"]


def test_admin_refuses_cross_origin_requests(emu):
    port = emu.rest_port
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": f"http://127.0.0.1:{port + 1}"}, {"Origin": f"https://127.0.0.1:{port}"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Host": "evil.example"}):
        for method in ("POST", "OPTIONS", "GET"):
            status, reply, h = asyncio.run(_admin(emu, method, "/_emu/fault" if method != "GET" else "/_emu/state",
                                                  headers=headers, json={"kind": "rest_429"}))
            assert status == 403, (headers, method, reply)
            assert not any(k.lower().startswith("access-control-") for k in h), h  # no CORS, ever
    assert not emu.fault_log()
    same = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    status, _, _ = asyncio.run(_admin(emu, "POST", "/_emu/fault", headers=same, json={"kind": "rest_delay", "ms": 1}))
    assert status == 200
    emu.clear_faults()


def test_an_existing_account_is_never_replaced(emu):
    async def go():
        async with EmuClient(emu, "owner", "owner-secret") as c:
            _, book, _ = await c.public("GET", "/fapi/v1/depth", symbol="BTCUSDT", limit=5)
            price = f"{float(book['bids'][0][0]) * 0.98:.1f}"  # rests, inside PERCENT_PRICE
            status, order, _ = await c.order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                             quantity="0.004", price=price, newClientOrderId="kept")
            assert status == 200, order
            status, reply, _ = await _admin(emu, "POST", "/_emu/account",
                                            json={"api_key": "owner", "secret": "attacker", "balance": 1})
            assert status == 409 and "never replaced" in reply["error"]
            status, orders, _ = await c.signed("GET", "/fapi/v1/openOrders", symbol="BTCUSDT")
            assert status == 200 and [o["clientOrderId"] for o in orders] == ["kept"]  # owner still signs, keeps it
            status, bal, _ = await c.signed("GET", "/fapi/v2/balance")
            assert float(bal[0]["balance"]) == 10_000.0
            await c.signed("DELETE", "/fapi/v1/allOpenOrders", symbol="BTCUSDT")
            status, reply, _ = await _admin(emu, "POST", "/_emu/account", json={"api_key": "new", "secret": "s"})
            assert status == 200 and "new" in emu.state()["accounts"]

    asyncio.run(go())
    with pytest.raises(ConfigError, match="never replaced"):
        emu.add_account("owner", "other")


def test_secrets_from_file_and_environment(tmp_path):
    f = tmp_path / "emu.toml"
    f.write_text(f'admin_token = "{TOKEN}"\n[[account]]\napi_key = "a"\nsecret = "sa"\nbalance = 5\n')
    f.chmod(0o600)
    token, accounts = load_secrets(str(f), {"HFTBACKTEST_EMU_ACCOUNTS": "b:sb:7,c:sc"})
    assert token == TOKEN
    assert accounts == [{"api_key": "b", "secret": "sb", "balance": 7.0}, {"api_key": "c", "secret": "sc"},
                        {"api_key": "a", "secret": "sa", "balance": 5.0}]
    f.write_text('[[account]]\napi_key = "a"\nsecret = "sa"\nbalanse = 5\n')
    with pytest.raises(ConfigError, match="unknown key 'balanse'"):
        load_secrets(str(f), {})
    with pytest.raises(ConfigError, match="16 or more"):
        load_secrets(None, {ADMIN_TOKEN_ENV: "short"})


def test_cli_takes_secrets_from_file_and_env_and_never_prints_them(tmp_path):
    secrets = tmp_path / "emu-secrets.toml"
    secrets.write_text('[[account]]\napi_key = "file-key"\nsecret = "file-secret-value"\nbalance = 1234\n')
    secrets.chmod(0o600)
    cmd = [sys.executable, "-m", "hftbacktest.cli", "emulator", "--market", "synthetic:BTCUSDT:0.5", "--admin",
           "--secrets", str(secrets)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", ADMIN_TOKEN_ENV: TOKEN,
           "HFTBACKTEST_EMU_ACCOUNTS": "env-key:env-secret-value"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=isolate_child)
    try:
        rest = proc.stdout.readline().split()[1]
        ws = proc.stdout.readline().split()[1]
        emu = SimpleNamespace(rest_url=rest, ws_url=ws, rest_port=int(rest.rsplit(":", 1)[1]))
        assert "admin plane on" in proc.stdout.readline()
        with open(f"/proc/{proc.pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
        assert b"secret-value" not in cmdline and TOKEN.encode() not in cmdline  # what ps shows

        async def go():
            for key, secret, balance in (("file-key", "file-secret-value", 1234.0),
                                         ("env-key", "env-secret-value", 10_000.0)):
                async with EmuClient(emu, key, secret) as c:
                    status, bal, _ = await c.signed("GET", "/fapi/v2/balance")
                    assert status == 200 and float(bal[0]["balance"]) == balance
            status, state, _ = await _admin(emu, "GET", "/_emu/state")
            assert status == 200 and set(state["accounts"]) == {"file-key", "env-key"}
            status, _, _ = await _admin(emu, "GET", "/_emu/state", token="not-the-token-at-all")
            assert status == 401

        asyncio.run(go())
    finally:
        out, err = interrupt(proc)
    assert proc.returncode == 0, err
    for secret in ("file-secret-value", "env-secret-value", TOKEN):
        assert secret not in out + err


def test_cli_admin_without_a_token_is_an_error():
    env = {k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV}
    proc = subprocess.run([sys.executable, "-m", "hftbacktest.cli", "emulator", "--market", "synthetic:BTCUSDT:0.5",
                           "--admin"], capture_output=True, text=True, timeout=60, env=env, preexec_fn=isolate_child)
    assert proc.returncode == 1 and proc.stderr.startswith("error: --admin needs a token"), proc.stderr
    assert "Traceback" not in proc.stderr
