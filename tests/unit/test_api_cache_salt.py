"""Cache salt: a user's `@njit(cache=True)` strategy must be recompiled, not reloaded, when the package changes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numba

import hftbacktest
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest._numba_tricks.salt import SALT, digest
from hftbacktest.recorder import Recorder

from _engine_data import ask, bid, rows

# The user's module: one cached function over the bot type, one over a recorder. Compiling against `bot_type` by
# signature avoids building the engine (its kernels would compile from scratch in the temporary cache directory).
_USER_MODULE = """
import json
from numba import njit
from hftbacktest.backtest.views import bot_type
from hftbacktest.recorder import Recorder

@njit(cache=True)
def strategy(hbt):
    return hbt.num_assets

@njit(cache=True)
def count_records(recorder):
    return recorder.i

strategy.compile((bot_type,))
count_records(Recorder(1, 4).recorder)
print(json.dumps({f.__name__: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
                  for f in (strategy, count_records)}))
"""


def _run_user_module(tmp_path, salt):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), HFTBACKTEST_CACHE_SALT=salt)
    out = subprocess.run([sys.executable, str(tmp_path / "user_strategy.py")], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cached_user_function_recompiles_when_the_salt_changes(tmp_path):
    (tmp_path / "user_strategy.py").write_text(textwrap.dedent(_USER_MODULE))
    first = _run_user_module(tmp_path, "aaaa")
    again = _run_user_module(tmp_path, "aaaa")
    changed = _run_user_module(tmp_path, "bbbb")
    # [cache hits, cache misses] per function
    assert first == {"strategy": [0, 1], "count_records": [0, 1]}
    assert again == {"strategy": [1, 0], "count_records": [1, 0]}  # same package: loaded from the cache
    assert changed == {"strategy": [0, 1], "count_records": [0, 1]}  # package changed: recompiled


def test_salt_digests_the_sources_compiled_into_user_code(tmp_path):
    package = Path(hftbacktest.__file__).parent
    for name in ("kernels/loop.py", "kernels/state.py", "backtest/bot.py", "backtest/asset.py", "types.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(package / name, tmp_path / name)
    before = digest(tmp_path)
    assert len(before) == 12 and digest(tmp_path) == before
    with open(tmp_path / "backtest/asset.py", "a") as fh:  # not compiled into user code: same salt
        fh.write("\n# edit\n")
    assert digest(tmp_path) == before
    for name in ("kernels/loop.py", "backtest/bot.py", "types.py"):
        with open(tmp_path / name, "a") as fh:
            fh.write("\n# edit\n")
        assert digest(tmp_path) != before
        before = digest(tmp_path)
    (tmp_path / "kernels/new_kernel.py").write_text("x = 1\n")  # kernel files are found by pattern
    assert digest(tmp_path) != before


def test_objects_handed_to_user_code_carry_the_salt():
    data = rows(bid(1000, 99.0, 2.0), ask(1000, 101.0, 3.0))
    hbt = HashMapMarketDepthBacktest([BacktestAsset().data(data).tick_size(1.0).lot_size(1.0)])
    for obj in (hbt, hbt.depth(0), hbt.orders(0), Recorder(1, 4).recorder):
        assert numba.typeof(obj).name.endswith(f".{SALT}"), numba.typeof(obj).name
