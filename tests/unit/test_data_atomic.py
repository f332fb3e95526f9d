"""Atomic outputs: a writer killed (SIGKILL) mid-write leaves the previous file intact and nothing partial under
the final name; the stale temporary is removed by the next write."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hftbacktest import _atomic
from hftbacktest.data.synthetic import generate

# Run in the child before the writer: the first write to an atomic temporary writes half its bytes, says so and
# blocks (until the parent kills the process), so the kill lands in the middle of a real write.
_PAUSE = """
import os, sys
from hftbacktest import _atomic

class _Paused:
    def __init__(self, f):
        self._f = f
    def __getattr__(self, name):
        return getattr(self._f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self._f.close()
    def write(self, b):
        self._f.write(b[: max(1, len(b) // 2)])
        self._f.flush()
        os.fsync(self._f.fileno())
        os.write(1, b"MIDWRITE\\n")  # fd 1, not sys.stdout: the CLI redirects sys.stdout to stderr
        sys.stdin.read()  # never returns: the parent kills us here
        raise SystemExit("not killed")

_atomic.open = lambda *a, **k: _Paused(open(*a, **k))
"""

_WRITERS = {
    "convert_api": """
        from hftbacktest.data.utils import binancefutures
        binancefutures.convert(FEED, OUT)
    """,
    "convert_api_streamed": """
        from hftbacktest.data import _spool
        from hftbacktest.data.utils import binancefutures
        _spool.BLOCK_ROWS = 96  # the memory-mapped path: the output is streamed into the zip
        binancefutures.convert(FEED, OUT, tmp_dir=os.path.dirname(OUT))
    """,
    "convert_cli": """
        from hftbacktest.cli import main
        main(["convert", "binancefutures", FEED, "-o", OUT])
    """,
    "recorder": """
        from hftbacktest.recorder import Recorder
        Recorder(1, 10).to_npz(OUT)
    """,
    "report": """
        import numpy as np
        from hftbacktest.report import AssetView, RunRecord, write_report
        from hftbacktest.types import record_dtype
        rec = np.zeros(50, record_dtype)
        rec["timestamp"] = 1_704_067_200_000_000_000 + np.arange(50) * 1_000_000_000
        rec["price"] = 100.0
        write_report(RunRecord([AssetView(rec)]), OUT)
    """,
    "latency": """
        from hftbacktest.live.recorder import latency_log_to_npz
        log = OUT + ".jsonl"
        with open(log, "w") as f:
            f.write('{"req_ts": 1, "exch_ts": 2, "resp_ts": 3}\\n')
        latency_log_to_npz([log], OUT)
    """,
    "sweep_table": """
        import polars as pl
        from hftbacktest.sweep import write_table
        write_table(pl.DataFrame({"run": [0, 1], "SR": [1.5, -0.2]}), OUT)
    """,
    "generate": """
        from hftbacktest.data.synthetic import generate
        generate(OUT, minutes=0.1, seed=2)
    """,
}


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    path = tmp_path_factory.mktemp("atomic") / "feed.gz"
    generate(str(path), minutes=0.2, seed=1)
    return str(path)


def _good_file(path: str) -> bytes:
    if path.endswith(".npz"):
        np.savez_compressed(path, data=np.arange(7))
    else:
        with open(path, "w") as f:
            f.write("the previous good output\n")
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("writer", list(_WRITERS))
def test_sigkill_mid_write_keeps_the_previous_file(writer, feed, tmp_path):
    out = str(tmp_path / {"report": "r.html", "generate": "f.gz", "sweep_table": "t.csv"}.get(writer, "X.npz"))
    good = _good_file(out)
    code = _PAUSE + f"FEED, OUT = {feed!r}, {out!r}\n" + textwrap.dedent(_WRITERS[writer])
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if line.rstrip().endswith("MIDWRITE"):
                break
        else:
            pytest.fail(f"the writer exited ({proc.wait()}) without reaching the write")
        temps = [n for n in os.listdir(tmp_path) if n.startswith("." + os.path.basename(out) + ".")]
        assert len(temps) == 1 and os.path.getsize(tmp_path / temps[0]) > 0  # a half-written temporary exists
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
    with open(out, "rb") as f:
        assert f.read() == good
    # the next write to the same name replaces the file and removes the dead writer's temporary
    _atomic.atomic_write_bytes(out, b"new")
    assert open(out, "rb").read() == b"new"
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


def test_exception_leaves_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "x.npz"
    good = _good_file(str(out))
    with pytest.raises(RuntimeError), _atomic.atomic_writer(out) as f:
        f.write(b"partial")
        raise RuntimeError("writer failed")
    assert out.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["x.npz"]


def test_savez_names_like_numpy_and_keeps_mode(tmp_path):
    _atomic.savez(str(tmp_path / "run"), compressed=False, a=np.arange(3))
    assert np.load(tmp_path / "run.npz")["a"].tolist() == [0, 1, 2]
    os.chmod(tmp_path / "run.npz", 0o640)
    _atomic.savez(tmp_path / "run.npz", a=np.arange(2))
    assert os.stat(tmp_path / "run.npz").st_mode & 0o777 == 0o640
    assert np.load(tmp_path / "run.npz")["a"].tolist() == [0, 1]
    _atomic.atomic_write_bytes(tmp_path / "new.txt", b"x")
    assert os.stat(tmp_path / "new.txt").st_mode & 0o777 == 0o666 & ~_atomic._umask()
