"""`hftbacktest generate | convert | validate` as a new user runs them."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

from hftbacktest.cli import main
from hftbacktest.types import event_dtype


def test_generate_convert_validate_roundtrip_in_real_processes(tmp_path, capsys):
    env = {**os.environ, "CI": "1"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "hftbacktest.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    assert main(["generate", "binancefutures", "--symbol", "BTCUSDT", "--minutes", "0.5", "--seed", "1",
                 "-o", str(tmp_path / "feed.gz")]) == 0
    # the README's recipe as written: the default policy and --opt mt on our own synthetic feed
    conv = run("convert", "binancefutures", "feed.gz", "-o", "feed.npz", "--opt", "mt")
    assert conv.returncode == 0, conv.stderr
    assert "no problems found" in conv.stderr and "wrote" in conv.stdout
    assert "ahead of exch_timestamp" not in conv.stderr  # mark-price rows did not shift the local clock
    data = np.load(tmp_path / "feed.npz")["data"]
    assert data.dtype == event_dtype and len(data) > 1000
    mark = data[(data["ev"] & 0xFF) == 101]
    assert len(mark) and np.all(np.abs(mark["local_ts"] - mark["exch_ts"]) < 1_000_000_000)
    val = run("validate", "feed.npz", "feed.gz")
    assert val.returncode == 0, val.stdout + val.stderr
    assert "ok: ordering" in val.stdout and val.stdout.rstrip().endswith("all 2 files ok")


@pytest.fixture()
def in_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CI", "1")
    return tmp_path


def test_validate_and_strict_convert_name_the_gap_line(in_dir, capsys):
    assert main(["generate", "binancefutures", "--minutes", "0.5", "--seed", "2", "--gaps", "1", "-o", "bad.gz"]) == 0
    line = capsys.readouterr().out.split("injected gap at line ")[1].split(":")[0]
    assert main(["validate", "bad.gz"]) == 1
    assert f"gap (pu_mismatch) at line {line}" in capsys.readouterr().out
    assert main(["convert", "binancefutures", "bad.gz", "--gap-policy", "resync", "-o", "good.npz"]) == 0
    capsys.readouterr()
    assert main(["validate", "good.npz", "bad.gz"]) == 1  # the last file's verdict is not the overall one
    assert capsys.readouterr().out.rstrip().endswith("1 of 2 files with problems")
    with contextlib.redirect_stdout(sys.stderr):
        assert main(["convert", "binancefutures", "bad.gz", "--strict"]) == 1
    assert f"bad.gz:{line}:" in capsys.readouterr().err


def test_validate_rejects_unordered_array(in_dir, capsys):
    a = np.zeros(3, event_dtype)
    a["ev"] = (1 << 31) | (1 << 30) | (1 << 29) | 2
    a["exch_ts"] = [3, 2, 1]
    a["local_ts"] = [3, 4, 5]
    a["px"] = 1.0
    np.savez("bad.npz", data=a)
    assert main(["validate", "bad.npz"]) == 1
    assert "exchange events are out of order at row 1" in capsys.readouterr().out


def test_convert_help_explains_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["convert", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--opt" in out and "bookTicker" in out and "--gap-policy" in out
