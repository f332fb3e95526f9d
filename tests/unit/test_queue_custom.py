"""custom_prob_queue_model: the user's own probability function, called by the compiled engine through its C
address. Expected queue positions are derived by hand from spec §5:
    est = front - (1 - p) * chg + min(back - p * chg, 0);  front' = min(est, new level qty)."""
import numpy as np
import pytest
from numba import cfunc, njit, types

from hftbacktest import GTC, LIMIT, BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest.errors import ConfigError
from hftbacktest.kernels import models as m

from _engine_data import bid, rows, sell_trade


@cfunc(types.float64(types.float64, types.float64))
def quarter(front, back):
    return 0.25


def test_kernel_calls_the_function_through_its_address():
    # front 4 of a level of 10 that shrinks to 6: chg 4, back 6; p = 0.25 -> est = 4 - 0.75*4 + min(6 - 1, 0) = 1
    qf, qc = np.array([4.0]), np.array([0.0])
    m.queue_depth(m.QUEUE_CUSTOM, 0.0, qf, qc, 0, 10.0, 6.0, quarter.address)
    assert qf[0] == 1.0


@njit
def never_behind(front, back):
    return 0.0


@njit
def always_behind(front, back):
    return 1.0


@njit
def power2(front, back):
    return back**2 / (back**2 + front**2)


def _run(configure):
    # bid level 99 x 5; our buy at 99 reaches the exchange at 1110 with 5 ahead; the level grows to 9 (front stays
    # 5), then shrinks to 5 (chg 4, front 5, back 4); then a sell trade of 2 at 99.
    data = rows(bid(1000, 99.0, 5.0), bid(2000, 99.0, 9.0), bid(3000, 99.0, 5.0), sell_trade(4000, 99.0, 2.0))
    asset = BacktestAsset().data([data]).tick_size(1.0).lot_size(1.0).constant_order_latency(10, 10)
    hbt = HashMapMarketDepthBacktest([configure(asset)])
    hbt.elapse(100)
    assert hbt.submit_buy_order(0, 1, 99.0, 1.0, GTC, LIMIT, False) == 0
    hbt.elapse(3900)  # to 5000: every row processed, fills replied
    return hbt.position(0)


def test_probability_function_decides_the_fill():
    # p = 0: the whole decrease was ahead -> front 5 - 4 = 1; the trade of 2 overruns it by 1 lot -> filled
    assert _run(lambda a: a.custom_prob_queue_model(never_behind)) == 1.0
    # p = 1: the decrease was behind -> front stays 5; the trade leaves 3 ahead -> no fill
    assert _run(lambda a: a.custom_prob_queue_model(always_behind)) == 0.0


def test_custom_function_equals_the_builtin_model():
    assert _run(lambda a: a.custom_prob_queue_model(power2)) == _run(lambda a: a.power_prob_queue_model(2.0))
    assert _run(lambda a: a.custom_prob_queue_model(quarter)) == _run(  # p = 0.25 -> front 2, trade 2 -> 0
        lambda a: a.custom_prob_queue_model(lambda f, b: 0.25))


def test_bad_probability_functions_are_config_errors():
    data = rows(bid(1000, 99.0, 5.0))

    def build(prob):
        a = BacktestAsset().data([data]).tick_size(1.0).lot_size(1.0).custom_prob_queue_model(prob)
        return HashMapMarketDepthBacktest([a])

    with pytest.raises(ConfigError, match="asset 0.*custom_prob_queue_model"):
        build(42)
    with pytest.raises(ConfigError, match="asset 0.*returns_text.*float64"):
        def returns_text(front, back):
            return "x"
        build(returns_text)
    wrong_sig = cfunc(types.float64(types.float64))(lambda x: x)
    with pytest.raises(ConfigError, match="asset 0.*cfunc"):
        build(wrong_sig)
