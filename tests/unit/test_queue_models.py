"""Queue position formulas (spec §5) and latency interpolation (spec §6), evaluated by hand in each test."""
import math

import numpy as np
import pytest

from hftbacktest.kernels import models as m


def _state(front):
    return np.array([front]), np.array([0.0])


def test_risk_adverse_trade_and_depth():
    qf, qc = _state(5.0)
    m.queue_trade(m.QUEUE_RISK_ADVERSE, qf, qc, 0, 2.0)
    assert qf[0] == 3.0
    m.queue_depth(m.QUEUE_RISK_ADVERSE, 0.0, qf, qc, 0, 5.0, 1.0)
    assert qf[0] == 1.0  # min(front, new level qty)


@pytest.mark.parametrize(
    "code,n,prob",
    [
        (m.QUEUE_POWER, 2.0, lambda f, b: b**2 / (b**2 + f**2)),
        (m.QUEUE_POWER2, 3.0, lambda f, b: b**3 / (b + f) ** 3),
        (m.QUEUE_POWER3, 2.0, lambda f, b: 1 - (f / (f + b)) ** 2),
        (m.QUEUE_LOG, 0.0, lambda f, b: math.log(1 + b) / (math.log(1 + b) + math.log(1 + f))),
        (m.QUEUE_LOG2, 0.0, lambda f, b: math.log(1 + b) / math.log(1 + b + f)),
    ],
)
def test_probabilistic_depth_decrease(code, n, prob):
    # front 4 of a level of 10 that shrinks to 6 with no trades: chg 4, back 6
    qf, qc = _state(4.0)
    m.queue_depth(code, n, qf, qc, 0, 10.0, 6.0)
    p = prob(4.0, 6.0)
    est = 4.0 - (1 - p) * 4.0 + min(6.0 - p * 4.0, 0.0)
    assert qf[0] == pytest.approx(min(est, 6.0), rel=1e-15)


def test_probabilistic_trades_are_netted_out_of_the_depth_change():
    qf, qc = _state(4.0)
    m.queue_trade(m.QUEUE_POWER, qf, qc, 0, 3.0)  # front 1, cum 3
    m.queue_depth(m.QUEUE_POWER, 2.0, qf, qc, 0, 10.0, 7.0)  # chg = 10 - 7 - 3 = 0
    assert qf[0] == 1.0 and qc[0] == 0.0
    m.queue_depth(m.QUEUE_POWER, 2.0, qf, qc, 0, 7.0, 9.0)  # level grew: front = min(front, new)
    assert qf[0] == 1.0


def test_is_filled_needs_half_a_lot_overrun():
    qf = np.array([-0.0004])
    assert m.queue_is_filled(qf, 0, 0.001) == 0.0
    qf = np.array([-0.0015])
    assert m.queue_is_filled(qf, 0, 0.001) == pytest.approx(0.002)
    assert qf[0] == 0.0


def test_intp_latency_rules():
    tab = np.array([[100, 110, 130, 0], [200, 230, 260, 0], [300, 0, 350, 0], [400, 420, 450, 0]], np.int64)
    assert m.intp_entry(tab, 0, 50) == (10, 0)  # before the first row
    lat, cur = m.intp_entry(tab, 0, 150)
    assert (lat, cur) == (int(20 / 100 * 50) + 10, 0)
    lat, cur = m.intp_entry(tab, cur, 250)  # next row is an exchange rejection -> negative latency
    assert lat == -(int((50 - 60) / 100 * 50) + 60)
    assert m.intp_entry(tab, cur, 500)[0] == 20  # after the last row
    assert m.intp_response(tab, 0, 170)[0] == int(10 / 120 * 60) + 20


def test_fee_and_amount_models():
    assert m.trade_amount(m.ASSET_LINEAR, 2.0, 100.0, 3.0) == 600.0
    assert m.trade_amount(m.ASSET_INVERSE, 10.0, 100.0, 3.0) == 0.3
    assert m.trade_fee(m.FEE_TRADING_VALUE, -0.0001, 0.0004, False, 400.0, 4.0) == 0.0004 * 400.0
    assert m.trade_fee(m.FEE_TRADING_VALUE, -0.0001, 0.0004, True, 297.0, 3.0) == -0.0001 * 297.0
    assert m.trade_fee(m.FEE_TRADING_QTY, 0.1, 0.2, True, 297.0, 3.0) == pytest.approx(0.3)
    assert m.trade_fee(m.FEE_FLAT_PER_TRADE, 0.1, 0.2, False, 297.0, 3.0) == 0.2
