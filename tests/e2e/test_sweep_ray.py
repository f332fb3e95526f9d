"""`hftbacktest sweep` on a real Ray cluster: a head and a worker node started here, on loopback addresses only.

Each node is a `ray start --block` in its own session; teardown kills every process of those sessions (never `ray
stop`, which stops every Ray on the machine). 127.0.0.2 / 127.0.0.3: Ray replaces 127.0.0.1 by the machine's
network address, other loopback addresses are kept, so nothing leaves the loopback interface."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytest.importorskip("ray")

from hftbacktest.cli import main  # noqa: E402
from hftbacktest.errors import ConfigError, DataError  # noqa: E402
from hftbacktest.sweep import load_sweep, run_sweep  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RAY = str(Path(sys.executable).with_name("ray"))

STRATEGY = """
import os
import time

from numba import njit

from hftbacktest._demo_strategy import market_making_algo


@njit(cache=True)
def _quote(hbt, recorder, half_spread_bps, skew_per_position, order_value, max_position):
    market_making_algo(hbt, recorder, half_spread_bps, skew_per_position, order_value, max_position)


def _mapping(address):
    # the line of /proc/self/maps holding `address`: "start-end perms offset dev inode path"
    with open("/proc/self/maps") as f:
        for line in f:
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            if start <= address < end:
                return line.strip()
    return ""


def strategy(hbt, recorder, half_spread_bps, skew_per_position, order_value, max_position, victim="", probe="",
             quick=False, tag=0):
    # the event rows the engine reads: where do they live in this worker process?
    if probe:
        from hftbacktest.kernels.loop import FEEDS

        rows = FEEDS[hbt._feed_key].chunk(0, 0, 0)
        with open(os.path.join(probe, str(os.getpid())), "w") as f:
            f.write(_mapping(rows.__array_interface__["data"][0]))
    # the first run to start (anywhere) announces its process and waits to be killed; every later attempt runs
    if victim:
        tmp = f"{victim}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(str(os.getpid()))
        try:
            os.link(tmp, victim)
        except FileExistsError:
            pass
        else:
            time.sleep(120)
    if quick:  # many runs of a few milliseconds: results keep arriving
        return
    _quote(hbt, recorder, half_spread_bps, skew_per_position, order_value, max_position)
"""

SWEEP = """
strategy = "mm.py:strategy"
[[asset]]
name = "BTCUSDT"
data = ["DATA"]
tick_size = 0.1
lot_size = 0.001
latency = { model = "constant", entry = 2_000_000, response = 2_000_000 }
queue = { model = "power_prob", n = 2.0 }
fee = { model = "trading_value", maker = -0.00005, taker = 0.0007 }
[params]
skew_per_position = 5.0
order_value = 500.0
max_position = 0.5
[grid]
half_spread_bps = [0.1, 0.3, 0.5]
"asset.queue" = [{ model = "power_prob", n = 2.0 }, { model = "log_prob" }]
"""


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, pgrp, session
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


class Cluster:
    """A head node and a worker node, one CPU and a small object store each."""

    def __init__(self, log_dir: Path):
        self.temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's unix socket paths must fit 107 bytes
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        # no usage reports; no token from ~/.ray (shared by whoever else runs Ray on this machine)
        self.env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
        self.procs: list[subprocess.Popen] = []
        ports = _free_ports(3)
        self.address = f"127.0.0.2:{ports[0]}"
        self.start_node(log_dir / "head.log", "127.0.0.2", ports[1],
                    ["--head", "--port", str(ports[0]), "--include-dashboard", "false", "--temp-dir", self.temp])
        self.start_node(log_dir / "worker.log", "127.0.0.3", ports[2], ["--address", self.address])

    def start_node(self, log: Path, ip: str, port: int, extra: list[str], **env: str) -> None:
        # Ray picks free ports itself for everything but the GCS and the dashboard agent (fixed defaults)
        cmd = [RAY, "start", "--block", "--node-ip-address", ip, "--num-cpus", "1", "--object-store-memory",
               str(80 * 2**20), "--disable-usage-stats", "--dashboard-agent-listen-port", str(port), *extra]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**self.env, **env},
                                    start_new_session=True)
        self.procs.append(proc)
        deadline = time.monotonic() + 90
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ray start failed: {log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        # SIGKILL: a SIGTERMed node drains for 30 s; nothing of this throwaway cluster needs saving
        for proc in self.procs:  # workers have their own process groups but stay in the node's session
            for pid in _session_pids(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("ray-logs"))
    saved = {k: os.environ.get(k) for k in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE")}
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")  # this process is the Ray driver
    try:
        yield c
    finally:
        c.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert not [p for proc in c.procs for p in _session_pids(proc.pid)]


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    from hftbacktest.data import synthetic
    from hftbacktest.data.utils import binancefutures

    d = tmp_path_factory.mktemp("ray-sweep")
    synthetic.generate(str(d / "feed.gz"), minutes=0.4, seed=5)
    with contextlib.redirect_stdout(io.StringIO()):
        binancefutures.convert(str(d / "feed.gz"), output_filename=str(d / "feed.npz"))
    (d / "mm.py").write_text(STRATEGY)
    path = d / "sweep.toml"
    path.write_text(SWEEP.replace("DATA", str(d / "feed.npz")))
    return path


@pytest.fixture(scope="module")
def local_table(sweep_file):
    return run_sweep(load_sweep(sweep_file), workers=2, progress=False).drop("elapsed_s")


def test_sweep_through_ray_address_equals_the_local_backend(cluster, sweep_file, local_table, capsys):
    out = sweep_file.parent / "ray.csv"
    # auto: the small feed goes through the object store; shared: each node reads the path
    assert main(["sweep", str(sweep_file), "--ray-address", cluster.address, "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    via_cli = pl.read_csv(out).drop("elapsed_s")
    assert_frame_equal(via_cli, pl.read_csv(_csv(local_table, sweep_file.parent / "local.csv")), check_exact=True)
    shared = run_sweep(load_sweep(sweep_file), backend="ray", ray_address=cluster.address, ray_data="shared",
                       progress=False).drop("elapsed_s")
    assert_frame_equal(shared, local_table, check_exact=True)
    assert local_table["run"].to_list() == list(range(6)) and local_table["fee"].n_unique() > 1


@pytest.mark.parametrize("mode", ["object-store", "shared"])
def test_object_store_rows_are_the_nodes_shared_memory_not_a_copy_per_task(cluster, sweep_file, local_table, tmp_path,
                                                                             mode):
    probe = tmp_path / "probe"
    probe.mkdir()
    runs = load_sweep(sweep_file, params={"probe": str(probe)})
    table = run_sweep(runs, backend="ray", ray_address=cluster.address, ray_data=mode, progress=False)
    assert_frame_equal(table.drop("elapsed_s"), local_table, check_exact=True)
    mappings = [p.read_text() for p in probe.iterdir()]
    assert mappings
    # object store: every task's rows are in a shared mapping ("rw-s"/"r--s": the node's object store); shared
    # path: the engine inflates the compressed .npz into private memory (the contrast shows the probe can tell)
    shared = [m.split()[1].endswith("s") for m in mappings]
    assert shared == [mode == "object-store"] * len(mappings), mappings


def _csv(df, path):
    df.write_csv(path)
    return path


def _wait_for(path: Path, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no task started within {timeout} s"
        time.sleep(0.05)
    return int(path.read_text())


def _gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_a_worker_killed_mid_sweep_is_retried_and_every_result_arrives(cluster, sweep_file, local_table, tmp_path):
    victim = tmp_path / "victim"
    killed = []

    def kill_first_task():
        pid = _wait_for(victim)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_first_task, daemon=True)
    killer.start()
    runs = load_sweep(sweep_file, params={"victim": str(victim)})
    table = run_sweep(runs, backend="ray", ray_address=cluster.address, progress=False).drop("elapsed_s")
    killer.join(timeout=5)
    assert killed and _gone(killed[0])
    assert_frame_equal(table, local_table, check_exact=True)


def _interruptible_sweep(sweep_file: Path, victim: Path, path: Path) -> Path:
    """The sweep with one run that waits to be killed and many quick ones, results arriving when Ctrl-C lands."""
    text = sweep_file.read_text().replace('"mm.py:strategy"', f'"{sweep_file.parent / "mm.py"}:strategy"')
    path.write_text(text.replace("[params]\n", f'[params]\nvictim = "{victim}"\nquick = true\n')
                    + f"tag = {list(range(30))}\n")
    return path


def test_ctrl_c_cancels_the_sweep_and_its_running_tasks(cluster, sweep_file, tmp_path):
    victim = tmp_path / "victim"
    sweep = _interruptible_sweep(sweep_file, victim, tmp_path / "sweep.toml")
    proc = subprocess.Popen([sys.executable, "-c", "from hftbacktest.cli import main; raise SystemExit(main())",
                             "sweep", str(sweep), "--ray-address", cluster.address], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cluster.env)
    try:
        pid = _wait_for(victim)  # a task is running (and would sleep for two minutes), others finish
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "error: sweep cancelled" in err and "Traceback" not in err, \
        (proc.returncode, err[-3000:])  # its stderr, so a rare failure under load can be diagnosed
    assert _gone(pid)  # the running task was cancelled: its worker process is gone


def test_an_interrupted_sweep_ends_its_ray_job_instead_of_cancelling_task_by_task(cluster, sweep_file, tmp_path,
                                                                                  monkeypatch):
    # ray.cancel of a task whose result is on its way aborts the driver inside Ray ("Tried to complete task that
    # was not pending"): Ctrl-C must stop the tasks by ending the job, which also kills the running ones
    import _thread

    import ray

    cancelled = []
    monkeypatch.setattr(ray, "cancel", lambda ref, **kw: cancelled.append(ref))
    victim = tmp_path / "victim"
    started = []

    def interrupt():
        started.append(_wait_for(victim))
        _thread.interrupt_main()  # a KeyboardInterrupt in the sweep's loop, as Ctrl-C raises it

    threading.Thread(target=interrupt, daemon=True).start()
    runs = load_sweep(_interruptible_sweep(sweep_file, victim, tmp_path / "sweep.toml"))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(runs, backend="ray", ray_address=cluster.address, progress=False)
    assert started and not cancelled and not ray.is_initialized()
    assert _gone(started[0])


def test_data_missing_on_the_nodes_names_the_node_and_the_path(cluster, sweep_file, tmp_path):
    missing = tmp_path / "nowhere" / "feed.npz"
    path = tmp_path / "sweep.toml"
    path.write_text(sweep_file.read_text().replace(str(sweep_file.parent / "feed.npz"), str(missing))
                    .replace('"mm.py:strategy"', f'"{sweep_file.parent / "mm.py"}:strategy"'))
    with pytest.raises(DataError, match=rf"Ray node .*\(127\.0\.0\.[23]\): data file {missing} does not exist"):
        run_sweep(load_sweep(path), backend="ray", ray_address=cluster.address, progress=False)


def test_nodes_with_another_installation_or_without_the_package_are_named_before_anything_runs(cluster, sweep_file,
                                                                                                tmp_path):
    # the package's source digest is part of the check; HFTBACKTEST_CACHE_SALT stands in for other sources there
    cluster.start_node(tmp_path / "odd.log", "127.0.0.4", _free_ports(1)[0], ["--address", cluster.address],
                       HFTBACKTEST_CACHE_SALT="another-build")
    # a node whose Python cannot import hftbacktest (shadowed by a package that says it is not installed)
    bare = tmp_path / "bare" / "hftbacktest"
    bare.mkdir(parents=True)
    (bare / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'hftbacktest\'", name="hftbacktest")\n')
    cluster.start_node(tmp_path / "bare.log", "127.0.0.5", _free_ports(1)[0], ["--address", cluster.address],
                       PYTHONPATH=str(bare.parent))
    started = tmp_path / "started"
    runs = load_sweep(sweep_file, params={"victim": str(started)})
    with pytest.raises(ConfigError) as error:
        run_sweep(runs, backend="ray", ray_address=cluster.address, progress=False)
    message = str(error.value)
    assert re.search(r"Ray node .*\(127\.0\.0\.4\) runs a different installation: source digest another-build "
                     r"\(here \w+\)", message), message
    assert re.search(r"Ray node .*\(127\.0\.0\.5\): cannot import hftbacktest \(ModuleNotFoundError: No module "
                     r"named 'hftbacktest'\); install hftbacktest-py==", message), message
    assert "127.0.0.2" not in message and "127.0.0.3" not in message  # the good nodes are not blamed
    assert not started.exists()  # no run started anywhere
