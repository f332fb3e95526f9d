"""A symbol's trading rules as `GET /fapi/v1/exchangeInfo` lists them (market-data/rest-api/Exchange-Information):
decoded by the connector and the paper venue, encoded by the emulator."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .numbers import decimals_of, number


@dataclass(frozen=True)
class SymbolSpec:
    """Trading rules of one symbol (the filters PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE, MIN_NOTIONAL,
    PERCENT_PRICE, MAX_NUM_ORDERS and the precisions)."""

    symbol: str
    tick_size: float
    lot_size: float
    min_qty: float
    max_qty: float
    market_max_qty: float
    min_notional: float
    max_num_orders: int = 200
    percent_up: float = 1.05
    percent_down: float = 0.95
    base_asset: str = ""
    quote_asset: str = "USDT"
    price_precision: int | None = None  # exchangeInfo pricePrecision (may exceed the tick's decimals)
    qty_precision: int | None = None

    # cached: every order event prints several prices and quantities (the emulator's hot path)
    @cached_property
    def price_decimals(self) -> int:
        return decimals_of(self.tick_size) if self.price_precision is None else self.price_precision

    @cached_property
    def qty_decimals(self) -> int:
        return decimals_of(self.lot_size) if self.qty_precision is None else self.qty_precision

    def fmt_price(self, tick: int) -> str:
        """`tick` ticks as a price string (binance.numbers.fmt_steps, inlined)."""
        return f"{tick * self.tick_size:.{self.price_decimals}f}"

    def fmt_qty(self, lots: int) -> str:
        return f"{lots * self.lot_size:.{self.qty_decimals}f}"

    @classmethod
    def from_exchange_info(cls, row: dict) -> "SymbolSpec":
        """From one `symbols[]` entry; KeyError / ValueError when PRICE_FILTER or LOT_SIZE is missing or bad."""
        f = {x["filterType"]: x for x in row.get("filters", [])}
        lot = f["LOT_SIZE"]
        return cls(
            row["symbol"], number(f["PRICE_FILTER"]["tickSize"]), number(lot["stepSize"]), number(lot["minQty"]),
            number(lot["maxQty"]), number(f.get("MARKET_LOT_SIZE", lot)["maxQty"]),
            number(f.get("MIN_NOTIONAL", {}).get("notional", 0.0)),
            max_num_orders=int(f.get("MAX_NUM_ORDERS", {}).get("limit", 200)),
            percent_up=number(f.get("PERCENT_PRICE", {}).get("multiplierUp", 1.05)),
            percent_down=number(f.get("PERCENT_PRICE", {}).get("multiplierDown", 0.95)),
            base_asset=row.get("baseAsset", ""), quote_asset=row.get("quoteAsset", "USDT"),
            price_precision=row.get("pricePrecision"), qty_precision=row.get("quantityPrecision"))

    def filters(self) -> list[dict]:
        """The `filters` list of this symbol's exchangeInfo entry."""
        qty = lambda v: f"{v:.{self.qty_decimals}f}"  # noqa: E731
        return [
            {"filterType": "PRICE_FILTER", "minPrice": self.fmt_price(1), "maxPrice": "10000000",
             "tickSize": f"{self.tick_size:.{self.price_decimals}f}"},
            {"filterType": "LOT_SIZE", "minQty": qty(self.min_qty), "maxQty": qty(self.max_qty),
             "stepSize": qty(self.lot_size)},
            {"filterType": "MARKET_LOT_SIZE", "minQty": qty(self.min_qty), "maxQty": qty(self.market_max_qty),
             "stepSize": qty(self.lot_size)},
            {"filterType": "MAX_NUM_ORDERS", "limit": self.max_num_orders},
            {"filterType": "MIN_NOTIONAL", "notional": f"{self.min_notional:g}"},
            {"filterType": "PERCENT_PRICE", "multiplierUp": f"{self.percent_up:.4f}",
             "multiplierDown": f"{self.percent_down:.4f}", "multiplierDecimal": "4"},
        ]
