"""The cold-cache compile helper (kernels/warmup.py)."""
from __future__ import annotations

import os
import subprocess
import sys

from _subproc import ROOT, run_json as _run


def test_the_cold_compile_helper_caches_what_the_engine_then_loads(tmp_path):
    """kernels/warmup.py compiles part of the engine in a second process on a cold cache. Its signatures must be
    the ones the engine uses, or it only burns CPU: after it ran, building and running a backtest in a new process
    (helper off) must load those kernels from the cache instead of compiling them."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path), "HFTBACKTEST_PARALLEL_COMPILE": "0"}
    out = subprocess.run([sys.executable, "-m", "hftbacktest.kernels.warmup"], capture_output=True, text=True,
                         env={**os.environ, **env}, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = _run("""
        import json
        from numba.core import event
        compiled = []
        class Listener(event.Listener):
            def on_start(self, ev):
                f = getattr(ev.data.get("dispatcher"), "py_func", None)
                if f is not None:
                    compiled.append(f.__qualname__)
            def on_end(self, ev):
                pass
        event.register("numba:compile", Listener())
        import numpy as np
        from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
        from hftbacktest.types import BUY_EVENT, DEPTH_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, event_dtype
        data = np.zeros(2, event_dtype)
        data[0] = (EXCH_EVENT | LOCAL_EVENT | DEPTH_EVENT | BUY_EVENT, 1, 2, 99.0, 1.0, 0, 0, 0.0)
        data[1] = (EXCH_EVENT | LOCAL_EVENT | DEPTH_EVENT | SELL_EVENT, 3, 4, 101.0, 1.0, 0, 0, 0.0)
        hbt = HashMapMarketDepthBacktest([BacktestAsset().data(data).tick_size(1.0).lot_size(1.0)])
        rc = hbt.elapse(10)
        from hftbacktest.kernels import depth as dp  # a kernel the helper compiled, called from Python
        qty = dp.bid_qty_at(dp.new_depth(0, 1.0, 1.0, 0.0, 0.0, False), 5)
        print(json.dumps({"compiled": compiled, "rc": rc, "qty": qty}))
    """, env)
    late = {"ack_new", "_queue_fill", "_fill_resting_all", "queue_depth", "new_engine", "new_asset_list",
            "new_depth", "new_asset_state", "_append_asset",
            "check_rows", "_taker_partial", "fill"}
    assert res["rc"] == 1  # end of data: the engine really ran
    assert res["qty"] == 0.0  # its cached Python wrapper can unbox the engine's types
    assert "update_bid" in res["compiled"]  # the listener sees compiles...
    assert not late & set(res["compiled"]), sorted(late & set(res["compiled"]))  # ...but not of these


def _backend():
    """The in-tree build backend (_build/hftbacktest_build.py), imported as pip imports it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hftbacktest_build", ROOT / "_build" / "hftbacktest_build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_build_backend_precompiles_after_an_editable_build_and_never_fails_the_install(monkeypatch, capsys):
    backend = _backend()
    calls = []
    monkeypatch.setattr(backend._setuptools, "build_editable", lambda *a: calls.append("wheel") or "x.whl")

    def failing(cmd, **kw):
        calls.append(("precompile", cmd[-1], kw["env"]["PYTHONPATH"].split(os.pathsep)[0]))
        return subprocess.CompletedProcess(cmd, 1, "", "Traceback ...\nImportError: no numba\n")

    monkeypatch.setattr(backend.subprocess, "run", failing)
    monkeypatch.delenv("HFTBACKTEST_PRECOMPILE", raising=False)
    assert backend.build_editable("dist") == "x.whl"
    assert calls[0] == "wheel" and calls[1][0] == "precompile"
    assert calls[1][2] == str(ROOT / "src")  # the sources the editable install runs from
    assert "precompile failed (ImportError: no numba)" in capsys.readouterr().err

    monkeypatch.setenv("HFTBACKTEST_PRECOMPILE", "0")
    calls.clear()
    assert backend.build_editable("dist") == "x.whl" and calls == ["wheel"]
    assert not any("numba" in r for r in backend.get_requires_for_build_editable())


def test_the_build_environment_gets_the_runtime_pins_the_precompile_imports(monkeypatch):
    import tomllib

    backend = _backend()
    monkeypatch.delenv("HFTBACKTEST_PRECOMPILE", raising=False)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = backend.get_requires_for_build_editable()
    numba_pin = [d for d in deps if d.startswith("numba")]
    assert numba_pin and numba_pin[0] in wanted  # the same numba as the installed package: its cache keys match
    assert not any(d.startswith(("polars", "plotly", "rich")) for d in wanted)


def test_precompile_covers_everything_the_demo_compiles(tmp_path):
    """What `pip install -e .` runs (demo.precompile) must leave nothing for the demo to compile: a fresh process
    running the demo after it compiles no numba function. (Uses the default cache: fast when it is warm, and on a
    fresh checkout it is the install-time precompile that filled it.)"""
    out = subprocess.run([sys.executable, "-W", "ignore", "-c",
                          "import sys; from pathlib import Path; from hftbacktest.demo import precompile; "
                          "precompile(Path(sys.argv[1]))", str(tmp_path / "pre")],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = _run(f"""
        import io, json
        from pathlib import Path
        from numba.core import event
        compiled = []
        class Listener(event.Listener):
            def on_start(self, ev):
                f = getattr(ev.data.get("dispatcher"), "py_func", None)
                compiled.append(getattr(f, "__qualname__", "?"))
            def on_end(self, ev):
                pass
        event.register("numba:compile", Listener())
        from rich.console import Console
        from hftbacktest.demo import run_demo
        run_demo(Path({str(tmp_path / "demo")!r}), 5.0, 1, Console(file=io.StringIO()))
        print(json.dumps({{"compiled": compiled}}))
    """, {})
    assert res["compiled"] == [], res["compiled"]
