"""`hftbacktest report` output rendered by a real headless Chromium, driven over the DevTools protocol (loopback)."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hftbacktest.types import order_latency_dtype, record_dtype

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _synthetic_run(path: Path) -> None:
    """A 10-minute, 100 ms record of a market maker on a random-walk mid (seeded), plus config and latencies."""
    rng = np.random.default_rng(7)
    n = 6000
    rec = np.zeros(n, record_dtype)
    rec["timestamp"] = 1_723_161_600_000_000_000 + np.arange(n) * 100_000_000
    rec["price"] = 60_000 + np.cumsum(rng.normal(0, 2.0, n))
    fills = rng.random(n) < 0.05
    qty = np.where(fills, rng.choice([-0.002, 0.002], n), 0.0)
    rec["position"] = np.cumsum(qty)
    rec["balance"] = -np.cumsum(qty * rec["price"])
    rec["fee"] = np.cumsum(np.abs(qty * rec["price"]) * -0.00005)
    rec["num_trades"] = np.cumsum(fills)
    rec["trading_volume"] = np.cumsum(np.abs(qty))
    rec["trading_value"] = np.cumsum(np.abs(qty * rec["price"]))
    lat = np.zeros(300, order_latency_dtype)
    lat["req_ts"] = rec["timestamp"][::20]
    lat["exch_ts"] = lat["req_ts"] + rng.integers(2_000_000, 9_000_000, 300)
    lat["resp_ts"] = lat["exch_ts"] + rng.integers(1_000_000, 5_000_000, 300)
    config = {"title": "Browser test run", "strategy": "synthetic", "assets": [{"name": "BTCUSDT",
              "asset_type": "linear", "contract_size": 1.0}]}
    np.savez_compressed(path, **{"0": rec, "config": np.array(json.dumps(config)), "order_latency_0": lat})


class DevTools:
    """Minimal CDP client: one browser websocket, one flattened page session."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def call(self, method: str, timeout: float = 30, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv(timeout=timeout))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            ev = json.loads(self.ws.recv(timeout=timeout))
            if ev.get("method") == method:
                return ev
            self.events.append(ev)


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,2400",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        for line in proc.stderr:  # Chromium announces its DevTools endpoint on stderr once it is ready
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                break
        else:
            pytest.fail(f"chromium exited without a DevTools endpoint (rc={proc.wait()})")
        from websockets.sync.client import connect

        with connect(found.group(1), max_size=64 * 1024 * 1024, open_timeout=20) as ws:
            tools = DevTools(ws)
            target = tools.call("Target.createTarget", url="about:blank")["targetId"]
            tools.session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            yield tools
    finally:
        proc.kill()
        proc.wait()


def test_report_renders_in_chromium_without_errors(tmp_path, browser):
    record = tmp_path / "run.npz"
    _synthetic_run(record)
    page = tmp_path / "report.html"
    env = {**os.environ, "CI": "1"}
    done = subprocess.run([sys.executable, "-m", "hftbacktest.cli", "report", str(record), "-o", str(page),
                           "--book-size", "10000"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert page.exists() and "<script src=" not in page.read_text()  # plotly.js inlined

    for domain in ("Runtime", "Log", "Network", "Page"):
        browser.call(f"{domain}.enable")
    browser.call("Page.navigate", url=page.as_uri())
    browser.wait_event("Page.loadEventFired", timeout=60)
    counts = browser.call(
        "Runtime.evaluate", awaitPromise=True, returnByValue=True,
        expression="""new Promise(done => requestAnimationFrame(() => setTimeout(() => done({
            plots: document.querySelectorAll('.js-plotly-plot').length,
            svgs: document.querySelectorAll('.js-plotly-plot .main-svg').length,
            lines: document.querySelectorAll('.scatterlayer .trace').length,
            bars: document.querySelectorAll('.barlayer .trace').length,
            waterfalls: document.querySelectorAll('.waterfalllayer .trace').length,
            metrics: [...document.querySelectorAll('.metric .name')].map(e => e.textContent),
            title: document.title}), 0)))""",
    )["result"]["value"]
    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
    (tmp_path / "report.png").write_bytes(shot)

    # drain anything the page logged, then look for errors and for requests leaving the file
    browser.call("Runtime.evaluate", expression="0")
    errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    remote = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"
              and not e["params"]["request"]["url"].startswith(("file:", "data:", "blob:", "about:"))]
    assert errors == []
    assert remote == []
    assert counts["title"] == "Browser test run"
    assert counts["plots"] == 3  # price/equity/drawdown/position, fee breakdown, order latency
    assert counts["svgs"] >= 3 and counts["lines"] >= 7  # mid, buys, sells, equity x2, drawdown, position, fees
    assert counts["bars"] == 2 and counts["waterfalls"] == 1  # latency histograms, PnL breakdown
    assert {"SR", "Sortino", "Return", "MaxDrawdown", "MaxLeverage"} <= set(counts["metrics"])
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000  # a blank page compresses to a few KB
