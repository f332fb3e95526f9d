"""Order properties (`cancellable`, `price`, ...) type correctly even when other numba code compiled before the
package was imported (the notebook flow: convert first, backtest next). Run in a fresh interpreter, since the
order of numba's typing registrations is per process."""
import subprocess
import sys
import textwrap
from pathlib import Path

CODE = textwrap.dedent('''
    import numpy as np
    from numba import njit

    rec = np.zeros(2, np.dtype([("price", "f8"), ("qty", "f8")]))

    @njit
    def touch_records(a):  # numba types record attributes before hftbacktest registers anything
        return a[0].price + a[1].qty

    touch_records(rec)

    from hftbacktest import GTC, LIMIT, BacktestAsset, HashMapMarketDepthBacktest
    from _engine_data import ask, bid, rows

    @njit
    def strategy(hbt):
        hbt.submit_buy_order(0, 1, 99.0, 1.0, GTC, LIMIT, True)
        it = hbt.orders(0).values()
        found = 0.0
        while it.has_next():
            o = it.get()
            if o.cancellable:
                found += o.price
        return found

    data = rows(bid(1000, 99.0, 5.0), ask(1000, 101.0, 5.0), bid(9000, 99.0, 4.0))
    asset = BacktestAsset().data([data]).tick_size(1.0).lot_size(1.0).constant_order_latency(10, 10)
    hbt = HashMapMarketDepthBacktest([asset])
    hbt.elapse(100)
    print("price of the cancellable order:", strategy(hbt))
''')


def test_order_properties_after_other_numba_code(tmp_path):
    unit = Path(__file__).parent
    out = subprocess.run([sys.executable, "-c", CODE], cwd=unit, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    # the order rests at 99 (below the ask) and is acknowledged before submit(wait=True) returns
    assert "price of the cancellable order: 99.0" in out.stdout
