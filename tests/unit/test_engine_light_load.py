"""The package's cached code is loaded without numba's compiler registries (_numba_tricks/cache.py): a fresh
process that only loads it must produce what a process that compiled it produced, without importing them."""
from __future__ import annotations

from _subproc import run_json

from hftbacktest._numba_tricks import cache

SNIPPET = """
    import hashlib, json, sys
    if {refresh}:  # everything below then loads into a fully refreshed context, as after any compile
        from numba.core.registry import cpu_target
        cpu_target.target_context.refresh()
    from hftbacktest.data.utils import binancefutures
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
    feed = {feed!r}
    events = binancefutures.convert(feed, opt="mt")
    hbt = HashMapMarketDepthBacktest([BacktestAsset().data(events).tick_size(0.1).lot_size(0.001)
                                      .constant_order_latency(1_000_000, 1_000_000).power_prob_queue_model(2.0)
                                      .no_partial_fill_exchange().linear_asset(1.0)])
    hbt.elapse(5_000_000_000)
    depth = hbt.depth(0)
    hbt.submit_buy_order(0, 1, depth.best_bid, 0.001, 1, 0, False)
    hbt.elapse(20_000_000_000)
    sv = hbt.state_values(0)
    print(json.dumps({{"digest": hashlib.sha256(events.tobytes()).hexdigest(), "ts": hbt.current_timestamp,
                       "position": float(sv.position), "trades": int(sv.num_trades),
                       "registries": "numba.np.linalg" in sys.modules}}))
"""


def test_a_process_that_only_loads_gets_the_same_results_without_the_registries(tmp_path):
    from hftbacktest.data.synthetic import generate

    feed = tmp_path / "feed.gz"
    generate(str(feed), minutes=1.0, seed=3)
    first = run_json(SNIPPET.format(feed=str(feed), refresh=True), {})  # also fills the cache when it is cold
    second = run_json(SNIPPET.format(feed=str(feed), refresh=False), {})
    assert first.pop("registries") is True
    assert second.pop("registries") is False
    assert second == first


class _NotNumbasCache:
    def load_overload(self, sig, target_context):
        return None


def test_an_unrecognised_cache_class_is_left_alone():
    assert cache.install_light_load(_NotNumbasCache) is False
    assert "load_overload" in _NotNumbasCache.__dict__ and "_hftbacktest_light" not in _NotNumbasCache.__dict__


def test_an_untested_numba_is_left_alone(monkeypatch):
    import hftbacktest._numba_tricks as tricks
    from numba.core.caching import Cache

    class Copy(Cache):
        pass

    monkeypatch.setattr(tricks, "numba_is_tested", lambda: False)
    assert cache.install_light_load(Copy) is False
    assert "load_overload" not in Copy.__dict__
