"""Asset records → per-interval frame → metrics per calendar split and for the whole run."""
from __future__ import annotations

import inspect
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import polars as pl

from ..errors import DataError
from ._time import resample, split
from .metrics import (
    SR,
    DailyNumberOfTrades,
    DailyTradingValue,
    Fees,
    Funding,
    MaxDrawdown,
    MaxPositionValue,
    Metric,
    Ret,
    ReturnOverMDD,
    ReturnOverTrade,
    Sortino,
)

_REQUIRED = ("timestamp", "price", "position", "balance", "fee")


def compute_metrics(df: pl.DataFrame, metrics: Iterable[Metric | type[Metric]], kwargs: Mapping[str, Any]) -> dict:
    """Runs `metrics` on one period; metric classes are built with the `kwargs` their constructor accepts."""
    context: dict[str, Any] = {"start": df["timestamp"][0], "end": df["timestamp"][-1]}
    for metric in metrics:
        if isinstance(metric, type):
            accepted = inspect.signature(metric.__init__).parameters
            metric = metric(**{k: v for k, v in kwargs.items() if k in accepted})
        context.update(metric.compute(df, context))
    return context


class Stats:
    """Metrics of a record: `splits` (one dict per split, then the whole period last) and the frame they came from."""

    def __init__(self, entire: pl.DataFrame, splits: list[dict[str, Any]], kwargs: Mapping[str, Any]):
        self.entire = entire
        self.splits = splits
        self.kwargs = dict(kwargs)

    def summary(self, pretty: bool = False) -> pl.DataFrame:
        """One row per split (the last row covers the whole period), columns start, end and every metric.

        `pretty=True` formats the numbers as short strings, ready to print.
        """
        df = pl.DataFrame(self.splits)
        if not pretty:
            return df
        return df.with_columns(
            pl.col(c).map_elements(format_value, return_dtype=pl.String) for c, t in df.schema.items() if t.is_numeric()
        )

    def table(self, title: str | None = None):
        """The summary as a `rich` table (what `hftbacktest demo` prints)."""
        from rich.table import Table

        table = Table(title=title, show_lines=False)
        rows = self.splits
        for key in rows[0]:
            table.add_column(key, justify="left" if key in ("start", "end") else "right", no_wrap=True)
        for row in rows:
            table.add_row(*(format_value(v) for v in row.values()))
        return table

    def plot(self, price_as_ret: bool = False, backend: Literal["matplotlib", "holoviews", "plotly"] | None = None):
        """Equity (with and without fees) and position over the price.

        `backend=None` uses matplotlib when installed (like hftbacktest 2.x), otherwise plotly.
        """
        from . import plot

        if backend is None:
            backend = "matplotlib" if plot.has_matplotlib() else "plotly"
        if backend == "matplotlib":
            return plot.matplotlib_figure(self.entire, self.kwargs.get("book_size"), price_as_ret)
        if backend == "plotly":
            return plot.plotly_figure(self.entire, self.kwargs.get("book_size"), price_as_ret)
        if backend == "holoviews":
            return plot.holoviews_layout(self.entire, self.kwargs.get("book_size"), price_as_ret)
        raise ValueError(f"{backend} is unsupported; use 'matplotlib', 'plotly' or 'holoviews'")


def format_value(v: Any) -> str:
    """Short human form of a metric value (used by tables and the HTML report)."""
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return str(v)
        a = abs(v)
        return f"{v:,.2f}" if a >= 1000 else f"{v:.6g}"
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


class _AssetRecord:
    DEFAULT_METRICS: Sequence[type[Metric]] = (
        SR,
        Sortino,
        Ret,
        MaxDrawdown,
        DailyNumberOfTrades,
        DailyTradingValue,
        ReturnOverMDD,
        ReturnOverTrade,
        MaxPositionValue,
    )

    def __init__(self, data: np.ndarray | pl.DataFrame):
        if isinstance(data, np.ndarray):
            if data.dtype.names is None:
                raise DataError(f"a record must be a structured array of record_dtype, got dtype {data.dtype}")
            df = pl.DataFrame(np.ascontiguousarray(data))
        elif isinstance(data, pl.DataFrame):
            df = data
        else:
            raise DataError(f"a record must be a numpy structured array or a polars DataFrame, got {type(data).__name__}")
        missing = [c for c in _REQUIRED if c not in df.columns and not (c in ("balance",) and "equity_wo_fee" in df.columns)]
        if missing:
            raise DataError(f"record is missing field(s) {', '.join(missing)}; has {', '.join(df.columns)}")
        self.df = df
        self._contract_size = 1.0
        self._time_unit = "ns"
        self._frequency: str | None = "10s"
        self._partition: str | None = None

    def contract_size(self, contract_size: float):
        """Contract multiplier used in equity and notional (1.0 by default)."""
        self._contract_size = contract_size
        return self

    def time_unit(self, time_unit: str):
        """Unit of the integer timestamps: 'ns' (default), 'us', 'ms' or 's'."""
        self._time_unit = time_unit
        return self

    def resample(self, frequency: str | None):
        """Window for downsampling before the metrics ('10s' by default; polars duration strings); None keeps rows."""
        self._frequency = frequency
        return self

    def monthly(self):
        """Also compute the metrics for each calendar month."""
        self._partition = "monthly"
        return self

    def daily(self):
        """Also compute the metrics for each calendar day (UTC)."""
        self._partition = "daily"
        return self

    def funding(self, values):
        """Attach the cumulative funding paid at each row (`Recorder.funding(a)`, or a record file's `funding_<a>`):
        the stats then show `Fees` and `Funding` (paid over each period) after the default metrics."""
        values = np.asarray(values, np.float64)
        if values.shape != (len(self.df),):
            raise DataError(f"funding: {values.shape[0] if values.ndim else 0} values for a record of "
                            f"{len(self.df)} rows (one cumulative value per row expected)")
        self.df = self.df.with_columns(pl.Series("funding", values))
        return self

    def hourly(self):
        """Also compute the metrics for each hour."""
        self._partition = "hourly"
        return self

    def _notional(self, qty: pl.Expr) -> pl.Expr:
        raise NotImplementedError

    def _equity_wo_fee(self) -> pl.Expr:
        raise NotImplementedError

    def prepared(self) -> pl.DataFrame:
        """The record with Datetime timestamps, the per-interval columns and `equity_wo_fee`, resampled."""
        df = self.df
        if len(df) < 2:
            raise DataError(f"a record needs at least two rows to compute statistics, got {len(df)}")
        if not isinstance(df["timestamp"].dtype, pl.Datetime):
            df = df.with_columns(pl.from_epoch("timestamp", time_unit=self._time_unit))
        dpos = pl.col("position").diff().fill_null(0)
        cols = df.columns

        def per_interval(name: str, from_total: str, estimate: pl.Expr) -> list[pl.Expr]:
            if name in cols:
                return []
            # Without the running total, the position change is an estimate: fills between samples may net out.
            expr = pl.col(from_total).diff().fill_null(0) if from_total in cols else estimate
            return [expr.alias(name)]

        df = df.with_columns(
            *per_interval("num_trades_", "num_trades", pl.when(dpos.abs() > 0).then(1).otherwise(0).cast(pl.Float64)),
            *per_interval("trading_volume_", "trading_volume", dpos.abs()),
        )
        if "equity_wo_fee" not in cols:
            df = df.with_columns(self._equity_wo_fee().alias("equity_wo_fee"))
        df = df.with_columns(*per_interval("trading_value_", "trading_value", self._notional(dpos)))
        if self._frequency is not None:
            df = resample(df.set_sorted("timestamp"), self._frequency)
        return df

    def stats(self, metrics: Sequence[Metric | type[Metric]] | None = None, **kwargs: Any) -> Stats:
        """Computes `metrics` (default: `DEFAULT_METRICS`) per split, then for the whole record.

        Metric classes (not instances) are built with the matching `kwargs`, e.g. `stats(book_size=10_000)`. With
        funding attached (`funding(values)`), `Fees` and `Funding` follow unless `metrics` already has `Funding`.
        """
        if metrics is None:
            metrics = self.DEFAULT_METRICS
        df = self.prepared()
        if "funding" in df.columns and not any(m is Funding or isinstance(m, Funding) for m in metrics):
            metrics = [*metrics, Fees, Funding]
        parts = split(df, self._partition) if self._partition else []
        results = [compute_metrics(part, metrics, kwargs) for part in parts]
        results.append(compute_metrics(df, metrics, kwargs))
        return Stats(df, results, kwargs)


class LinearAssetRecord(_AssetRecord):
    """Record of a linear contract (USD-M): equity = balance + position × price × contract size."""

    def _equity_wo_fee(self):
        return pl.col("balance") + pl.col("position") * pl.col("price") * self._contract_size

    def _notional(self, qty):
        return qty * pl.col("price") * self._contract_size


class InverseAssetRecord(_AssetRecord):
    """Record of an inverse contract (COIN-M): equity = −balance − position / price × contract size."""

    def _equity_wo_fee(self):
        return -pl.col("balance") - pl.col("position") / pl.col("price") * self._contract_size

    def _notional(self, qty):
        return qty / pl.col("price") * self._contract_size
