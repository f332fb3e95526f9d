"""`hftbacktest emulator` as a real process: prints its URLs, serves signed requests, stops on SIGINT."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from test_emulator_client import EmuClient, interrupt, isolate_child, recv_until

pytestmark = pytest.mark.e2e


def test_cli_serves_until_interrupted(tmp_path):
    faults = tmp_path / "faults.toml"
    faults.write_text("[faults.insurance_fund_trade]\ncount = 1\n")
    # a short synthetic feed keeps start-up fast; recorded files go through the same loader in the other tests
    cmd = [sys.executable, "-m", "hftbacktest.cli", "emulator", "--market", "synthetic:BTCUSDT:0.5",
           "--port", "0", "--ws-port", "0", "--speed", "2", "--account", "cli-key:cli-secret:2500",
           "--faults", str(faults)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=isolate_child)
    try:
        rest = proc.stdout.readline().split()
        ws = proc.stdout.readline().split()
        assert rest[0] == "REST" and rest[1].startswith("http://127.0.0.1:"), rest
        assert ws[0] == "WS" and ws[1].startswith("ws://127.0.0.1:") and ws[1].endswith("/ws"), ws
        emu = SimpleNamespace(rest_url=rest[1], ws_url=ws[1])

        async def go():
            async with EmuClient(emu, "cli-key", "cli-secret") as c:
                status, bal, _ = await c.signed("GET", "/fapi/v2/balance")
                assert status == 200 and float(bal[0]["balance"]) == 2500.0
                trades = await c.ws("/ws/btcusdt@trade")
                m, _ = await recv_until(trades, lambda m: m["X"] == "INSURANCE_FUND")  # armed from the TOML file
                await trades.close()

        asyncio.run(go())
    finally:
        out, err = interrupt(proc)
    assert proc.returncode == 0, err
    assert "cli-secret" not in out + err  # secrets never logged
    assert "--account puts a secret on the command line" in err
    assert "fault insurance_fund_trade fired" in err


def test_cli_rejects_bad_fault_spec(sample_data_dir):
    proc = subprocess.run([sys.executable, "-m", "hftbacktest.cli", "emulator", "--market",
                           str(sample_data_dir / "btcusdt_20240808.gz"), "--faults", "meteor_strike"],
                          capture_output=True, text=True, timeout=60, preexec_fn=isolate_child)
    assert proc.returncode == 1 and "unknown fault kind 'meteor_strike'" in proc.stderr
