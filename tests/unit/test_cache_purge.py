"""drop_stale_caches: numba's cached code of the package is removed when the sources it depends on change
(numba itself only checks each function's own file, so a changed StructRef layout would load stale code)."""
import shutil
from pathlib import Path

from numba.core.caching import FunctionCache

from hftbacktest import _cache_salt


def _cache_dir(root: Path, folder: str) -> Path:
    scope: dict = {}
    exec(compile("def probe():\n    pass\n", str(root / folder / "__init__.py"), "exec"), scope)
    return Path(FunctionCache(scope["probe"]).cache_path)


def test_stale_caches_are_dropped_only_when_sources_change(tmp_path):
    pkg = Path(_cache_salt.__file__).parent
    root = tmp_path / "hftbacktest"
    shutil.copytree(pkg, root, ignore=shutil.ignore_patterns("__pycache__", "*.nb*"))
    kernels_cache = _cache_dir(root, "kernels")
    live_cache = _cache_dir(root, "live")

    def plant(folder_cache, name):
        folder_cache.mkdir(parents=True, exist_ok=True)
        (folder_cache / name).write_bytes(b"x")
        return folder_cache / name

    first = plant(kernels_cache, "loop.entry-1.py311.nbi")
    _cache_salt.drop_stale_caches(root)
    assert not first.exists()  # no marker yet: unknown provenance, dropped
    kept = plant(kernels_cache, "loop.entry-1.py311.1.nbc")
    live_kept = plant(live_cache, "bot._wait-1.py311.nbi")
    _cache_salt.drop_stale_caches(root)
    assert kept.exists() and live_kept.exists()  # sources unchanged: cache kept

    # a live-bot edit invalidates the live bot's cache only; a kernel layout change invalidates everything
    (root / "live" / "bot.py").write_text((root / "live" / "bot.py").read_text() + "\n# edited\n")
    _cache_salt.drop_stale_caches(root)
    assert kept.exists() and not live_kept.exists()
    (root / "kernels" / "state.py").write_text((root / "kernels" / "state.py").read_text() + "\n# edited\n")
    _cache_salt.drop_stale_caches(root)
    assert not kept.exists()
