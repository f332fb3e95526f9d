"""Names on the wire: event types, stream names and their routes, order enums (USD-M documentation pages are
named in each comment)."""
from __future__ import annotations

# --- event types (`e`) ------------------------------------------------------------------------------------
# websocket-market-streams/{Diff-Book-Depth-Streams, Trade-Streams, Individual-Symbol-Book-Ticker-Streams,
# Mark-Price-Stream, Aggregate-Trade-Streams, Kline-Candlestick-Streams, Individual-Symbol-Ticker-Streams,
# Individual-Symbol-Mini-Ticker-Stream, Liquidation-Order-Streams}
DEPTH_UPDATE = "depthUpdate"
TRADE = "trade"
BOOK_TICKER = "bookTicker"
MARK_PRICE_UPDATE = "markPriceUpdate"
AGG_TRADE = "aggTrade"
KLINE = "kline"
TICKER_24H = "24hrTicker"
MINI_TICKER_24H = "24hrMiniTicker"
FORCE_ORDER = "forceOrder"
# user-data-streams/{Event-Order-Update, Event-Trade-Lite, Event-Balance-and-Position-Update,
# Event-Order-Update "Account configuration update", Event-User-Data-Stream-Expired}
ORDER_TRADE_UPDATE = "ORDER_TRADE_UPDATE"
TRADE_LITE = "TRADE_LITE"
ACCOUNT_UPDATE = "ACCOUNT_UPDATE"
ACCOUNT_CONFIG_UPDATE = "ACCOUNT_CONFIG_UPDATE"
LISTEN_KEY_EXPIRED = "listenKeyExpired"

# `X` of a trade event: only MARKET prints are trades between users (INSURANCE_FUND, ADL, NA are not).
MARKET_TRADE = "MARKET"


def is_market_trade(msg: dict) -> bool:
    return msg.get("X", MARKET_TRADE) == MARKET_TRADE


# --- stream names and routes (websocket-market-streams/Connect) -------------------------------------------
# `<symbol>@depth[@<speed>]`: update speed suffix -> interval in ms ("" is the 250 ms default).
DEPTH_INTERVALS = {"0ms": 0, "100ms": 100, "": 250, "250ms": 250, "500ms": 500}
# Binance routes USD-M streams by path: `/public` high-frequency book data, `/market` everything else,
# `/private` user data; an unrouted connection (`/ws`, `/stream`) gets the public streams.
PUBLIC_KINDS = ("depth", "bookTicker", "trade", "rpiDepth")


def stream_route(name: str) -> str:
    """The routed endpoint (`public` / `market`) a market stream belongs to."""
    kind = name.partition("@")[2].partition("@")[0]
    return "public" if kind.startswith(("depth", "rpiDepth")) or kind in PUBLIC_KINDS else "market"


def routed_url(stream_url: str, route: str) -> str:
    """The `/<route>/ws` URL on the host of `stream_url` (`wss://fstream.binance.com/ws`, `.../stream?...` or an
    already routed `.../public/ws`): e.g. the user stream's `/private/ws`."""
    base = stream_url.split("?", 1)[0].rstrip("/")
    for tail in ("/ws", "/stream"):
        if base.endswith(tail):
            base = base[: -len(tail)]
            break
    for prefix in ("/public", "/market", "/private"):
        if base.endswith(prefix):
            base = base[: -len(prefix)]
            break
    return f"{base}/{route}/ws"


def normalize_stream(name: str) -> str:
    """Stream names have a lowercase symbol and a case-sensitive type (`aggTrade`, `bookTicker`, ...); all-market
    streams (`!forceOrder@arr`) are taken as written."""
    if name.startswith("!"):
        return name
    symbol, sep, rest = name.partition("@")
    return symbol.lower() + sep + rest if sep else name


# --- order enums (common-definition) ----------------------------------------------------------------------
SIDES = ("BUY", "SELL")
ORDER_STATUSES = ("NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH")
OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX", "GTD")
ORDER_TYPES = ("LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
# Since the move of conditional orders to the Algo Order API (trade/rest-api/New-Algo-Order) the order
# endpoints refuse these with -4120.
CONDITIONAL_TYPES = ORDER_TYPES[2:]
# Client ids of the orders Binance itself places on an account (user-data-streams/Event-Order-Update, "special
# client order id"): liquidation, auto-deleveraging, settlement and delivery closes.
EXCHANGE_ORDER_PREFIXES = ("autoclose-", "adl_autoclose", "settlement_autoclose-", "delivery_autoclose-")
