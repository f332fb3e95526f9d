"""Live vs backtest: replay a live (or paper) session's orders on the recorded market and compare the fills.

    from hftbacktest.reconcile import reconcile, calibrate
    res = reconcile("journal.jsonl", "data/btcusdt_20261206.gz", "bt.toml", latency="latency.jsonl")
    res.summary["agreement"]; res.fills; res.paths      # polars DataFrames
    table = calibrate("journal.jsonl", "data/btcusdt_20261206.gz", "bt.toml", ["risk_averse", "power_prob:1,2,3"])

docs/reconcile.md describes the method, the figures and the errors.
"""
from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, globals(), {
    "reconcile": ".api",
    "calibrate": ".api",
    "strategy_replay": ".api",
    "load": ".api",
    "write_table": ".api",
    "Reconciliation": ".api",
    "Inputs": ".api",
    "load_journals": ".session",
    "load_feed": ".session",
    "load_latency_log": ".session",
})
