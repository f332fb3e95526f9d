"""Decimal fields. Binance sends prices and quantities as JSON strings ("61234.10"), and takes them back as
strings printed with at most the symbol's precision (market-data/rest-api/Exchange-Information: tickSize,
stepSize, pricePrecision, quantityPrecision)."""
from __future__ import annotations

from decimal import Decimal
from functools import lru_cache


def number(text) -> float:
    """A decimal field as a float: Python's correctly rounded `float()`, which the converter's compiled parser
    (data/_parse.py) matches digit for digit. JSON numbers pass through. Non-finite values are left for the
    caller to judge (the converter reports them, the venue rejects them)."""
    return float(text)


@lru_cache(maxsize=256)
def decimals_of(step: float) -> int:
    """Decimals needed to print multiples of `step` exactly (0.1 -> 1, 0.001 -> 3, 1 -> 0, 1e-8 -> 8)."""
    return max(0, -int(Decimal(repr(float(step))).normalize().as_tuple().exponent))


def decimals_in(text: str) -> int:
    """Significant decimals written in a decimal string ("0.0100" -> 2), the precision Binance checks (-1111)."""
    _, dot, frac = text.partition(".")
    return len(frac.rstrip("0")) if dot else 0


def to_steps(text, step: float) -> int:
    """A decimal field as a whole number of `step`s (ticks or lots), rounded to the nearest."""
    return int(round(float(text) / step))


def on_step(value: float, step: float) -> bool:
    """`value` is a multiple of `step` up to float noise (what PRICE_FILTER / LOT_SIZE accept)."""
    return abs(round(value / step) * step - value) <= step * 1e-6


def fmt_steps(steps: int, step: float, decimals: int | None = None) -> str:
    """`steps` multiples of `step` printed with `decimals` (default: the step's own), never in scientific form."""
    return f"{steps * step:.{decimals_of(step) if decimals is None else decimals}f}"


def format_step(value: float, step: float) -> str:
    """`value` rounded to a multiple of `step` and printed with exactly the step's decimals."""
    return fmt_steps(round(value / step), step)


def money(value: float) -> str:
    """An amount of the margin asset (balances, fees, PnL), printed as Binance does: 8 decimals."""
    return f"{value:.8f}"
