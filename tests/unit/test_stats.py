"""hftbacktest.stats on small hand-built records; every expectation is derived in the test from the definitions."""
from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest

from hftbacktest.errors import ConfigError, DataError
from hftbacktest.stats import (
    SR, AnnualRet, DailyNumberOfTrades, DailyTradingValue, InverseAssetRecord, LinearAssetRecord, MaxDrawdown,
    MaxLeverage, MaxPositionValue, MeanPositionValue, MedianPositionValue, Metric, NumberOfTrades, Ret,
    ReturnOverMDD, ReturnOverTrade, Sortino, TradingValue, TradingVolume,
)
from hftbacktest.types import record_dtype

T0 = 1_704_067_200_000_000_000  # 2024-01-01 00:00:00 UTC in ns
SEC = 1_000_000_000


def make(prices, positions, balances, fees=None, step=SEC, start=T0, trades=None):
    n = len(prices)
    rec = np.zeros(n, record_dtype)
    rec["timestamp"] = start + np.arange(n) * step
    rec["price"] = prices
    rec["position"] = positions
    rec["balance"] = balances
    rec["fee"] = 0.0 if fees is None else fees
    rec["num_trades"] = np.zeros(n) if trades is None else trades
    rec["trading_volume"] = np.cumsum(np.abs(np.diff(positions, prepend=positions[0])))
    rec["trading_value"] = np.cumsum(np.abs(np.diff(positions, prepend=positions[0])) * np.asarray(prices))
    return rec


def equity_path():
    # equity (position 1 at these prices, balance -100) = price - 100: 0, 10, 5, 20, 8, 12 → drawdowns 0,0,5,0,12,8
    prices = [100.0, 110.0, 105.0, 120.0, 108.0, 112.0]
    return make(prices, [1.0] * 6, [-100.0] * 6, fees=[0, 0.5, 0.5, 1.0, 1.0, 2.0], trades=[1, 1, 1, 2, 2, 3])


def whole(stats):
    return stats.splits[-1]


def test_linear_return_drawdown_and_ratios():
    s = whole(LinearAssetRecord(equity_path()).resample(None).stats(
        [Ret, MaxDrawdown, ReturnOverMDD, ReturnOverTrade, TradingValue, NumberOfTrades]))
    equity = np.array([0, 10, 5, 20, 8, 12.0]) - np.array([0, 0.5, 0.5, 1.0, 1.0, 2.0])
    assert s["Return"] == pytest.approx(equity[-1] - equity[0])
    assert s["MaxDrawdown"] == pytest.approx(np.max(np.maximum.accumulate(equity) - equity))
    assert s["ReturnOverMDD"] == pytest.approx(s["Return"] / s["MaxDrawdown"])
    assert s["NumberOfTrades"] == 2  # diff of the running count: 1→3
    assert s["TradingValue"] == 0.0 and math.isinf(s["ReturnOverTrade"])


def test_sharpe_and_sortino_follow_their_definitions():
    rec = equity_path()
    s = whole(LinearAssetRecord(rec).resample(None).stats([SR, Sortino, SR("SR365", trading_days_per_year=365)]))
    pnl = np.diff(np.array([0, 10, 5, 20, 8, 12.0]) - np.array([0, 0.5, 0.5, 1.0, 1.0, 2.0]))
    per_year = 86400 * 252  # one sample per second
    assert s["SR"] == pytest.approx(pnl.mean() / pnl.std(ddof=1) * math.sqrt(per_year))
    assert s["SR365"] == pytest.approx(pnl.mean() / pnl.std(ddof=1) * math.sqrt(86400 * 365))
    downside = math.sqrt(np.mean(np.minimum(pnl, 0.0) ** 2))
    assert s["Sortino"] == pytest.approx(pnl.mean() / downside * math.sqrt(per_year))


def test_book_size_turns_values_into_ratios_and_renames_turnover():
    rec = equity_path()
    raw = whole(LinearAssetRecord(rec).resample(None).stats([Ret, MaxDrawdown, TradingValue, DailyTradingValue]))
    booked = whole(LinearAssetRecord(rec).resample(None).stats(
        [Ret, MaxDrawdown, TradingValue, DailyTradingValue, MaxLeverage, ReturnOverMDD], book_size=1000.0))
    assert booked["Return"] == pytest.approx(raw["Return"] / 1000)
    assert booked["MaxDrawdown"] == pytest.approx(raw["MaxDrawdown"] / 1000)
    assert "Turnover" in booked and "DailyTurnover" in booked and "TradingValue" not in booked
    assert booked["MaxLeverage"] == pytest.approx(120.0 / 1000)
    assert booked["ReturnOverMDD"] == pytest.approx(raw["Return"] / raw["MaxDrawdown"])  # independent of book


def test_daily_metrics_divide_by_the_record_length_in_days():
    # 3 samples an hour apart, 2 trades, 0.5 traded at 100 and 0.5 at 102
    rec = make([100.0, 100.0, 102.0], [0.0, 0.5, 0.0], [0.0, -50.0, 1.0], step=3600 * SEC, trades=[0, 1, 2])
    s = whole(LinearAssetRecord(rec).resample(None).stats(
        [DailyNumberOfTrades, DailyTradingValue, TradingVolume, AnnualRet]))
    days = 2 / 24
    assert s["DailyNumberOfTrades"] == pytest.approx(2 / days)
    assert s["DailyTradingValue"] == pytest.approx((50.0 + 51.0) / days)
    assert s["TradingVolume"] == pytest.approx(1.0)
    assert s["AnnualReturn"] == pytest.approx(1.0 / days * 252)


def test_position_value_metrics():
    rec = make([10.0, 20.0, 30.0, 40.0], [1.0, -2.0, 0.5, 3.0], [0.0] * 4)
    s = whole(LinearAssetRecord(rec).resample(None).stats([MaxPositionValue, MeanPositionValue, MedianPositionValue]))
    values = np.array([10.0, 40.0, 15.0, 120.0])
    assert s["MaxPositionValue"] == 120.0
    assert s["MeanPositionValue"] == pytest.approx(values.mean())
    assert s["MedianPositionValue"] == pytest.approx(np.median(values))


def test_inverse_equity_uses_coin_terms():
    rec = make([50_000.0, 40_000.0], [1000.0, 1000.0], [0.0, 0.0])
    s = whole(InverseAssetRecord(rec).contract_size(10.0).resample(None).stats([Ret]))
    # equity = -balance - position / price * contract_size
    assert s["Return"] == pytest.approx(-1000 / 40_000 * 10 + 1000 / 50_000 * 10)


def test_resample_sums_interval_columns_and_keeps_last_levels():
    n = 30
    rec = make(np.linspace(100, 129, n), np.arange(n) % 2 * 1.0, np.zeros(n), trades=np.arange(n))
    df = LinearAssetRecord(rec).resample("10s").prepared()
    assert df.height == 3
    assert df["num_trades_"].to_list() == [9, 10, 10]  # first diff is filled with 0
    assert df["price"].to_list() == pytest.approx([109.0, 119.0, 129.0])
    assert df["trading_volume_"].sum() == pytest.approx(n - 1)


def test_missing_running_totals_are_estimated_from_position_changes():
    rec = make([100.0, 101.0, 102.0, 103.0], [0.0, 1.0, 1.0, -1.0], [0.0] * 4)
    slim = rec[["timestamp", "price", "position", "balance", "fee"]]
    df = LinearAssetRecord(slim).resample(None).prepared()
    assert df["num_trades_"].to_list() == [0, 1, 0, 1]
    assert df["trading_volume_"].to_list() == [0, 1, 0, 2]
    assert df["trading_value_"].to_list() == pytest.approx([0, 101.0, 0, -2 * 103.0])  # signed, as the reference


def test_monthly_and_daily_splits_then_whole_period():
    start = T0 - 2 * 3600 * SEC  # 2023-12-31 22:00 → 2024-01-01 02:00
    rec = make(np.full(4 * 60, 100.0), np.zeros(4 * 60), np.zeros(4 * 60), step=60 * SEC, start=start)
    rec["balance"] = np.arange(4 * 60) * 0.01
    for how in ("monthly", "daily"):
        splits = getattr(LinearAssetRecord(rec).resample("1m"), how)().stats([Ret]).splits
        assert len(splits) == 3
        assert splits[0]["start"].year == 2023 and splits[1]["start"].year == 2024
        assert splits[2]["start"] == splits[0]["start"] and splits[2]["end"] == splits[1]["end"]
        assert splits[0]["Return"] + splits[1]["Return"] == pytest.approx(splits[2]["Return"] - 0.01)


def test_a_split_with_one_sample_gives_nan_instead_of_crashing():
    # The reference raises IndexError/TypeError here; a lone sample simply has no defined ratio.
    rec = make([100.0, 101.0, 102.0], [1.0] * 3, [0.0] * 3, step=3600 * SEC, start=T0 - 2 * 3600 * SEC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        splits = LinearAssetRecord(rec).resample(None).daily().stats().splits
    last_day = splits[1]
    assert last_day["Return"] == 0.0 and math.isnan(last_day["SR"]) and math.isnan(last_day["Sortino"])


def test_stats_can_be_called_again_with_other_settings():
    rec = LinearAssetRecord(equity_path())
    first = rec.resample(None).stats([Ret]).entire.height
    second = rec.resample("2s").stats([Ret]).entire.height
    assert (first, second) == (6, 3)


def test_irregular_sampling_warns():
    rec = make([1.0, 2.0, 3.0, 4.0], [0.0] * 4, [0.0] * 4)
    rec["timestamp"][3] += SEC
    with pytest.warns(UserWarning, match="resample"):
        LinearAssetRecord(rec).resample(None).stats([SR])


def test_time_unit_and_polars_input():
    rec = equity_path()
    df = pl.DataFrame(rec).with_columns(pl.col("timestamp") // 1_000_000)
    ms = whole(LinearAssetRecord(df).time_unit("ms").resample(None).stats([SR, Ret]))
    ns = whole(LinearAssetRecord(rec).resample(None).stats([SR, Ret]))
    assert ms == ns


def test_custom_metric_sees_previous_results_in_context():
    class HalfReturn(Metric):
        name = "HalfReturn"

        def compute(self, df, context):
            return {self.name: context["Return"] / 2}

    s = whole(LinearAssetRecord(equity_path()).resample(None).stats([Ret, HalfReturn()]))
    assert s["HalfReturn"] == pytest.approx(s["Return"] / 2)


def test_summary_table_and_pretty_output():
    stats = LinearAssetRecord(equity_path()).resample(None).stats([Ret, NumberOfTrades])
    df = stats.summary()
    assert df.columns == ["start", "end", "Return", "NumberOfTrades"] and df.height == 1
    pretty = stats.summary(pretty=True)
    assert pretty["Return"].dtype == pl.String and pretty["Return"][0] == f"{df['Return'][0]:.6g}"
    table = stats.table(title="t")
    assert [c.header for c in table.columns] == df.columns and table.row_count == 1


def test_plot_with_plotly_backend():
    fig = LinearAssetRecord(equity_path()).resample(None).stats([Ret], book_size=100.0).plot(backend="plotly")
    names = [t.name for t in fig.data]
    assert names[:3] == ["Equity", "Equity w/o fee", "Price"] and "Position" in names
    assert list(fig.data[0].y) == pytest.approx((np.array([0, 10, 5, 20, 8, 12.0]) - [0, .5, .5, 1, 1, 2]))


def test_bad_inputs_raise_typed_errors_naming_the_problem():
    with pytest.raises(DataError, match="balance"):
        LinearAssetRecord(equity_path()[["timestamp", "price", "position", "fee"]])
    with pytest.raises(DataError, match="structured"):
        LinearAssetRecord(np.zeros(3))
    with pytest.raises(DataError, match="at least two"):
        LinearAssetRecord(equity_path()[:1]).stats()
    with pytest.raises(ConfigError, match="book_size"):
        LinearAssetRecord(equity_path()).stats([MaxLeverage])
    with pytest.raises(ValueError, match="unsupported"):
        LinearAssetRecord(equity_path()).resample(None).stats([Ret]).plot(backend="bokeh")
