"""Self-contained HTML report of a recorded backtest; `hftbacktest report RECORD.npz -o report.html`.

One file that works offline: run configuration, summary metrics (hftbacktest.stats), and per asset price with
fills, equity with and without fees, drawdown, position, a fee breakdown and, when order latencies were saved with
the record, their histogram. Charts are interactive plotly (plotly.js inlined, ~5 MB) or, with
`charts="images"` / `--images`, matplotlib PNGs embedded in the page (a few hundred kB, e.g. for e-mail or CI).
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import _atomic

MAX_POINTS = 4000  # per line; keeps a day of 10 ms records responsive in the browser
MAX_FILL_MARKERS = 3000


@dataclass
class AssetView:
    """One asset's record plus how to value it."""

    records: np.ndarray
    name: str = ""
    inverse: bool = False
    contract_size: float = 1.0
    order_latency: np.ndarray | None = None
    funding: np.ndarray | None = None  # cumulative funding per record row (Recorder key `funding_<n>`)


@dataclass
class RunRecord:
    """Everything a report shows: assets and the free-form run configuration."""

    assets: list[AssetView]
    config: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def load_record(path: str | Path) -> RunRecord:
    """Reads a `Recorder.to_npz` file (keys "0", "1", … and the optional `config`, `order_latency_<n>`)."""
    from .errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such record file")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz record ({exc})") from exc
    with npz:
        asset_keys = sorted((k for k in npz.files if k.isdigit()), key=int)
        if not asset_keys:
            raise DataError(f"{path}: no asset records (expected keys '0', '1', ... as written by Recorder.to_npz)")
        config = json.loads(str(npz["config"])) if "config" in npz.files else {}
        assets = []
        for key in asset_keys:
            rec = npz[key]
            if rec.dtype.names is None or "timestamp" not in rec.dtype.names:
                raise DataError(f"{path}: key '{key}' is not a record array (dtype {rec.dtype})")
            latency_key = f"order_latency_{key}"
            latency = npz[latency_key] if latency_key in npz.files else None
            funding = npz[f"funding_{key}"] if f"funding_{key}" in npz.files else None
            assets.append(AssetView(rec, order_latency=latency, funding=funding))
    for i, spec in enumerate(config.get("assets", [])[: len(assets)]):
        assets[i].name = str(spec.get("name", ""))
        assets[i].inverse = spec.get("asset_type") == "inverse"
        assets[i].contract_size = float(spec.get("contract_size", 1.0))
    return RunRecord(assets, config, str(path))


def render(run: RunRecord, *, book_size: float | None = None, resample: str = "10s", title: str | None = None,
           charts: str = "plotly") -> str:
    """The report as one HTML string; `charts` is "plotly" (interactive) or "images" (matplotlib PNGs)."""
    from .errors import ConfigError

    if charts not in ("plotly", "images"):
        raise ConfigError(f"charts must be 'plotly' or 'images', got {charts!r}")
    title = title or run.config.get("title") or "Backtest report"
    sections = [_config_section(run, book_size, resample)]
    for asset_no, asset in enumerate(run.assets):
        sections.append(_asset_section(asset_no, asset, book_size, resample, charts))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if charts == "plotly":
        import plotly.offline

        script = '<script type="text/javascript">' + plotly.offline.get_plotlyjs() + "</script>"
    else:
        script = ""
    return _PAGE.format(
        title=html.escape(title),
        subtitle=html.escape(f"{run.source or 'in-memory record'} · generated {generated}"),
        script=script,
        body="\n".join(sections),
    )


def write_report(run: RunRecord, output: str | Path, **kwargs: Any) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    _atomic.atomic_write_bytes(output, render(run, **kwargs).encode("utf-8"))
    return output


# --- sections ---------------------------------------------------------------------------------------------------

def _config_section(run: RunRecord, book_size: float | None, resample: str) -> str:
    rows = {k: v for k, v in run.config.items() if k not in ("title", "assets")}
    for i, spec in enumerate(run.config.get("assets", [])):
        rows[f"asset {i}"] = ", ".join(f"{k}={v}" for k, v in spec.items())
    rows["metrics resampled to"] = resample
    if book_size is not None:
        rows["book size"] = book_size
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_plain(v))}</td></tr>" for k, v in rows.items())
    return f'<section><h2>Run configuration</h2><table class="kv">{body}</table></section>'


def _plain(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def _asset_section(asset_no: int, asset: AssetView, book_size: float | None, resample: str, charts: str) -> str:
    from .stats import (
        AnnualRet, InverseAssetRecord, LinearAssetRecord, MaxLeverage, MeanPositionValue, NumberOfTrades,
        TradingValue, TradingVolume,
    )

    label = f"Asset {asset_no}" + (f" · {asset.name}" if asset.name else "")
    recs = asset.records
    if len(recs) < 2:
        return f"<section><h2>{html.escape(label)}</h2><p>Fewer than two records: nothing to show.</p></section>"
    kind = InverseAssetRecord if asset.inverse else LinearAssetRecord
    record = kind(recs).contract_size(asset.contract_size)
    has_funding = asset.funding is not None and len(asset.funding) == len(recs)
    if has_funding:
        record.funding(asset.funding)  # adds Fees and Funding to the metrics
    metrics = list(record.DEFAULT_METRICS) + [AnnualRet, NumberOfTrades, TradingVolume, TradingValue,
                                              MeanPositionValue]
    if book_size is not None:
        metrics.append(MaxLeverage)
    stats = record.resample(resample).stats(metrics, **({"book_size": book_size} if book_size else {}))
    frame = kind(recs).contract_size(asset.contract_size).resample(_plot_interval(recs)).prepared()

    summary = dict(stats.splits[-1])
    funding = summary["Funding"] if has_funding else None  # paid (negative: received), inside balance and equity
    parts = [f"<section><h2>{html.escape(label)}</h2>", _summary_table(summary)]
    has_latency = asset.order_latency is not None and len(asset.order_latency)
    if charts == "plotly":
        parts.append(_figure_html(_main_figure(frame, recs, asset)))
        parts.append(_figure_html(_fee_figure(frame, funding)))
        if has_latency:
            parts.append(_figure_html(_latency_figure(asset.order_latency)))
    else:
        parts.append(_image_html(_main_image(frame, recs, asset), "price and fills, equity, drawdown, position"))
        parts.append(_image_html(_fee_image(frame, funding), "PnL breakdown and cumulative fees"))
        if has_latency:
            parts.append(_image_html(_latency_image(asset.order_latency), "order latency histogram"))
    parts.append("</section>")
    return "\n".join(parts)


def _summary_table(row: Mapping[str, Any]) -> str:
    from .stats.record import format_value

    cells = "".join(
        f'<div class="metric"><div class="name">{html.escape(k)}</div>'
        f'<div class="value">{html.escape(format_value(v))}</div></div>'
        for k, v in row.items()
    )
    return f'<div class="summary">{cells}</div>'


def _plot_interval(recs: np.ndarray) -> str:
    """Coarsest-needed window so a line has at most MAX_POINTS points."""
    span_ns = int(recs["timestamp"][-1]) - int(recs["timestamp"][0])
    for ns, text in ((1_000_000, "1ms"), (10_000_000, "10ms"), (100_000_000, "100ms"), (1_000_000_000, "1s"),
                     (5_000_000_000, "5s"), (10_000_000_000, "10s"), (60_000_000_000, "1m"),
                     (300_000_000_000, "5m"), (900_000_000_000, "15m"), (3_600_000_000_000, "1h")):
        if span_ns / ns <= MAX_POINTS:
            return text
    return "1d"


def _fills(recs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of records where trades happened, and the position change there (sign = side)."""
    if "num_trades" in recs.dtype.names:
        changed = np.flatnonzero(np.diff(recs["num_trades"]) != 0) + 1
    else:
        changed = np.flatnonzero(np.diff(recs["position"]) != 0) + 1
    if len(changed) > MAX_FILL_MARKERS:
        changed = changed[np.linspace(0, len(changed) - 1, MAX_FILL_MARKERS).astype(np.int64)]
    dpos = recs["position"][changed] - recs["position"][changed - 1]
    return changed, dpos, recs["timestamp"][changed].astype("datetime64[ns]")


def _main_figure(frame, recs: np.ndarray, asset: AssetView):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ts = frame["timestamp"].to_numpy()
    equity = (frame["equity_wo_fee"] - frame["fee"]).to_numpy()
    equity_wo_fee = frame["equity_wo_fee"].to_numpy()
    drawdown = equity - np.fmax.accumulate(np.nan_to_num(equity, nan=-np.inf))
    fig = make_subplots(
        rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.34, 0.26, 0.16, 0.24],
        subplot_titles=("Price and fills", "Equity", "Drawdown", "Position"),
    )
    fig.add_trace(go.Scatter(x=ts, y=frame["price"].to_numpy(), name="mid price", line=dict(color="#555", width=1)),
                  row=1, col=1)
    idx, dpos, fill_ts = _fills(recs)
    price = recs["price"][idx]
    for mask, name, color, symbol in ((dpos > 0, "buy fills", "#1a9850", "triangle-up"),
                                      (dpos < 0, "sell fills", "#d73027", "triangle-down"),
                                      (dpos == 0, "round trips", "#7570b3", "circle")):
        if mask.any():
            fig.add_trace(go.Scatter(
                x=fill_ts[mask], y=price[mask], mode="markers", name=name,
                marker=dict(color=color, symbol=symbol, size=7, line=dict(width=0)),
                customdata=dpos[mask], hovertemplate="%{x}<br>mid %{y}<br>Δposition %{customdata:.6g}<extra></extra>",
            ), row=1, col=1)
    fig.add_trace(go.Scatter(x=ts, y=equity, name="equity", line=dict(color="#2166ac")), row=2, col=1)
    fig.add_trace(go.Scatter(x=ts, y=equity_wo_fee, name="equity w/o fee", line=dict(color="#92c5de", dash="dot")),
                  row=2, col=1)
    fig.add_trace(go.Scatter(x=ts, y=drawdown, name="drawdown", fill="tozeroy", line=dict(color="#d6604d")),
                  row=3, col=1)
    fig.add_trace(go.Scatter(x=ts, y=frame["position"].to_numpy(), name="position", line=dict(color="#762a83"),
                             line_shape="hv"), row=4, col=1)
    unit = "coin" if asset.inverse else "quote"
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text=f"equity ({unit})", row=2, col=1)
    fig.update_yaxes(title_text="drawdown", row=3, col=1)
    fig.update_yaxes(title_text="position (qty)", row=4, col=1)
    fig.update_layout(height=920, hovermode="x unified", margin=dict(l=70, r=30, t=80, b=40),
                      legend=dict(orientation="h", y=1.05, yanchor="bottom", x=0), template="plotly_white")
    return fig


def _fee_figure(frame, funding=None):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names, values = _pnl_steps(frame, funding)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.35, 0.65],
                        subplot_titles=("PnL breakdown", "Cumulative fees (negative = rebates earned)"))
    fig.add_trace(go.Waterfall(
        x=names + ["net PnL"], y=values + [0.0], measure=["relative"] * len(values) + ["total"],
        increasing=dict(marker=dict(color="#1a9850")), decreasing=dict(marker=dict(color="#d73027")),
        totals=dict(marker=dict(color="#2166ac")), showlegend=False,
    ), row=1, col=1)
    fig.add_trace(go.Scatter(x=frame["timestamp"].to_numpy(), y=frame["fee"].to_numpy(), name="fees paid",
                             fill="tozeroy", line=dict(color="#b2182b")), row=1, col=2)
    fig.update_layout(height=330, margin=dict(l=70, r=30, t=40, b=40), template="plotly_white", showlegend=False)
    return fig


def _latency_figure(rows: np.ndarray):
    import plotly.graph_objects as go

    entry, response = _latency_ms(rows)
    upper, bins = _latency_bins(entry, response)
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=entry, name="entry (request → exchange)", opacity=0.7, marker_color="#4393c3",
                               xbins=bins))
    fig.add_trace(go.Histogram(x=response, name="response (exchange → local)", opacity=0.7,
                               marker_color="#f4a582", xbins=bins))
    fig.update_layout(title=f"Order latency ({len(entry)} samples; median entry {np.median(entry):.2f} ms, "
                            f"response {np.median(response):.2f} ms)" if len(entry) else "Order latency (no samples)",
                      barmode="overlay", height=330, xaxis=dict(title="milliseconds", range=[0, upper]),
                      yaxis_title="samples", template="plotly_white", margin=dict(l=70, r=30, t=50, b=40))
    return fig


def _pnl_steps(frame, funding) -> tuple[list[str], list[float]]:
    """Waterfall steps to the net PnL: gross (trading) PnL, then funding when the run had any, then fees."""
    gross, fees = _fee_breakdown(frame)
    if funding is None:
        return ["gross PnL", "fees / rebates"], [gross, -fees]
    # the balance already holds the funding: trading PnL is the equity change without it
    return ["trading PnL", "funding", "fees / rebates"], [gross + funding, -funding, -fees]


def _fee_breakdown(frame) -> tuple[float, float]:
    equity_wo_fee = frame["equity_wo_fee"].drop_nans().drop_nulls()
    gross = float(equity_wo_fee[-1] - equity_wo_fee[0]) if len(equity_wo_fee) else float("nan")
    return gross, float(frame["fee"][-1] - frame["fee"][0])


def _latency_bins(entry: np.ndarray, response: np.ndarray) -> tuple[float, dict]:
    """The x-axis end (99.5 % of the samples; rare spikes stay in the data, zoom out to see them) and one bin
    layout for both histograms: 80 bins up to it, coarser only when spikes would need more than 4000 bins."""
    if not len(entry):
        return 1.0, dict(start=0.0, end=1.0, size=1.0 / 80)
    both = np.concatenate([entry, response])
    upper = max(float(np.percentile(both, 99.5)) * 1.15, 1e-6)
    top = max(float(both.max()), upper)
    return upper, dict(start=0.0, end=top, size=max(upper / 80, top / 4000))


def _latency_ms(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = rows[(rows["exch_ts"] > 0) & (rows["resp_ts"] > 0)]
    return (ok["exch_ts"] - ok["req_ts"]) / 1e6, (ok["resp_ts"] - ok["exch_ts"]) / 1e6


# matplotlib twins of the plotly figures, for `charts="images"` (Figure objects: no pyplot state, no GUI)

def _main_image(frame, recs: np.ndarray, asset: AssetView):
    from matplotlib.figure import Figure

    ts = frame["timestamp"].to_numpy()
    equity = (frame["equity_wo_fee"] - frame["fee"]).to_numpy()
    drawdown = equity - np.fmax.accumulate(np.nan_to_num(equity, nan=-np.inf))
    fig = Figure(figsize=(12, 10), layout="constrained")
    ax_px, ax_eq, ax_dd, ax_pos = fig.subplots(4, 1, sharex=True, height_ratios=[0.34, 0.26, 0.16, 0.24])
    ax_px.plot(ts, frame["price"].to_numpy(), color="#555", lw=1, label="mid price")
    idx, dpos, fill_ts = _fills(recs)
    price = recs["price"][idx]
    for mask, name, color, marker in ((dpos > 0, "buy fills", "#1a9850", "^"), (dpos < 0, "sell fills", "#d73027", "v"),
                                      (dpos == 0, "round trips", "#7570b3", "o")):
        if mask.any():
            ax_px.scatter(fill_ts[mask], price[mask], s=14, color=color, marker=marker, label=name, zorder=3)
    ax_eq.plot(ts, equity, color="#2166ac", label="equity")
    ax_eq.plot(ts, frame["equity_wo_fee"].to_numpy(), color="#92c5de", ls=":", label="equity w/o fee")
    ax_dd.fill_between(ts, drawdown, 0.0, color="#d6604d", alpha=0.6, label="drawdown")
    ax_pos.step(ts, frame["position"].to_numpy(), where="post", color="#762a83", label="position")
    unit = "coin" if asset.inverse else "quote"
    for ax, title, ylabel in ((ax_px, "Price and fills", "price"), (ax_eq, "Equity", f"equity ({unit})"),
                              (ax_dd, "Drawdown", "drawdown"), (ax_pos, "Position", "position (qty)")):
        ax.set_title(title, loc="left", fontsize=11)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    return fig


def _fee_image(frame, funding=None):
    from matplotlib.figure import Figure

    names, values = _pnl_steps(frame, funding)
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    ax_bar, ax_fee = fig.subplots(1, 2, width_ratios=[0.35, 0.65])
    bottoms = list(np.concatenate([[0.0], np.cumsum(values)[:-1]]))
    ax_bar.bar(names + ["net PnL"], values + [sum(values)], bottom=bottoms + [0.0],
               color=["#1a9850" if v >= 0 else "#d73027" for v in values] + ["#2166ac"])
    ax_bar.axhline(0.0, color="black", lw=0.8)
    ax_bar.set_title("PnL breakdown", loc="left", fontsize=11)
    ts = frame["timestamp"].to_numpy()
    ax_fee.fill_between(ts, frame["fee"].to_numpy(), 0.0, color="#b2182b", alpha=0.5)
    ax_fee.set_title("Cumulative fees (negative = rebates earned)", loc="left", fontsize=11)
    for ax in (ax_bar, ax_fee):
        ax.grid(alpha=0.3)
    return fig


def _latency_image(rows: np.ndarray):
    from matplotlib.figure import Figure

    entry, response = _latency_ms(rows)
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    ax = fig.subplots()
    if len(entry):
        upper, b = _latency_bins(entry, response)
        bins = np.arange(0.0, upper + b["size"], b["size"])
        ax.hist(entry, bins=bins, alpha=0.7, color="#4393c3", label="entry (request → exchange)")
        ax.hist(response, bins=bins, alpha=0.7, color="#f4a582", label="response (exchange → local)")
        ax.legend()
        title = (f"Order latency ({len(entry)} samples; median entry {np.median(entry):.2f} ms, "
                 f"response {np.median(response):.2f} ms)")
    else:
        title = "Order latency (no samples)"
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlabel("milliseconds")
    ax.set_ylabel("samples")
    ax.grid(alpha=0.3)
    return fig


def _image_html(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<div class="chart"><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></div>'


def _figure_html(fig) -> str:
    return '<div class="chart">' + fig.to_html(full_html=False, include_plotlyjs=False,
                                                config={"displaylogo": False, "responsive": True}) + "</div>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}}
header{{background:#1d2330;color:#fff;padding:18px 32px}} header h1{{margin:0;font-size:22px}}
header p{{margin:4px 0 0;color:#aab2c0;font-size:13px}}
main{{max-width:1280px;margin:0 auto;padding:16px 24px 48px}}
section{{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:16px 20px;margin:16px 0}}
h2{{font-size:17px;margin:0 0 12px}}
table.kv{{border-collapse:collapse;font-size:13px}} table.kv th{{text-align:left;padding:3px 16px 3px 0;color:#5b6475;
font-weight:500;vertical-align:top}} table.kv td{{padding:3px 0;font-family:ui-monospace,Menlo,Consolas,monospace}}
.summary{{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:8px;margin-bottom:8px}}
.metric{{background:#f5f6f8;border-radius:6px;padding:8px 10px}} .metric .name{{font-size:12px;color:#5b6475}}
.metric .value{{font-size:16px;font-weight:600;font-variant-numeric:tabular-nums}}
.chart{{margin-top:8px}} .chart img{{max-width:100%;height:auto}}
</style>
{script}
</head><body>
<header><h1>{title}</h1><p>{subtitle}</p></header>
<main>
{body}
</main></body></html>
"""


# --- CLI ----------------------------------------------------------------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report from a recorder .npz",
        description="Write one self-contained HTML file (charts work offline) from a Recorder.to_npz file.",
    )
    p.add_argument("record", help="record file written by Recorder.to_npz (keys '0', '1', ...)")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    p.add_argument("--book-size", type=float, default=None, help="capital, to express returns as ratios")
    p.add_argument("--resample", default="10s", help="interval for the metrics (polars duration, default 10s)")
    p.add_argument("--inverse", action="store_true", help="value every asset as an inverse (coin-margined) contract")
    p.add_argument("--contract-size", type=float, default=None, help="contract size of every asset")
    p.add_argument("--title", default=None, help="page title")
    p.add_argument("--images", action="store_true",
                   help="embed matplotlib PNG charts instead of interactive plotly (smaller file; needs matplotlib)")
    p.set_defaults(func=_run)


def _require_matplotlib() -> None:
    from .errors import ConfigError
    from .stats.plot import has_matplotlib

    if not has_matplotlib():
        raise ConfigError("--images needs matplotlib: pip install 'hftbacktest-py[plot]' (or drop --images)")


def _run(args) -> int:
    run = load_record(args.record)
    for asset in run.assets:
        if args.inverse:
            asset.inverse = True
        if args.contract_size is not None:
            asset.contract_size = args.contract_size
    if args.images:
        _require_matplotlib()
    out = write_report(run, args.output, book_size=args.book_size, resample=args.resample, title=args.title,
                       charts="images" if args.images else "plotly")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
