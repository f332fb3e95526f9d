"""`.npz` data served in slices (stored: memory-mapped, compressed: inflated chunk by chunk) equals loading it whole."""
from __future__ import annotations

import numpy as np
import pytest

from hftbacktest.backtest import _npz, reader
from hftbacktest.backtest.reader import AssetFeed, Source
from hftbacktest.errors import DataError
from hftbacktest.types import BUY_EVENT, DEPTH_EVENT, EXCH_EVENT, LOCAL_EVENT, event_dtype


def events(n: int, seed: int, t0: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(n, event_dtype)
    out["ev"] = EXCH_EVENT | LOCAL_EVENT | BUY_EVENT | DEPTH_EVENT
    out["exch_ts"] = t0 + np.cumsum(rng.integers(0, 1000, n))
    out["local_ts"] = out["exch_ts"] + 500
    out["px"] = np.round(rng.normal(100.0, 1.0, n), 1)  # random floats: compress poorly, many top-ups
    out["qty"] = rng.random(n)
    out["order_id"] = rng.integers(0, 1 << 40, n)
    return out


def served(feed: AssetFeed) -> np.ndarray:
    """Walk both processors through every chunk (exchange one chunk ahead, as under latency) and join them."""
    got = []
    for i in range(len(feed)):
        got.append(np.array(feed.chunk(1, i)))
        if i:
            feed.chunk(0, i - 1)
    return np.concatenate(got)


@pytest.fixture
def small_slices(monkeypatch):
    monkeypatch.setattr(reader, "SLICE_ROWS", 1000)  # cuts inside the member, not at its end
    monkeypatch.setattr(_npz, "_IN_BLOCK", 4096)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_sliced_npz_equals_whole_load(tmp_path, small_slices, save):
    data = [events(2500, 1), events(1700, 2, t0=10**9)]
    paths = []
    for k, arr in enumerate(data):
        paths.append(str(tmp_path / f"d{k}.npz"))
        save(paths[-1], data=arr)
    feed = AssetFeed([Source(p) for p in paths], 0)
    assert len(feed) == 3 + 2
    whole = np.concatenate([np.load(p)["data"] for p in paths])
    assert served(feed).tobytes() == whole.tobytes()


def test_compressed_member_without_ctypes_zlib(tmp_path):
    arr = events(3000, 3)
    path = str(tmp_path / "c.npz")
    np.savez_compressed(path, data=arr)
    m = _npz.member(path)
    assert not m.stored and m.rows == 3000
    for lib in (None, _npz._LIBZ, _npz._ISAL):
        inf = _npz.Inflater(m, lib=lib)
        parts = [inf.read(700 * 64) for _ in range(4)] + [inf.read(200 * 64)]
        assert np.concatenate(parts).tobytes() == arr.tobytes()


def test_restart_when_a_processor_falls_behind(tmp_path, small_slices):
    arr = events(3500, 4)
    path = str(tmp_path / "c.npz")
    np.savez_compressed(path, data=arr)
    feed = AssetFeed([Source(path)], 0)
    feed.chunk(1, 0)
    feed.chunk(0, 0)
    feed.chunk(1, 1)
    feed.chunk(0, 1)
    feed.chunk(1, 2)
    feed.chunk(0, 2)
    feed._cache.clear()  # force chunk 1 to be read again from a stream that is past it
    assert np.array(feed.chunk(0, 1)).tobytes() == arr[1000:2000].tobytes()


def corrupt(path: str, where: float) -> None:
    m = _npz.member(path)
    raw = bytearray(open(path, "rb").read())
    at = m.offset + int(m.csize * where)
    raw[at:at + 64] = bytes(64)
    open(path, "wb").write(bytes(raw))


@pytest.mark.parametrize("lib", ["isal", "ctypes", "python"])
def test_corrupt_compressed_member_names_the_file(tmp_path, small_slices, monkeypatch, lib):
    if lib != "isal":
        monkeypatch.setattr(_npz, "_ISAL", None)
    if lib == "python":
        monkeypatch.setattr(_npz, "_LIBZ", None)
    path = str(tmp_path / "bad.npz")
    np.savez_compressed(path, data=events(5000, 5))
    corrupt(path, 0.6)
    feed = AssetFeed([Source(path)], 0)
    with pytest.raises(DataError, match="bad.npz"):
        served(feed)


def test_truncated_npz_names_the_file(tmp_path):
    path = str(tmp_path / "cut.npz")
    np.savez_compressed(path, data=events(5000, 6))
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut.npz"):
        AssetFeed([Source(path)], 0)
