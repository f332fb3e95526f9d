"""Bad input at build time (and asset numbers at run time): typed errors naming the asset, file, row or field."""
import numpy as np
import pytest
from numba import njit

from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest.backtest.bot import AssetNumberError
from hftbacktest.errors import ConfigError, DataError, HftBacktestError
from hftbacktest.types import order_latency_dtype

from _engine_data import ask, bid, rows

BOOK = rows(bid(1000, 99.0, 2.0), ask(1000, 101.0, 3.0), bid(2000, 98.0, 1.0))


def ok_asset():
    return BacktestAsset().data(BOOK).tick_size(1.0).lot_size(1.0)


def build(*assets):
    return HashMapMarketDepthBacktest(list(assets))


@pytest.mark.parametrize("configure, match", [
    (lambda a: a.lot_size(0.0), "asset 1: lot_size must be > 0"),
    (lambda a: a.lot_size(-1.0), "asset 1: lot_size must be > 0"),
    (lambda a: a.tick_size(float("nan")), "asset 1: tick_size must be > 0"),
    (lambda a: a.linear_asset(0.0), "asset 1: contract_size"),
    (lambda a: a.trading_value_fee_model(float("nan"), 0.0), "asset 1: maker_fee"),
    (lambda a: a.power_prob_queue_model(0.0), "asset 1: the power queue model needs n > 0"),
    (lambda a: a.constant_order_latency(-5, 10), "asset 1: constant_order_latency needs latencies >= 0"),
])
def test_invalid_settings_name_the_asset_and_field(configure, match):
    with pytest.raises(ConfigError, match=match):
        build(ok_asset(), configure(ok_asset()))


def test_data_files(tmp_path):
    missing = tmp_path / "missing.npz"
    with pytest.raises(DataError, match=f"asset 0: {missing}: data file not found"):
        build(BacktestAsset().data([str(missing)]).tick_size(1).lot_size(1))
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros(4, np.float64))
    with pytest.raises(DataError, match="wrong.npy: wrong dtype"):
        build(BacktestAsset().data([str(wrong)]).tick_size(1).lot_size(1))
    no_data = tmp_path / "nodata.npz"
    np.savez(no_data, other=BOOK)
    with pytest.raises(DataError, match="nodata.npz: .npz has no 'data' array"):
        build(BacktestAsset().data([str(no_data)]).tick_size(1).lot_size(1))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="corrupt.npz: cannot read"):
        build(BacktestAsset().data([str(corrupt)]).tick_size(1).lot_size(1))
    csv = tmp_path / "events.csv"
    csv.write_text("1,2,3\n")
    with pytest.raises(DataError, match="events.csv: unsupported data file"):
        build(BacktestAsset().data([str(csv)]).tick_size(1).lot_size(1))
    with pytest.raises(DataError, match="asset 0: initial_snapshot: .*snap.npz: data file not found"):
        build(ok_asset().initial_snapshot(str(tmp_path / "snap.npz")))
    with pytest.raises(DataError, match="2-D|1-D"):
        build(BacktestAsset().data(np.zeros((2, 2), BOOK.dtype)).tick_size(1).lot_size(1))


def test_unsorted_and_nan_rows_name_the_row():
    with pytest.raises(DataError, match="row 1: exch_ts goes backwards"):
        build(BacktestAsset().data(rows(bid(2000, 99.0, 1.0), bid(1000, 98.0, 1.0))).tick_size(1).lot_size(1))
    with pytest.raises(DataError, match="row 2: price is NaN"):
        build(BacktestAsset().data(rows(bid(1, 99.0, 1.0), ask(1, 101.0, 1.0), bid(2, float("inf"), 1.0)))
              .tick_size(1).lot_size(1))
    with pytest.raises(DataError, match=r"row 2: local_ts goes backwards \(50 -> 40\)"):
        build(BacktestAsset().data(rows(bid(1, 99.0, 1.0, lts=10), ask(2, 101.0, 1.0, lts=50),
                                        bid(3, 98.0, 1.0, lts=40))).tick_size(1).lot_size(1))
    # several problems: exch_ts is reported first, then local_ts, then prices (one pass finds them all)
    with pytest.raises(DataError, match=r"row 3: exch_ts goes backwards \(5 -> 4\)"):
        build(BacktestAsset().data(rows(bid(1, float("nan"), 1.0), ask(2, 101.0, 1.0, lts=50),
                                        bid(5, 98.0, 1.0, lts=40), bid(4, 98.0, 1.0, lts=60)))
              .tick_size(1).lot_size(1))


def test_a_later_file_that_goes_back_in_time_stops_the_run_with_a_data_error(tmp_path, capfd):
    later = tmp_path / "day2.npz"
    np.savez(later, data=rows(bid(1500, 97.0, 1.0)))  # starts before the end of the first file (2000)
    hbt = build(BacktestAsset().data([BOOK, str(later)]).tick_size(1).lot_size(1))
    assert hbt.elapse(10_000) == 100  # the reference's data error code
    assert "day2.npz: row 0: exch_ts goes backwards from the previous file or chunk (2000 -> 1500)" in capfd.readouterr().err


def test_latency_files(tmp_path):
    def intp(data):
        return build(ok_asset().intp_order_latency(data))

    with pytest.raises(DataError, match=f"asset 0: latency file not found: {tmp_path / 'lat.npz'}"):
        intp([str(tmp_path / "lat.npz")])
    lat = np.zeros(3, order_latency_dtype)
    lat["req_ts"] = [100, 300, 200]
    lat["exch_ts"] = lat["req_ts"] + 10
    lat["resp_ts"] = lat["req_ts"] + 20
    np.savez(tmp_path / "unsorted.npz", data=lat)
    with pytest.raises(DataError, match="unsorted.npz: row 2: req_ts goes backwards"):
        intp([str(tmp_path / "unsorted.npz")])
    first, second = lat[[0, 1]], lat[[2]]  # each sorted, but the second file starts before the first ends
    np.savez(tmp_path / "a.npz", data=first)
    np.savez(tmp_path / "b.npz", data=second)
    with pytest.raises(DataError, match="b.npz: row 0: req_ts goes backwards"):
        intp([str(tmp_path / "a.npz"), str(tmp_path / "b.npz")])
    np.savez(tmp_path / "fields.npz", data=np.zeros(2, [("req_ts", "i8"), ("x", "i8")]))
    with pytest.raises(DataError, match="fields.npz: latency rows lack fields"):
        intp([str(tmp_path / "fields.npz")])
    with pytest.raises(DataError, match="got no rows"):
        intp([np.zeros(0, order_latency_dtype)])


@njit
def _depth_of(hbt, asset_no):
    return hbt.depth(asset_no).best_bid


def test_unknown_asset_numbers():
    hbt = build(ok_asset())
    with pytest.raises(AssetNumberError, match="asset number 1 out of range: valid numbers are 0 .. 0"):
        hbt.depth(1)
    with pytest.raises(AssetNumberError, match="asset number -1"):
        hbt.state_values(-1)
    with pytest.raises(AssetNumberError, match="out of range"):
        _depth_of(hbt, 3)
    assert issubclass(AssetNumberError, HftBacktestError) and issubclass(AssetNumberError, IndexError)


def test_missing_required_settings_fail_at_build_time():
    from hftbacktest import ROIVectorMarketDepthBacktest

    # an ROI book without its price range used to track [0, 0]: the run ended with no trades and exit code 0
    with pytest.raises(ConfigError, match=r"asset 0: ROIVectorMarketDepthBacktest needs the price range it tracks: "
                                          r"call \.roi_lb\(\.\.\.\) and \.roi_ub\(\.\.\.\)"):
        ROIVectorMarketDepthBacktest([ok_asset()])
    with pytest.raises(ConfigError, match=r"asset 0: .*call \.roi_ub\(\.\.\.\)$"):
        ROIVectorMarketDepthBacktest([ok_asset().roi_lb(90.0)])
    with pytest.raises(ConfigError, match=r"asset 0: roi_ub must be > roi_lb \(got roi_lb=100.0, roi_ub=100.0\)"):
        ROIVectorMarketDepthBacktest([ok_asset().roi_lb(100.0).roi_ub(100.0)])
    with pytest.raises(ConfigError, match=r"asset 1: no data; call \.data\(\[\.\.\.\]\)"):
        build(ok_asset(), BacktestAsset().tick_size(1.0).lot_size(1.0))
    ROIVectorMarketDepthBacktest([ok_asset().roi_lb(90.0).roi_ub(110.0)]).close()
    build(ok_asset()).close()  # the hashmap book needs no range
