"""Performance metrics computed on a prepared (and usually resampled) record DataFrame.

Every metric takes the DataFrame built by `LinearAssetRecord`/`InverseAssetRecord` — columns `timestamp` (Datetime),
`price`, `position`, `equity_wo_fee`, `fee` and the per-interval sums `num_trades_`, `trading_volume_`,
`trading_value_` — and returns `{name: value}`. Definitions and names match hftbacktest 2.x so numbers agree.
Subclass `Metric` to add your own; `context` holds the values computed so far for the same period.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping

import numpy as np
import polars as pl

from ..errors import ConfigError
from ._time import period_days, samples_per_day


def _equity(df: pl.DataFrame) -> pl.Series:
    return df["equity_wo_fee"] - df["fee"]


def _position_value(df: pl.DataFrame) -> pl.Series:
    return df["position"].abs() * df["price"]


def _annualiser(df: pl.DataFrame, trading_days_per_year: float) -> float:
    return float(np.sqrt(samples_per_day(df["timestamp"]) * trading_days_per_year))


def _div(a, b) -> float:
    """IEEE division: a split with one sample or no trades yields NaN/inf instead of an exception."""
    a = np.nan if a is None else a
    b = np.nan if b is None else b
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.divide(np.float64(a), np.float64(b)))


class Metric(ABC):
    """Base class: `compute(df, context)` returns a mapping of metric name to value."""

    name: str

    @abstractmethod
    def compute(self, df: pl.DataFrame, context: dict[str, Any]) -> Mapping[str, Any]:
        raise NotImplementedError


class Ret(Metric):
    """Return: last minus first equity (NaN rows dropped); divided by `book_size` when given."""

    def __init__(self, name: str | None = None, book_size: float | None = None):
        self.name = name or "Return"
        self.book_size = book_size

    def _value(self, df: pl.DataFrame) -> float:
        equity = _equity(df).drop_nans()
        if equity.is_empty():
            return np.nan
        ret = equity[-1] - equity[0]
        return _div(ret, self.book_size) if self.book_size is not None else ret

    def compute(self, df, context):
        return {self.name: self._value(df)}


class _Change(Metric):
    """Last minus first value of a cumulative column over the period (NaN without the column)."""

    column: str

    def __init__(self, name: str | None = None):
        self.name = name or type(self).__name__

    def compute(self, df, context):
        if self.column not in df.columns or df.is_empty():
            return {self.name: np.nan}
        col = df[self.column]
        return {self.name: float(col[-1] - col[0])}


class Fees(_Change):
    """Trading fees paid over the period (negative: rebates received), from the cumulative `fee` column."""

    column = "fee"


class Funding(_Change):
    """Perpetual funding paid over the period (negative: received), from a `funding` column (cumulative, as
    `Recorder.funding(a)` gives; attach it with `LinearAssetRecord(...).funding(values)`). Already inside the
    balance, so equity and returns include it."""

    column = "funding"


class AnnualRet(Ret):
    """Return scaled to a year of `trading_days_per_year` days (252 by default; 365 suits 24/7 crypto)."""

    def __init__(self, name: str | None = None, book_size: float | None = None, trading_days_per_year: float = 252):
        super().__init__(name or "AnnualReturn", book_size)
        self.trading_days_per_year = trading_days_per_year

    def compute(self, df, context):
        return {self.name: _div(self._value(df), period_days(df["timestamp"])) * self.trading_days_per_year}


class SR(Metric):
    """Sharpe ratio (no benchmark): mean/std of per-sample PnL × √(samples per day × trading days per year).

    It depends on the sampling interval, hence `resample()`.
    """

    def __init__(self, name: str | None = None, trading_days_per_year: float = 252):
        self.name = name or "SR"
        self.trading_days_per_year = trading_days_per_year

    def compute(self, df, context):
        pnl = _equity(df).diff().drop_nans()
        return {self.name: _div(pnl.mean(), pnl.std()) * _annualiser(df, self.trading_days_per_year)}


class Sortino(Metric):
    """Sortino ratio (no benchmark): mean PnL over downside deviation √mean(min(pnl, 0)²), annualised like `SR`."""

    def __init__(self, name: str | None = None, trading_days_per_year: float = 252):
        self.name = name or "Sortino"
        self.trading_days_per_year = trading_days_per_year

    def compute(self, df, context):
        pnl = _equity(df).diff()
        downside_sq = (pnl.clip(upper_bound=0.0) ** 2).drop_nans().mean()
        downside = np.sqrt(np.nan if downside_sq is None else downside_sq)
        return {self.name: _div(pnl.drop_nans().mean(), downside) * _annualiser(df, self.trading_days_per_year)}


class MaxDrawdown(Metric):
    """Largest fall of equity from its running peak (positive number); divided by `book_size` when given."""

    def __init__(self, name: str | None = None, book_size: float | None = None):
        self.name = name or "MaxDrawdown"
        self.book_size = book_size

    def compute(self, df, context):
        equity = _equity(df)
        drawdown = equity - equity.cum_max()
        if self.book_size is not None:
            drawdown = drawdown / self.book_size
        worst = drawdown.min()
        return {self.name: np.nan if worst is None else abs(worst)}


class ReturnOverMDD(Metric):
    """Raw return divided by raw maximum drawdown (independent of `book_size`)."""

    def __init__(self, name: str | None = None):
        self.name = name or "ReturnOverMDD"

    def compute(self, df, context):
        mdd = MaxDrawdown().compute(df, context)["MaxDrawdown"]
        return {self.name: _div(Ret()._value(df), mdd)}


class ReturnOverTrade(Metric):
    """Profit per unit of traded value: raw return / raw trading value."""

    def __init__(self, name: str | None = None):
        self.name = name or "ReturnOverTrade"

    def compute(self, df, context):
        return {self.name: _div(Ret()._value(df), df["trading_value_"].sum())}


class NumberOfTrades(Metric):
    """Number of fills in the period."""

    def __init__(self, name: str | None = None):
        self.name = name or "NumberOfTrades"

    def compute(self, df, context):
        return {self.name: df["num_trades_"].sum()}


class DailyNumberOfTrades(NumberOfTrades):
    """Fills per day."""

    def __init__(self, name: str | None = None):
        super().__init__(name or "DailyNumberOfTrades")

    def compute(self, df, context):
        return {self.name: _div(df["num_trades_"].sum(), period_days(df["timestamp"]))}


class TradingVolume(Metric):
    """Traded quantity (contracts or coins)."""

    def __init__(self, name: str | None = None):
        self.name = name or "TradingVolume"

    def compute(self, df, context):
        return {self.name: df["trading_volume_"].sum()}


class DailyTradingVolume(TradingVolume):
    """Traded quantity per day."""

    def __init__(self, name: str | None = None):
        super().__init__(name or "DailyTradingVolume")

    def compute(self, df, context):
        return {self.name: _div(df["trading_volume_"].sum(), period_days(df["timestamp"]))}


class TradingValue(Metric):
    """Traded notional; with `book_size` it is the turnover (notional / book size) and is named `Turnover`."""

    def __init__(self, name: str | None = None, book_size: float | None = None):
        self.name = name or ("TradingValue" if book_size is None else "Turnover")
        self.book_size = book_size

    def _value(self, df: pl.DataFrame) -> float:
        value = df["trading_value_"].sum()
        return _div(value, self.book_size) if self.book_size is not None else value

    def compute(self, df, context):
        return {self.name: self._value(df)}


class DailyTradingValue(TradingValue):
    """Traded notional per day (`DailyTurnover` with `book_size`)."""

    def __init__(self, name: str | None = None, book_size: float | None = None):
        super().__init__(name or ("DailyTradingValue" if book_size is None else "DailyTurnover"), book_size)

    def compute(self, df, context):
        return {self.name: _div(self._value(df), period_days(df["timestamp"]))}


class MaxPositionValue(Metric):
    """Largest |position| × price."""

    def __init__(self, name: str | None = None):
        self.name = name or "MaxPositionValue"

    def compute(self, df, context):
        return {self.name: _position_value(df).max()}


class MeanPositionValue(Metric):
    """Average |position| × price."""

    def __init__(self, name: str | None = None):
        self.name = name or "MeanPositionValue"

    def compute(self, df, context):
        return {self.name: _position_value(df).mean()}


class MedianPositionValue(Metric):
    """Median |position| × price."""

    def __init__(self, name: str | None = None):
        self.name = name or "MedianPositionValue"

    def compute(self, df, context):
        return {self.name: _position_value(df).median()}


class MaxLeverage(Metric):
    """Largest |position| × price divided by the capital `book_size` (required, positive)."""

    def __init__(self, name: str | None = None, book_size: float | None = None):
        if book_size is None or not book_size > 0:
            raise ConfigError(f"MaxLeverage needs a positive book_size (got {book_size!r}); pass stats(book_size=...)")
        self.name = name or "MaxLeverage"
        self.book_size = book_size

    def compute(self, df, context):
        return {self.name: _div(_position_value(df).max(), self.book_size)}
