"""drop_stale_caches: numba's cached code of the package is removed when the sources it depends on change
(numba itself only checks each function's own file, so a changed StructRef layout would load stale code)."""
import shutil
from pathlib import Path

from numba.core.caching import FunctionCache

from hftbacktest._numba_tricks import salt


def _cache_dir(root: Path, folder: str) -> Path:
    scope: dict = {}
    exec(compile("def probe():\n    pass\n", str(root / folder / "__init__.py"), "exec"), scope)
    return Path(FunctionCache(scope["probe"]).cache_path)


def test_stale_caches_are_dropped_only_when_sources_change(tmp_path):
    pkg = Path(salt.__file__).parent.parent
    root = tmp_path / "hftbacktest"
    shutil.copytree(pkg, root, ignore=shutil.ignore_patterns("__pycache__", "*.nb*"))
    kernels_cache = _cache_dir(root, "kernels")
    live_cache = _cache_dir(root, "live")

    def plant(folder_cache, name):
        folder_cache.mkdir(parents=True, exist_ok=True)
        (folder_cache / name).write_bytes(b"x")
        return folder_cache / name

    first = plant(kernels_cache, "loop.entry-1.py311.nbi")
    salt.drop_stale_caches(root)
    assert not first.exists()  # no marker yet: unknown provenance, dropped
    kept = plant(kernels_cache, "loop.entry-1.py311.1.nbc")
    live_kept = plant(live_cache, "bot._wait-1.py311.nbi")
    salt.drop_stale_caches(root)
    assert kept.exists() and live_kept.exists()  # sources unchanged: cache kept

    # a live-bot edit invalidates the live bot's cache only; a kernel layout change invalidates everything
    (root / "live" / "bot.py").write_text((root / "live" / "bot.py").read_text() + "\n# edited\n")
    salt.drop_stale_caches(root)
    assert kept.exists() and not live_kept.exists()
    (root / "kernels" / "state.py").write_text((root / "kernels" / "state.py").read_text() + "\n# edited\n")
    salt.drop_stale_caches(root)
    assert not kept.exists()


# --- numba's cache across processes (hftbacktest._numba_tricks.cache) -----------------------------------------------

import multiprocessing as mp  # noqa: E402
import warnings  # noqa: E402

import pytest  # noqa: E402
from numba.core.caching import IndexDataCacheFile  # noqa: E402

from hftbacktest._numba_tricks import cache  # noqa: E402


def _writer(folder, tag, n, start):
    cache.install()
    start.wait()
    for k in range(n):
        f = IndexDataCacheFile(folder, "fn-1.py311", ("stamp", 1))
        f.save((tag, k), (tag, k, "payload" * 1000))


def test_concurrent_writers_never_map_a_key_to_another_keys_code(tmp_path):
    """Two processes add different signatures of one function at once (a sweep, the compile helper): every key in
    the index loads its own entry and none is lost. numba's own numbering gave both the same data file."""
    ctx = mp.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tag, 60, start)) for tag in ("a", "b", "c")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    f = IndexDataCacheFile(str(tmp_path), "fn-1.py311", ("stamp", 1))
    index = f._load_index()
    assert len(index) == 180
    for key in index:  # unpatched numba 0.68: ~9 of 180 keys loaded another key's entry (and ~10 % were lost)
        assert f.load(key) == (*key, "payload" * 1000)


def test_a_data_file_of_another_key_or_a_deleted_one_is_a_miss(tmp_path):
    f = IndexDataCacheFile(str(tmp_path), "fn-1.py311", ("stamp", 1))
    f.save("k1", "code for k1")
    f.save("k2", "code for k2")
    index = f._load_index()
    index["k2"] = index["k1"]  # what numba's numbering race leaves behind
    f._save_index(index)
    assert f.load("k1") == "code for k1"
    assert f.load("k2") is None  # compile, never run k1's code for k2
    (tmp_path / index["k1"]).unlink()  # purged by another process between index and data
    assert f.load("k1") is None
    f._save_data("legacy.1.nbc", "untagged entry of an unpatched writer")
    f._save_index({"k3": "legacy.1.nbc"})
    assert f.load("k3") is None


def test_layout_checks_fail_closed(tmp_path, monkeypatch):
    assert cache._recognised(IndexDataCacheFile)

    class Moved:
        def save(self, key, data, extra):
            pass

    assert not cache._recognised(Moved)
    reasons = []
    monkeypatch.setattr(cache, "disable", reasons.append)
    pkg = Path(salt.__file__).parent.parent
    root = tmp_path / "hftbacktest"
    shutil.copytree(pkg, root, ignore=shutil.ignore_patterns("__pycache__", "*.nb*"))
    kernels_cache = _cache_dir(root, "kernels")
    kernels_cache.mkdir(parents=True, exist_ok=True)
    entry = kernels_cache / "loop.entry-1.py311.nbi"
    entry.write_bytes(b"x")
    (kernels_cache / "loop.entry-1.py311.nbx").write_bytes(b"a layout this version does not know")
    salt.drop_stale_caches(root)
    assert entry.exists()  # nothing deleted blindly
    assert reasons and "unrecognised file 'loop.entry-1.py311.nbx'" in reasons[0]


def test_disable_compiles_into_a_private_folder(monkeypatch):
    from numba.core import config

    monkeypatch.setattr(cache, "CACHING", True)
    monkeypatch.setattr(config, "CACHE_DIR", config.CACHE_DIR)
    with pytest.warns(RuntimeWarning, match="numba cache turned off"):
        cache.disable("test")
    assert "hftbacktest-nocache-" in config.CACHE_DIR and not cache.CACHING
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.disable("again")  # one warning per process
