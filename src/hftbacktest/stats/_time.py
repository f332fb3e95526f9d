"""Time helpers shared by metrics and records (sampling rate, period length, calendar splits)."""
from __future__ import annotations

import warnings

import polars as pl

SECONDS_PER_DAY = 86400.0


def samples_per_day(timestamp: pl.Series) -> float:
    """Samples per day implied by the first interval; warns when the intervals are not all equal."""
    if len(timestamp) < 2:
        return float("nan")
    step = timestamp.diff()
    if (step[1:-1] != step[2:]).sum() > 0:
        warnings.warn("The sampling interval is not consistent. Use resample().", UserWarning, stacklevel=3)
    # Python timedelta arithmetic on purpose: this is how the reference measures the interval (µs resolution).
    seconds = (timestamp[1] - timestamp[0]).total_seconds()
    return SECONDS_PER_DAY / seconds if seconds > 0 else float("nan")


def period_days(timestamp: pl.Series) -> float:
    """Length of the record in days (first to last sample)."""
    return (timestamp[-1] - timestamp[0]).total_seconds() / SECONDS_PER_DAY


SPLIT_FORMATS = {"monthly": "%Y%m", "daily": "%Y%m%d", "hourly": "%Y%m%d:%H"}


def split(df: pl.DataFrame, how: str) -> list[pl.DataFrame]:
    """Calendar partitions of `df` labelled by a `dt` column, in time order."""
    labelled = df.with_columns(pl.col("timestamp").dt.strftime(SPLIT_FORMATS[how]).alias("dt"))
    return labelled.partition_by("dt", maintain_order=True)


def resample(df: pl.DataFrame, every: str) -> pl.DataFrame:
    """Downsample to windows of `every`: per-interval columns (suffix `_`) are summed, levels keep their last value."""
    interval_cols = ("num_trades_", "trading_volume_", "trading_value_")
    aggs = [
        pl.col(c).sum() if c in interval_cols else pl.col(c).last()
        for c in df.columns
        if c != "timestamp"
    ]
    return df.group_by_dynamic("timestamp", every=every).agg(*aggs)
