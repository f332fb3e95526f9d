"""`hftbacktest report` building blocks without a browser: loading records, bad input, page content."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hftbacktest.cli import main
from hftbacktest.errors import ConfigError, DataError
from hftbacktest.report import AssetView, RunRecord, load_record, render
from hftbacktest.types import order_latency_dtype, record_dtype


def small_record(n=600, inverse_scale=1.0):
    rec = np.zeros(n, record_dtype)
    rec["timestamp"] = 1_704_067_200_000_000_000 + np.arange(n) * 100_000_000
    rec["price"] = 100.0 + np.sin(np.arange(n) / 50.0) * inverse_scale
    steps = np.where(np.arange(n) % 40 == 0, np.where(np.arange(n) % 80 == 0, 1.0, -1.0), 0.0)
    rec["position"] = np.cumsum(steps)
    rec["balance"] = -np.cumsum(steps * rec["price"])
    rec["fee"] = np.cumsum(np.abs(steps) * 0.01)
    rec["num_trades"] = np.cumsum(steps != 0)
    rec["trading_volume"] = np.cumsum(np.abs(steps))
    rec["trading_value"] = np.cumsum(np.abs(steps * rec["price"]))
    return rec


def test_load_record_reads_assets_config_and_latency(tmp_path):
    path = tmp_path / "r.npz"
    cfg = {"title": "T", "assets": [{"name": "X", "asset_type": "inverse", "contract_size": 10}, {"name": "Y"}]}
    lat = np.zeros(5, order_latency_dtype)
    np.savez_compressed(path, **{"0": small_record(), "1": small_record(), "config": np.array(json.dumps(cfg)),
                                 "order_latency_1": lat})
    run = load_record(path)
    assert [a.name for a in run.assets] == ["X", "Y"]
    assert run.assets[0].inverse and run.assets[0].contract_size == 10.0 and not run.assets[1].inverse
    assert run.assets[0].order_latency is None and len(run.assets[1].order_latency) == 5
    assert run.config["title"] == "T"


def test_page_has_every_section_and_no_external_resources():
    rec = small_record()
    lat = np.zeros(50, order_latency_dtype)
    lat["req_ts"] = rec["timestamp"][:50]
    lat["exch_ts"] = lat["req_ts"] + 3_000_000
    lat["resp_ts"] = lat["exch_ts"] + 2_000_000
    run = RunRecord([AssetView(rec, "BTCUSDT", order_latency=lat)], {"strategy": "<b>mm</b>"}, "mem")
    page = render(run, book_size=1000.0, resample="1s", title="Demo & test")
    assert "<title>Demo &amp; test</title>" in page and "&lt;b&gt;mm&lt;/b&gt;" in page  # escaped
    assert page.count('class="plotly-graph-div"') == 3 and "<script src=" not in page
    for text in ("Run configuration", "Asset 0 · BTCUSDT", "MaxLeverage", "buy fills", "sell fills", "drawdown",
                 "PnL breakdown", "Order latency (50 samples; median entry 3.00 ms, response 2.00 ms)"):
        assert text in page, text


def test_without_latency_rows_there_is_no_histogram():
    page = render(RunRecord([AssetView(small_record())]))
    assert page.count('class="plotly-graph-div"') == 2 and "Order latency" not in page


def test_cli_writes_report_and_reports_bad_files(tmp_path, capsys):
    good = tmp_path / "ok.npz"
    np.savez_compressed(good, **{"0": small_record()})
    out = tmp_path / "sub" / "r.html"
    assert main(["report", str(good), "-o", str(out), "--inverse", "--contract-size", "5"]) == 0
    assert out.stat().st_size > 1_000_000  # plotly.js is inlined
    assert main(["report", str(tmp_path / "missing.npz"), "-o", str(out)]) == 1
    assert "missing.npz: no such record file" in capsys.readouterr().err
    wrong = tmp_path / "events.npz"
    np.savez_compressed(wrong, data=np.zeros(3))
    with pytest.raises(DataError, match="no asset records"):
        load_record(wrong)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="garbage.npz"):
        load_record(garbage)


def test_stats_plot_matplotlib_mirrors_the_reference_layout(tmp_path):
    pytest.importorskip("matplotlib")
    from hftbacktest.stats import LinearAssetRecord

    stats = LinearAssetRecord(small_record()).resample("1s").stats(book_size=1000.0)
    fig = stats.plot(backend="matplotlib")
    # equity and position panels, each with the price on a twin axis (as hftbacktest 2.x draws it)
    assert [ax.get_ylabel() for ax in fig.axes] == ["Cumulative Returns (%)", "Position (Qty)", "Price", "Price"]
    top = fig.axes[0]
    assert [line.get_label() for line in top.get_lines()] == ["Equity", "Equity w/o fee"]
    equity = top.get_lines()[0].get_ydata()
    frame = stats.entire
    expected = ((frame["equity_wo_fee"] - frame["fee"]) / 1000.0 * 100.0).to_numpy()
    assert np.allclose(equity, expected)
    out = tmp_path / "plot.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # price as returns: the price shares the equity axis, no twin on top
    fig = stats.plot(price_as_ret=True, backend="matplotlib")
    assert len(fig.axes) == 3 and [ln.get_label() for ln in fig.axes[0].get_lines()][-1] == "Price"
    with pytest.raises(ValueError, match="unsupported"):
        stats.plot(backend="bokeh")


def test_report_with_embedded_images_needs_no_javascript(tmp_path):
    pytest.importorskip("matplotlib")
    import base64
    import re

    rec = small_record()
    lat = np.zeros(50, order_latency_dtype)
    lat["req_ts"] = rec["timestamp"][:50]
    lat["exch_ts"] = lat["req_ts"] + 3_000_000
    lat["resp_ts"] = lat["exch_ts"] + 2_000_000
    page = render(RunRecord([AssetView(rec, "BTCUSDT", order_latency=lat)]), book_size=1000.0, resample="1s",
                  charts="images")
    assert "<script" not in page and "plotly-graph-div" not in page
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)">', page)
    assert [alt for alt, _ in images] == ["price and fills, equity, drawdown, position",
                                          "PnL breakdown and cumulative fees", "order latency histogram"]
    for _, data in images:
        png = base64.b64decode(data)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width == 1200 and height >= 360
    assert "MaxLeverage" in page and "Asset 0 · BTCUSDT" in page  # the summary is the same as the plotly page

    good = tmp_path / "ok.npz"
    np.savez_compressed(good, **{"0": rec})
    out = tmp_path / "img.html"
    assert main(["report", str(good), "-o", str(out), "--images"]) == 0
    assert 20_000 < out.stat().st_size < 1_000_000  # no plotly.js inlined
    with pytest.raises(ConfigError, match="charts must be"):
        render(RunRecord([AssetView(rec)]), charts="svg")


def test_latency_histograms_share_one_bin_width():
    from hftbacktest.report import _latency_figure

    rng = np.random.default_rng(4)
    lat = np.zeros(2000, order_latency_dtype)
    lat["req_ts"] = 1_000_000_000 + np.arange(2000) * 1_000_000
    lat["exch_ts"] = lat["req_ts"] + rng.normal(3e6, 1e5, 2000).astype(np.int64)  # narrow entry latency
    lat["resp_ts"] = lat["exch_ts"] + rng.lognormal(np.log(5e7), 0.8, 2000).astype(np.int64)  # wide response
    lat["resp_ts"][7] = lat["exch_ts"][7] + 60_000_000_000  # one 60 s spike: bins stay bounded in number
    entry, response = _latency_figure(lat).data
    assert entry.xbins == response.xbins and entry.xbins.start == 0
    assert entry.xbins.end >= 60_000 and entry.xbins.end / entry.xbins.size <= 4000
