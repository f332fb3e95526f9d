"""Stats equal to hftbacktest 2.4.4 on a deterministic synthetic record (golden numbers, 1e-9 relative).

GOLDEN was obtained with `.venv/bin/python benchmarks/parity_stats.py --golden`, which loads `build_record` and
`CASES` from this file, runs each case with the reference's `hftbacktest.stats` in `.venv-ref` (2.4.4) and prints
the values pasted below. The whole-sample comparison on real data is `benchmarks/parity_stats.py` itself.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.parity


def build_record(with_totals: bool = True) -> np.ndarray:
    """4 h of 1 s samples across a month end (2024-01-31 22:00 → 02-01 02:00 UTC); no RNG, so any numpy agrees."""
    n = 4 * 3600
    k = np.arange(n, dtype=np.float64)
    price = 42_000.0 + 150.0 * np.sin(k / 1500.0) + 7.0 * np.sin(k * 0.37) + 0.01 * k
    price[[500, 501, 9000]] = np.nan  # an empty book side makes the mid NaN in real records
    trade = (np.arange(n) * 7919) % 23 == 0
    side = np.where((np.arange(n) // 97) % 2 == 0, 1.0, -1.0)
    qty = np.where(trade, side * 0.003, 0.0)
    fill_px = np.nan_to_num(price, nan=42_000.0)
    fields = [("timestamp", "i8"), ("price", "f8"), ("position", "f8"), ("balance", "f8"), ("fee", "f8")]
    if with_totals:
        fields += [("num_trades", "i8"), ("trading_volume", "f8"), ("trading_value", "f8")]
    rec = np.zeros(n, np.dtype(fields, align=True))
    rec["timestamp"] = 1_706_738_400_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000_000
    rec["price"] = price
    rec["position"] = np.cumsum(qty)
    rec["balance"] = -np.cumsum(qty * fill_px)
    rec["fee"] = np.cumsum(np.abs(qty * fill_px) * np.where(np.arange(n) % 5 == 0, 0.0004, -0.00005))
    if with_totals:
        rec["num_trades"] = np.cumsum(trade)
        rec["trading_volume"] = np.cumsum(np.abs(qty))
        rec["trading_value"] = np.cumsum(np.abs(qty * fill_px))
    return rec


# name: (record kind, contract size, totals?, resample, split, book_size, metric class names)
ALL = ["SR", "Sortino", "Ret", "AnnualRet", "MaxDrawdown", "ReturnOverMDD", "ReturnOverTrade", "NumberOfTrades",
       "DailyNumberOfTrades", "TradingVolume", "DailyTradingVolume", "TradingValue", "DailyTradingValue",
       "MaxPositionValue", "MeanPositionValue", "MedianPositionValue"]
CASES = {
    "linear_10s_default": ("linear", 1.0, True, "10s", None, None, None),
    "linear_1m_monthly_book": ("linear", 1.0, True, "1m", "monthly", 25_000.0, ALL + ["MaxLeverage"]),
    "inverse_5m_daily": ("inverse", 100.0, True, "5m", "daily", None, ALL),
    "linear_raw_positions_only": ("linear", 2.0, False, None, None, None, ALL),
    "inverse_30s_positions_only_book": ("inverse", 10.0, False, "30s", "daily", 3.0, ALL),
}

# fmt: off
nan = math.nan  # how pprint writes NaN
GOLDEN = {'linear_10s_default': [{'start': '2024-01-31T22:00:00',
                         'end': '2024-02-01T01:59:50',
                         'SR': -18.876150237839585,
                         'Sortino': -26.59056055546967,
                         'Return': -1.6040174503529594,
                         'MaxDrawdown': 3.268958356953485,
                         'DailyNumberOfTrades': 3758.6101459346764,
                         'DailyTradingValue': 474747.40551713144,
                         'ReturnOverMDD': -0.4906815184540399,
                         'ReturnOverTrade': -2.0286140884013513e-05,
                         'MaxPositionValue': 759.0811202911856}],
 'linear_1m_monthly_book': [{'start': '2024-01-31T22:00:00',
                             'end': '2024-01-31T23:59:00',
                             'SR': -131.91271784864696,
                             'Sortino': -158.30072330787482,
                             'Return': -9.36922787738117e-05,
                             'AnnualReturn': -0.28570633715496463,
                             'MaxDrawdown': 0.0001290095036095639,
                             'ReturnOverMDD': -0.7262432313309513,
                             'ReturnOverTrade': -5.930119552528505e-05,
                             'NumberOfTrades': 313.0,
                             'DailyNumberOfTrades': 3787.563025210084,
                             'TradingVolume': 0.9390000000000007,
                             'DailyTradingVolume': 11.36268907563026,
                             'Turnover': 1.5799391216971819,
                             'DailyTurnover': 19.1185910524701,
                             'MaxPositionValue': 632.5511907871424,
                             'MeanPositionValue': 327.0047007093041,
                             'MedianPositionValue': 377.7247696912383,
                             'MaxLeverage': 0.025302047631485698},
                            {'start': '2024-02-01T00:00:00',
                             'end': '2024-02-01T01:59:00',
                             'SR': 34.64779763402753,
                             'Sortino': 50.027805896355595,
                             'Return': 2.8433091276178395e-05,
                             'AnnualReturn': 0.08670420304453459,
                             'MaxDrawdown': 7.631542776403419e-05,
                             'ReturnOverMDD': 0.37257330672499095,
                             'ReturnOverTrade': 1.7963274428849126e-05,
                             'NumberOfTrades': 313.0,
                             'DailyNumberOfTrades': 3787.563025210084,
                             'TradingVolume': 0.9389999999999682,
                             'DailyTradingVolume': 11.362689075629868,
                             'Turnover': 1.5828456770951895,
                             'DailyTurnover': 19.15376281526952,
                             'MaxPositionValue': 758.2944178261561,
                             'MeanPositionValue': 324.47987851991087,
                             'MedianPositionValue': 253.62133115645867,
                             'MaxLeverage': 0.03033177671304624},
                            {'start': '2024-01-31T22:00:00',
                             'end': '2024-02-01T01:59:00',
                             'SR': -43.059173166686804,
                             'Sortino': -57.31143084297092,
                             'Return': -6.667914914369681e-05,
                             'AnnualReturn': -0.10124070979608661,
                             'MaxDrawdown': 0.0001290095036095639,
                             'ReturnOverMDD': -0.5168545516266421,
                             'ReturnOverTrade': -2.108241735863804e-05,
                             'NumberOfTrades': 626.0,
                             'DailyNumberOfTrades': 3771.715481171548,
                             'TradingVolume': 1.877999999999969,
                             'DailyTradingVolume': 11.315146443514458,
                             'Turnover': 3.162784798792371,
                             'DailyTurnover': 19.056109247954037,
                             'MaxPositionValue': 758.2944178261561,
                             'MeanPositionValue': 325.74228961460744,
                             'MedianPositionValue': 377.5020850764463,
                             'MaxLeverage': 0.03033177671304624}],
 'inverse_5m_daily': [{'start': '2024-01-31T22:00:00',
                       'end': '2024-01-31T23:55:00',
                       'SR': -19.642718117101595,
                       'Sortino': -27.47344773158678,
                       'Return': -504.94986868259144,
                       'AnnualReturn': -1593358.333456859,
                       'MaxDrawdown': 631.1862752220414,
                       'ReturnOverMDD': -0.800001344301978,
                       'ReturnOverTrade': -0.01278403355542385,
                       'NumberOfTrades': 313.0,
                       'DailyNumberOfTrades': 3919.3043478260875,
                       'TradingVolume': 0.9390000000000007,
                       'DailyTradingVolume': 11.75791304347827,
                       'TradingValue': 39498.478042429546,
                       'DailyTradingValue': 494589.63809650915,
                       'MaxPositionValue': 632.019348424923,
                       'MeanPositionValue': 331.22006610176476,
                       'MedianPositionValue': 378.7673518584082},
                      {'start': '2024-02-01T00:00:00',
                       'end': '2024-02-01T01:55:00',
                       'SR': 7.785077036995132,
                       'Sortino': 11.551655965271445,
                       'Return': 249.51954106978232,
                       'AnnualReturn': 787353.4875078489,
                       'MaxDrawdown': 760.2251077519294,
                       'ReturnOverMDD': 0.32821796929022706,
                       'ReturnOverTrade': 0.006305593645179515,
                       'NumberOfTrades': 313.0,
                       'DailyNumberOfTrades': 3919.3043478260875,
                       'TradingVolume': 0.9389999999999682,
                       'DailyTradingVolume': 11.757913043477863,
                       'TradingValue': 39571.14192737974,
                       'DailyTradingValue': 495499.51630805933,
                       'MaxPositionValue': 758.1664920421484,
                       'MeanPositionValue': 326.6084146273183,
                       'MedianPositionValue': 315.62730930148734},
                      {'start': '2024-01-31T22:00:00',
                       'end': '2024-02-01T01:55:00',
                       'SR': -2.229205791806081,
                       'Sortino': -3.2016754530026477,
                       'Return': -129.80564351011623,
                       'AnnualReturn': -200442.0081572382,
                       'MaxDrawdown': 760.2251077519294,
                       'ReturnOverMDD': -0.17074632524827552,
                       'ReturnOverTrade': -0.0016416626709433938,
                       'NumberOfTrades': 626.0,
                       'DailyNumberOfTrades': 3835.9148936170213,
                       'TradingVolume': 1.8779999999999688,
                       'DailyTradingVolume': 11.507744680850873,
                       'TradingValue': 79069.61996980928,
                       'DailyTradingValue': 484511.7138575547,
                       'MaxPositionValue': 758.1664920421484,
                       'MeanPositionValue': 328.91424036454157,
                       'MedianPositionValue': 378.4789945940934}],
 'linear_raw_positions_only': [{'start': '2024-01-31T22:00:00',
                                'end': '2024-02-01T01:59:59',
                                'SR': 3.0956268111119414,
                                'Sortino': 4.384805977327975,
                                'Return': 251.42565660826799,
                                'AnnualReturn': 380181.9943190845,
                                'MaxDrawdown': 886.6495370408825,
                                'ReturnOverMDD': 0.28356824890179244,
                                'ReturnOverTrade': nan,
                                'NumberOfTrades': 626.0,
                                'DailyNumberOfTrades': 3756.260851448017,
                                'TradingVolume': 1.878,
                                'DailyTradingVolume': 11.268782554344051,
                                'TradingValue': nan,
                                'DailyTradingValue': nan,
                                'MaxPositionValue': 759.0878855957375,
                                'MeanPositionValue': nan,
                                'MedianPositionValue': 377.3609417615464}],
 'inverse_30s_positions_only_book': [{'start': '2024-01-31T22:00:00',
                                      'end': '2024-01-31T23:59:30',
                                      'SR': -5.6648745007010906,
                                      'Sortino': -7.98578610595203,
                                      'Return': -84.28069626534828,
                                      'AnnualReturn': -255931.2055294526,
                                      'MaxDrawdown': 294.9823978940389,
                                      'ReturnOverMDD': -0.2857143235225272,
                                      'ReturnOverTrade': nan,
                                      'NumberOfTrades': 313.0,
                                      'DailyNumberOfTrades': 3771.715481171548,
                                      'TradingVolume': 0.9390000000000003,
                                      'DailyTradingVolume': 11.315146443514648,
                                      'Turnover': nan,
                                      'DailyTurnover': nan,
                                      'MaxPositionValue': 757.7461505157102,
                                      'MeanPositionValue': 331.7481315757432,
                                      'MedianPositionValue': 377.5020850764463},
                                     {'start': '2024-02-01T00:00:00',
                                      'end': '2024-02-01T01:59:30',
                                      'SR': 5.438725345328709,
                                      'Sortino': 7.726483578184525,
                                      'Return': 83.1161431795128,
                                      'AnnualReturn': 252394.8622341557,
                                      'MaxDrawdown': 295.6406415057823,
                                      'ReturnOverMDD': 0.28113909764293066,
                                      'ReturnOverTrade': nan,
                                      'NumberOfTrades': 313.0,
                                      'DailyNumberOfTrades': 3771.715481171548,
                                      'TradingVolume': 0.9390000000000003,
                                      'DailyTradingVolume': 11.315146443514648,
                                      'Turnover': nan,
                                      'DailyTurnover': nan,
                                      'MaxPositionValue': 758.8620223553266,
                                      'MeanPositionValue': 320.7990996896275,
                                      'MedianPositionValue': 253.60688086362597},
                                     {'start': '2024-01-31T22:00:00',
                                      'end': '2024-02-01T01:59:30',
                                      'SR': 1.350698677470192,
                                      'Sortino': 1.9108759587840176,
                                      'Return': 40.767385203234674,
                                      'AnnualReturn': 61768.97178517662,
                                      'MaxDrawdown': 296.2786402821791,
                                      'ReturnOverMDD': 0.13759812440210795,
                                      'ReturnOverTrade': nan,
                                      'NumberOfTrades': 626.0,
                                      'DailyNumberOfTrades': 3763.8413361169105,
                                      'TradingVolume': 1.878,
                                      'DailyTradingVolume': 11.29152400835073,
                                      'Turnover': nan,
                                      'DailyTurnover': nan,
                                      'MaxPositionValue': 758.8620223553266,
                                      'MeanPositionValue': 326.27361563268533,
                                      'MedianPositionValue': 377.3490899670385}]}
# fmt: on


def run_case(stats_module, name: str) -> list[dict]:
    """Runs one case with the given `hftbacktest.stats` module (ours here, the reference in the golden script)."""
    kind, cs, totals, freq, part, book, metric_names = CASES[name]
    cls = stats_module.LinearAssetRecord if kind == "linear" else stats_module.InverseAssetRecord
    rec = cls(build_record(totals)).contract_size(cs).resample(freq)
    if part:
        rec = getattr(rec, part)()
    metrics = None if metric_names is None else [getattr(stats_module, m) for m in metric_names]
    kwargs = {} if book is None else {"book_size": book}
    return [{k: (v.isoformat() if hasattr(v, "isoformat") else float(v)) for k, v in row.items()}
            for row in rec.stats(metrics, **kwargs).splits]


@pytest.mark.parametrize("name", sorted(CASES))
def test_stats_match_reference(name):
    from hftbacktest import stats

    ours = run_case(stats, name)
    golden = GOLDEN[name]
    assert [list(r) for r in ours] == [list(r) for r in golden]  # same metric names, same order, same splits
    for got_row, want_row in zip(ours, golden):
        for key, want in want_row.items():
            got = got_row[key]
            if isinstance(want, str):
                assert got == want, key
            elif math.isnan(want):
                assert math.isnan(got), key
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=0.0), key
