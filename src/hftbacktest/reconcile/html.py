"""The reconciliation as one self-contained HTML page, in the style of `hftbacktest report` (its page, summary
cards and chart helpers are reused)."""
from __future__ import annotations

import html
from datetime import datetime, timezone

import numpy as np
import polars as pl

from ..report import _PAGE, _figure_html, _image_html, _latency_bins, _summary_table

MAX_ROWS = 300  # unmatched fills listed in the page (the CSV / DataFrame has them all)
STRATEGY_CARDS = ("live_fills", "backtest_fills", "fill_count_error", "live_volume", "backtest_volume",
                  "live_position", "backtest_position", "position_same_share", "position_mean_abs_diff", "live_pnl",
                  "backtest_pnl", "live_submits")
CARDS = ("agreement", "qty_agreement", "live_fills", "backtest_fills", "matched_fills", "live_only", "backtest_only",
         "fill_count_error", "first_fill_error_ms", "orders", "orders_excluded", "live_pnl", "backtest_pnl")


def render(res, charts: str = "plotly") -> str:
    from ..errors import ConfigError

    if charts not in ("plotly", "images"):
        raise ConfigError(f"charts must be 'plotly' or 'images', got {charts!r}")
    s = res.summary
    strategy = s["mode"] == "strategy replay"
    heading = "Live vs strategy re-run" if strategy else "Fill agreement"
    cards = STRATEGY_CARDS if strategy else CARDS
    sections = [f"<section><h2>{heading} · {html.escape(s['queue'])}</h2>"
                + _summary_table({k: s[k] for k in cards if k in s}) + "</section>", _setup(s)]
    figures = [(_paths_figure, _paths_image, res.paths, "position and PnL, live vs backtest"),
               (_fills_figure, _fills_image, res.fills, "fills over time"),
               (_latency_figure, _latency_image, res.latency, "order latency, live vs model")]
    for plotly_fn, image_fn, frame, alt in figures:
        if len(frame):
            body = _figure_html(plotly_fn(frame)) if charts == "plotly" else _image_html(image_fn(frame), alt)
            sections.append(f"<section><h2>{html.escape(alt.capitalize())}</h2>{body}</section>")
    if not strategy:
        sections.append(_unmatched(res.fills))
    script = ""
    if charts == "plotly":
        import plotly.offline

        script = '<script type="text/javascript">' + plotly.offline.get_plotlyjs() + "</script>"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return _PAGE.format(title=html.escape(f"Reconciliation · {s['symbol'].upper()}"),
                        subtitle=html.escape(f"{s['mode']} · {s['session']} · generated {generated}"),
                        script=script, body="\n".join(sections))


def _kv(rows: dict) -> str:
    return '<table class="kv">' + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                                          for k, v in rows.items()) + "</table>"


def _setup(s: dict) -> str:
    rows = {"journals": ", ".join(s["journals"]), "feed": s["feed"], "config": s["config"], "queue model": s["queue"],
            "exchange model": s["exchange"],
            "match window": "-" if s["window_ms"] is None else f"{s['window_ms']:g} ms", "session": s["session"],
            "requests": s["requests"], "backtest request outcomes": s["backtest_requests"]}
    for source, m in s["latency_ms"].items():
        rows[f"latency · {source}"] = (f"entry median {m['entry_median']:.3f} ms, response median "
                                       f"{m['response_median']:.3f} ms ({m['samples']} samples)")
    body = _kv(rows)
    gaps = s["excluded_intervals"]
    body += (f"<h2>Excluded intervals ({len(gaps)})</h2>" + _kv({g["span"]: f"{g['kind']} {g['detail']}".strip()
                                                                for g in gaps})) if gaps else \
        "<p>No feed gap during the session: every order is compared.</p>"
    if s["warnings"]:
        body += "<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in s["warnings"]) + "</ul>"
    return f"<section><h2>Setup</h2>{body}</section>"


def _unmatched(fills: pl.DataFrame) -> str:
    bad = fills.filter(pl.col("status") != "matched")
    if not len(bad):
        return "<section><h2>Unmatched fills</h2><p>None: every fill was reproduced.</p></section>"
    cols = ["order_id", "side", "status", "live_ts", "live_price", "live_qty", "bt_ts", "bt_price", "bt_qty", "excluded"]
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r[c], c))}</td>" for c in cols) + "</tr>"
                   for r in bad.head(MAX_ROWS).iter_rows(named=True))
    more = f"<p>{len(bad) - MAX_ROWS} more in the fills table (CSV).</p>" if len(bad) > MAX_ROWS else ""
    return (f'<section><h2>Unmatched fills ({len(bad)})</h2><table class="kv"><tr>{head}</tr>{body}</table>'
            f"{more}</section>")


def _cell(v, col: str) -> str:
    if v is None:
        return ""
    if col.endswith("_ts"):
        return datetime.fromtimestamp(v / 1e9, timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    return f"{v:.10g}" if isinstance(v, float) else str(v)


def _ts(col) -> np.ndarray:
    return col.to_numpy().astype("datetime64[ns]")


def _paths_figure(paths: pl.DataFrame):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06, subplot_titles=("Position", "PnL"))
    ts = _ts(paths["ts"])
    for col, name, color, row in (("live_position", "live", "#2166ac", 1), ("bt_position", "backtest", "#d6604d", 1),
                                  ("live_pnl", "live", "#2166ac", 2), ("bt_pnl", "backtest", "#d6604d", 2)):
        fig.add_trace(go.Scatter(x=ts, y=paths[col].to_numpy(), name=name, line=dict(color=color), line_shape="hv",
                                 showlegend=row == 1), row=row, col=1)
    fig.update_layout(height=560, hovermode="x unified", template="plotly_white", margin=dict(l=70, r=30, t=50, b=40))
    return fig


def _fills_figure(fills: pl.DataFrame):
    import plotly.graph_objects as go

    fig = go.Figure()
    for status, color, symbol in (("matched", "#1a9850", "circle"), ("live_only", "#2166ac", "triangle-up"),
                                  ("backtest_only", "#d73027", "triangle-down")):
        part = fills.filter(pl.col("status") == status)
        if not len(part):
            continue
        ts = part["live_ts"].fill_null(part["bt_ts"])
        px = part["live_price"].fill_null(part["bt_price"])
        fig.add_trace(go.Scatter(x=_ts(ts), y=px.to_numpy(), mode="markers", name=f"{status} ({len(part)})",
                                 marker=dict(color=color, symbol=symbol, size=7)))
    fig.update_layout(height=360, template="plotly_white", yaxis_title="fill price",
                      margin=dict(l=70, r=30, t=30, b=40))
    return fig


def _latency_figure(lat: pl.DataFrame):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    upper, bins = _latency_bins(lat["entry_ms"].to_numpy(), lat["response_ms"].to_numpy())
    fig = make_subplots(rows=1, cols=2, subplot_titles=("entry (request → exchange), ms",
                                                        "response (exchange → local), ms"))
    for i, ((source,), g) in enumerate(lat.group_by("source", maintain_order=True)):
        for col, c in (("entry_ms", 1), ("response_ms", 2)):
            values = g[col].to_numpy()
            if len(values) == 1:  # a constant model: a line, not a one-sample histogram
                fig.add_vline(x=float(values[0]), line=dict(color=_COLORS[i % 4], dash="dash"), row=1, col=c,
                              annotation_text=source if c == 1 else None)
                continue
            fig.add_trace(go.Histogram(x=values, name=source, xbins=bins, opacity=0.6, histnorm="probability",
                                       marker_color=_COLORS[i % 4], showlegend=c == 1), row=1, col=c)
    fig.update_layout(barmode="overlay", height=330, template="plotly_white", margin=dict(l=70, r=30, t=50, b=40))
    fig.update_xaxes(range=[0.0, upper])
    return fig


_COLORS = ("#4393c3", "#f4a582", "#5aae61", "#762a83")


def _paths_image(paths: pl.DataFrame):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 6), layout="constrained")
    ax_pos, ax_pnl = fig.subplots(2, 1, sharex=True)
    ts = _ts(paths["ts"])
    for ax, kind in ((ax_pos, "position"), (ax_pnl, "pnl")):
        ax.step(ts, paths[f"live_{kind}"].to_numpy(), where="post", color="#2166ac", label="live")
        ax.step(ts, paths[f"bt_{kind}"].to_numpy(), where="post", color="#d6604d", label="backtest")
        ax.set_title("Position" if kind == "position" else "PnL", loc="left", fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    return fig


def _fills_image(fills: pl.DataFrame):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6), layout="constrained")
    ax = fig.subplots()
    for status, color, marker in (("matched", "#1a9850", "o"), ("live_only", "#2166ac", "^"),
                                  ("backtest_only", "#d73027", "v")):
        part = fills.filter(pl.col("status") == status)
        if len(part):
            ax.scatter(_ts(part["live_ts"].fill_null(part["bt_ts"])), part["live_price"].fill_null(
                part["bt_price"]).to_numpy(), s=14, color=color, marker=marker, label=f"{status} ({len(part)})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _latency_image(lat: pl.DataFrame):
    from matplotlib.figure import Figure

    upper, _ = _latency_bins(lat["entry_ms"].to_numpy(), lat["response_ms"].to_numpy())
    bins = np.linspace(0.0, upper, 81)
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for i, ((source,), g) in enumerate(lat.group_by("source", maintain_order=True)):
        for ax, col in zip(axes, ("entry_ms", "response_ms")):
            values = g[col].to_numpy()
            if len(values) == 1:  # a constant model
                ax.axvline(float(values[0]), color=_COLORS[i % 4], ls="--", label=source)
            else:
                ax.hist(np.clip(values, 0.0, upper), bins=bins, alpha=0.6, color=_COLORS[i % 4],
                        weights=np.full(len(values), 1.0 / len(values)), label=source)
    for ax, title in zip(axes, ("entry (request → exchange), ms", "response (exchange → local), ms")):
        ax.set_title(title, loc="left", fontsize=11)
        ax.set_ylabel("share of requests")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig
