"""Helpers shared by the benchmark scripts: the two interpreters, subprocess runs that report JSON, data paths.

Every benchmark runs the same script twice, once under the reference hftbacktest 2.4.4 (its own venv, `.venv-ref`)
and once under this package (`.venv`), each in a fresh subprocess, and compares what they print. Nothing here
imports either `hftbacktest`: the two packages share an import name, so each one only ever lives in its own
interpreter.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
WORK = BENCH / "_work"
STRATEGIES = BENCH / "strategies"
SHARED_DATA = REPO.parent / "shared" / "data" / "binance-usdm"
SYMBOLS = ("btcusdt", "ethusdt")
DAY = "20240808"
REFERENCE_VERSION = "2.4.4"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ref_python() -> Path:
    """The reference interpreter; creates `.venv-ref` with hftbacktest 2.4.4 on first use."""
    venv = REPO / ".venv-ref"
    py = _venv_python(venv)
    if not py.exists():
        print(f"creating {venv} with hftbacktest=={REFERENCE_VERSION} (one-off)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"hftbacktest=={REFERENCE_VERSION}"], check=True)
    return py


def our_python() -> Path:
    """The development interpreter with this package installed (falls back to the running one)."""
    py = _venv_python(REPO / ".venv")
    return py if py.exists() else Path(sys.executable)


def interpreters(ours: str | None = None, ref: str | None = None) -> dict[str, Path]:
    return {"ours": Path(ours) if ours else our_python(), "ref": Path(ref) if ref else ref_python()}


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for a child interpreter: no PYTHONPATH leaking one package into the other venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    env.update(extra or {})
    return env


class ChildFailed(RuntimeError):
    pass


@dataclass
class ChildResult:
    lines: list[dict]  # every JSON object the child printed on stdout, in order
    wall_s: float  # parent-side wall time from just before spawn to exit
    spawned_at: float  # time.time() just before spawn (to compare with times the child reports)
    stderr: str


def run_json(python: Path, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 1800,
             cwd: Path = REPO) -> ChildResult:
    """Run `python argv...` and collect the JSON lines it prints; raise ChildFailed with its stderr on failure."""
    spawned_at = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run([str(python), *argv], cwd=cwd, env=child_env(env), capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise ChildFailed(f"{python} {' '.join(argv)} exited with {proc.returncode}:\n{tail}")
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return ChildResult(lines, wall, spawned_at, proc.stderr)


def run_snippet(python: Path, code: str, *args: str, **kw) -> ChildResult:
    return run_json(python, ["-c", code, *args], **kw)


def converted(symbol: str, converter: str = "ref", rows: int | None = None) -> Path:
    """Path of a converted sample day in benchmarks/_work (made by prepare_data.py); `rows` = truncated copy."""
    suffix = f"_first{rows}" if rows else ""
    return WORK / f"{symbol}_{DAY}_{converter}{suffix}.npz"


def latency_file() -> Path:
    return WORK / f"order_latency_{DAY}.npz"


def replay_file(ext: str) -> Path:
    return WORK / f"btcusdt_{DAY}_replay.{ext}"


def require(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        sys.exit("missing prepared data: " + ", ".join(missing) + "\nrun: .venv/bin/python benchmarks/prepare_data.py")
