"""Equity/position charts for `Stats.plot()` in matplotlib, plotly or holoviews."""
from __future__ import annotations

import importlib.util

import polars as pl


def has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _series(df: pl.DataFrame, book_size: float | None, price_as_ret: bool):
    """(equity, equity w/o fee, price, equity axis label, price on the equity axis?)"""
    equity = df["equity_wo_fee"] - df["fee"]
    equity_wo_fee = df["equity_wo_fee"]
    if book_size is None:
        return equity, equity_wo_fee, df["price"], "Equity", False
    scale = 100.0 / book_size
    if price_as_ret:
        price = (df["price"] / df["price"][0] - 1.0) * 100.0
        return equity * scale, equity_wo_fee * scale, price, "Cumulative Returns (%)", True
    return equity * scale, equity_wo_fee * scale, df["price"], "Cumulative Returns (%)", False


def plotly_figure(df: pl.DataFrame, book_size: float | None, price_as_ret: bool = False):
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    equity, equity_wo_fee, price, label, price_shared = _series(df, book_size, price_as_ret)
    ts = df["timestamp"].to_list()
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.04,
        specs=[[{"secondary_y": True}], [{"secondary_y": True}]],
    )
    fig.add_trace(go.Scatter(x=ts, y=equity.to_list(), name="Equity"), row=1, col=1)
    fig.add_trace(go.Scatter(x=ts, y=equity_wo_fee.to_list(), name="Equity w/o fee"), row=1, col=1)
    price_style = dict(line=dict(color="rgba(0,0,0,0.25)"))
    fig.add_trace(go.Scatter(x=ts, y=price.to_list(), name="Price", **price_style), row=1, col=1,
                  secondary_y=not price_shared)
    fig.add_trace(go.Scatter(x=ts, y=df["position"].to_list(), name="Position"), row=2, col=1)
    fig.add_trace(go.Scatter(x=ts, y=df["price"].to_list(), name="Price", showlegend=False, **price_style),
                  row=2, col=1, secondary_y=True)
    fig.update_yaxes(title_text=label, row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="Position (Qty)", row=2, col=1, secondary_y=False)
    fig.update_layout(height=600, margin=dict(l=60, r=60, t=30, b=40), hovermode="x unified")
    return fig


def matplotlib_figure(df: pl.DataFrame, book_size: float | None, price_as_ret: bool = False):
    """The reference's layout: equity (and price) on top, position (and price) below, prices on twin axes."""
    from matplotlib.figure import Figure

    equity, equity_wo_fee, price, label, price_shared = _series(df, book_size, price_as_ret)
    ts = df["timestamp"].to_numpy()
    fig = Figure(figsize=(10, 6))  # not pyplot: no global state, no GUI backend needed
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    fig.subplots_adjust(hspace=0)
    ax1.plot(ts, equity.to_numpy(), label="Equity")
    ax1.plot(ts, equity_wo_fee.to_numpy(), label="Equity w/o fee")
    if price_shared:
        ax1.plot(ts, price.to_numpy(), "black", alpha=0.2, label="Price")
        ax1.legend(loc="best")
    else:
        ax1_price = ax1.twinx()
        ax1_price.plot(ts, price.to_numpy(), "black", alpha=0.2, label="Price")
        ax1_price.set_ylabel("Price")
        _legend(ax1, ax1_price)
    ax1.set_ylabel(label)
    ax1.grid()
    ax2.plot(ts, df["position"].to_numpy(), label="Position")
    ax2_price = ax2.twinx()
    ax2_price.plot(ts, df["price"].to_numpy(), "black", alpha=0.2, label="Price")
    ax2.set_ylabel("Position (Qty)")
    ax2_price.set_ylabel("Price")
    _legend(ax2, ax2_price)
    ax2.grid()
    return fig


def _legend(ax, twin) -> None:
    handles, labels = [], []
    for a in (ax, twin):
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    ax.legend(handles, labels, loc="best")


def holoviews_layout(df: pl.DataFrame, book_size: float | None, price_as_ret: bool = False):
    import holoviews as hv

    equity, equity_wo_fee, price, label, _ = _series(df, book_size, price_as_ret)
    ts = df["timestamp"]
    top = hv.Overlay([
        hv.Curve((ts, equity), label="Equity", vdims=[label]),
        hv.Curve((ts, equity_wo_fee), label="Equity w/o fee", vdims=[label]),
    ]) * hv.Curve((ts, price), label="Price", vdims=["Price"]).opts(alpha=0.2, color="black")
    bottom = hv.Curve((ts, df["position"]), label="Position", vdims=["Position (Qty)"]) * hv.Curve(
        (ts, df["price"]), label="Price", vdims=["Price"]
    ).opts(alpha=0.2, color="black")
    top.opts(multi_y=True, width=1000, height=400, show_grid=True)
    bottom.opts(multi_y=True, width=1000, height=400, show_grid=True)
    return (top.relabel("Equity") + bottom.relabel("Position")).cols(1)
