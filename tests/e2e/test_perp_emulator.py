"""The live bot's mark price end to end: emulator `markPrice@1s` stream -> connector -> LiveBot.mark_price."""
from __future__ import annotations

import math
import os
import time

import pytest
from test_live_emulator import _bot, _start_venue, _stop_venue

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_mark_price_reaches_the_live_bot(tmp_path):
    venue = _start_venue(tmp_path, f"perp{os.getpid()}")
    errors = []
    try:
        hbt = _bot(venue, errors)
        try:
            deadline = time.monotonic() + 60
            ready = lambda: not math.isnan(hbt.mark_price(0)) and math.isfinite(hbt.depth(0).best_bid) \
                and math.isfinite(hbt.depth(0).best_ask)
            while not ready() and time.monotonic() < deadline:
                hbt.elapse(100_000_000)
            assert ready(), "no mark price and book within 60 s"
            mark, depth = hbt.mark_price(0), hbt.depth(0)
            # the emulator's mark is its market's mid of up to a second ago (the market moves ~$6 per sqrt(s))
            assert abs(mark - (depth.best_bid + depth.best_ask) / 2) < 50.0, (mark, depth.best_bid, depth.best_ask)
            assert hbt.funding(0) == 0.0  # the emulator charges no funding
        finally:
            hbt.close()
    finally:
        _stop_venue(venue)
