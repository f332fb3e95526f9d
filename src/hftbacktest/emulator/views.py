"""Binance USD-M REST endpoints beyond order entry: market data, account views and history, account settings.

Every payload follows the Binance page named above its function (base
https://developers.binance.com/docs/derivatives/usds-margined-futures/). Numbers are strings, ids and times
integers, as there. `ROUTES` maps `(method, path)` to `(weight, auth, handler)`; the server dispatches through it.
Handlers take `(emu, account, params, call)`; `account` is None for public endpoints.
"""
from __future__ import annotations

from typing import NamedTuple

from .market import ASK, BID
from ..binance import wire
from ..binance.numbers import money
from .matching import ACTIVE, NO_SUCH_ORDER, ApiError, Position
from .tape import INTERVAL_MS

MAINT_MARGIN_RATIO = 0.004  # the first bracket of BTCUSDT; one bracket per symbol (see notionalCap)
NOTIONAL_CAP = 1_000_000  # positionRisk's maxNotionalValue; not enforced
DAY_MS = 86_400_000
FUNDING_RATE = "0.00010000"  # constant, published in markPriceUpdate / premiumIndex, never charged


class Call(NamedTuple):
    method: str
    path: str
    headers: dict  # reply headers (order-count limits)


def _symbol(emu, params, required: bool = True):
    name = params.get("symbol")
    if not name:
        if required:
            raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        return None
    st = emu.streams.get(name.upper())
    if st is None:
        raise ApiError(-1121, "Invalid symbol.")
    return st


def _int(params, name: str, default=None, lo=None, hi=None):
    text = params.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ApiError(-1130, f"Data sent for parameter '{name}' is not valid.")
    return value


def _streams(emu, params):
    st = _symbol(emu, params, required=False)
    return [st] if st else list(emu.streams.values())


def _one_or_all(params, rows):
    return rows[0] if params.get("symbol") else rows


# -- market data -----------------------------------------------------------------------------------------------
# market-data/rest-api/Recent-Trades-List and Old-Trades-Lookup
def trades(emu, account, params, call):
    st = _symbol(emu, params)
    limit = _int(params, "limit", 500, 1, 1000)
    spec, unit = st.market.spec, st.tape.unit
    rows = list(st.tape.trades)
    from_id = _int(params, "fromId")
    if from_id is not None:
        rows = [t for t in rows if t[0] >= from_id][:limit]
    else:
        rows = rows[-limit:]
    return [{"id": t, "price": spec.fmt_price(px), "qty": spec.fmt_qty(q), "quoteQty": money(px * q * unit),
             "time": ms, "isBuyerMaker": m, "isRPITrade": False} for t, px, q, ms, m in rows]


# market-data/rest-api/Compressed-Aggregate-Trades-List (every replayed trade is its own aggregate)
def agg_trades(emu, account, params, call):
    st = _symbol(emu, params)
    limit = _int(params, "limit", 500, 1, 1000)
    start, end, from_id = _int(params, "startTime"), _int(params, "endTime"), _int(params, "fromId")
    if start is not None and end is not None and end - start > 3_600_000:
        raise ApiError(-1127, "More than 1 hours between startTime and endTime.")
    rows = [t for t in st.tape.trades if (from_id is None or t[0] >= from_id)
            and (start is None or t[3] >= start) and (end is None or t[3] <= end)]
    rows = rows[:limit] if from_id is not None or start is not None else rows[-limit:]
    spec = st.market.spec
    return [{"a": t, "p": spec.fmt_price(px), "q": spec.fmt_qty(q), "nq": spec.fmt_qty(q), "f": t, "l": t,
             "T": ms, "m": m} for t, px, q, ms, m in rows]


def kline_row(spec, c, interval_ms: int) -> list:
    return [c.open_ms, spec.fmt_price(c.open), spec.fmt_price(c.high), spec.fmt_price(c.low), spec.fmt_price(c.close),
            spec.fmt_qty(c.volume), c.open_ms + interval_ms - 1, f"{c.quote:.8f}", c.count, spec.fmt_qty(c.taker_buy),
            f"{c.taker_buy_quote:.8f}", "0"]


# market-data/rest-api/Kline-Candlestick-Data (also served for continuousKlines: trade prices)
def klines(emu, account, params, call):
    st = _symbol(emu, {"symbol": params.get("symbol") or params.get("pair")})
    interval = params.get("interval")
    if interval not in INTERVAL_MS:
        raise ApiError(-1120, "Invalid interval.")
    limit = _int(params, "limit", 500, 1, 1500)
    ms = INTERVAL_MS[interval]
    candles = st.tape.candles(ms, _int(params, "startTime"), _int(params, "endTime"), limit)
    return [kline_row(st.market.spec, c, ms) for c in candles]


def ticker_24h_row(emu, st) -> dict:
    spec, now = st.market.spec, emu.now_ms()
    c = st.tape.window(now)
    last = st.tape.last()
    if c is None:
        zero_px = spec.fmt_price(0)
        return {"symbol": spec.symbol, "priceChange": zero_px, "priceChangePercent": "0.000",
                "weightedAvgPrice": zero_px, "lastPrice": zero_px, "lastQty": spec.fmt_qty(0), "openPrice": zero_px,
                "highPrice": zero_px, "lowPrice": zero_px, "volume": spec.fmt_qty(0), "quoteVolume": "0",
                "openTime": now - DAY_MS, "closeTime": now, "firstId": -1, "lastId": -1, "count": 0}
    change = (c.close - c.open) * spec.tick_size
    vwap = c.quote / (c.volume * spec.lot_size) if c.volume else 0.0
    return {"symbol": spec.symbol, "priceChange": f"{change:.{spec.price_decimals}f}",
            "priceChangePercent": f"{100 * (c.close - c.open) / c.open if c.open else 0.0:.3f}",
            "weightedAvgPrice": f"{vwap:.{spec.price_decimals}f}", "lastPrice": spec.fmt_price(last[1]),
            "lastQty": spec.fmt_qty(last[2]), "openPrice": spec.fmt_price(c.open), "highPrice": spec.fmt_price(c.high),
            "lowPrice": spec.fmt_price(c.low), "volume": spec.fmt_qty(c.volume), "quoteVolume": f"{c.quote:.2f}",
            "openTime": max(c.open_ms, now - DAY_MS), "closeTime": now, "firstId": c.first_id, "lastId": c.last_id,
            "count": c.count}


# market-data/rest-api/24hr-Ticker-Price-Change-Statistics
def ticker_24h(emu, account, params, call):
    return _one_or_all(params, [ticker_24h_row(emu, st) for st in _streams(emu, params)])


def _last_tick(st) -> int:
    last = st.tape.last()
    if last is not None:
        return last[1]
    mid = st.market.book.mid_tick()
    return int(mid) if mid is not None else 0


# market-data/rest-api/Symbol-Price-Ticker (v1 and v2)
def ticker_price(emu, account, params, call):
    now = emu.now_ms()
    return _one_or_all(params, [{"symbol": st.market.spec.symbol, "price": st.market.spec.fmt_price(_last_tick(st)),
                                 "time": now} for st in _streams(emu, params)])


# market-data/rest-api/Symbol-Order-Book-Ticker
def book_ticker(emu, account, params, call):
    now, rows = emu.now_ms(), []
    for st in _streams(emu, params):
        spec, book = st.market.spec, st.market.book
        bid, ask = book.best_bid or 0, book.best_ask or 0
        rows.append({"symbol": spec.symbol, "bidPrice": spec.fmt_price(bid), "bidQty": spec.fmt_qty(book.qty(BID, bid)),
                     "askPrice": spec.fmt_price(ask), "askQty": spec.fmt_qty(book.qty(ASK, ask)), "time": now,
                     "lastUpdateId": st.last_u})
    return _one_or_all(params, rows)


def next_funding_ms(ms: int) -> int:
    return (ms // 28_800_000 + 1) * 28_800_000


# market-data/rest-api/Mark-Price (mark = index = mid; the funding rate is constant and never charged)
def premium_index(emu, account, params, call):
    now, rows = emu.now_ms(), []
    for st in _streams(emu, params):
        mark = money(st.market.mark_price())
        rows.append({"symbol": st.market.spec.symbol, "markPrice": mark, "indexPrice": mark,
                     "estimatedSettlePrice": mark, "lastFundingRate": FUNDING_RATE, "interestRate": "0.00010000",
                     "nextFundingTime": next_funding_ms(now), "time": now})
    return _one_or_all(params, rows)


# market-data/rest-api/Get-Funding-Rate-History: no funding was ever settled on the emulator
def funding_rate(emu, account, params, call):
    _symbol(emu, params, required=False)
    _int(params, "limit", 100, 1, 1000)
    return []


# market-data/rest-api/Get-Funding-Rate-Info: only symbols with adjusted caps/floors are listed (none here)
def funding_info(emu, account, params, call):
    return []


# market-data/rest-api/Open-Interest: the emulator's accounts' open positions (the replay has no OI feed)
def open_interest(emu, account, params, call):
    st = _symbol(emu, params)
    spec = st.market.spec
    lots = sum(max(0, a.positions.get(spec.symbol, Position()).lots) for a in emu.venue.accounts.values())
    return {"openInterest": spec.fmt_qty(lots), "symbol": spec.symbol, "time": emu.now_ms()}


# -- account views ---------------------------------------------------------------------------------------------
def _margins(venue, account):
    """Per symbol: (position notional at mark, position initial margin, open-order initial margin, maint margin)."""
    out = {}
    for sym, market in venue.markets.items():
        spec = market.spec
        lev = account.leverage.get(sym, venue.default_leverage)
        pos = account.positions.get(sym) or Position()
        mark = market.mark_price() or pos.entry
        notional = pos.lots * spec.lot_size * mark
        orders = sum(o.leaves * spec.lot_size * o.price_tick * spec.tick_size for o in account.open_orders(sym))
        bid = sum(o.leaves * spec.lot_size * o.price_tick * spec.tick_size for o in account.open_orders(sym)
                  if o.side == BID)
        out[sym] = {"notional": notional, "pim": abs(notional) / lev, "oim": orders / lev,
                    "mm": abs(notional) * MAINT_MARGIN_RATIO, "lev": lev, "bid": bid, "ask": orders - bid}
    return out


# trade/rest-api/Position-Information-V2 and -V3 (one-way mode, cross margin)
def position_rows(emu, account, params, call):
    st = _symbol(emu, params, required=False)
    venue, v3 = emu.venue, call.path.startswith("/fapi/v3/")
    margins = _margins(venue, account)
    rows = []
    for sym, market in venue.markets.items():
        if st is not None and sym != st.market.spec.symbol:
            continue
        spec, m = market.spec, margins[sym]
        pos = account.positions.get(sym) or Position()
        if v3 and pos.lots == 0 and st is None:
            continue  # v3 lists only symbols with a position or open orders
        row = {"symbol": sym, "positionSide": "BOTH", "positionAmt": spec.fmt_qty(pos.lots),
               "entryPrice": money(pos.entry), "breakEvenPrice": money(pos.entry),
               "markPrice": money(market.mark_price()), "unRealizedProfit": money(venue._upnl(account, sym)),
               "liquidationPrice": "0", "isolatedMargin": "0", "notional": money(m["notional"]),
               "isolatedWallet": "0", "updateTime": pos.update_time}
        if v3:
            row.update({"marginAsset": "USDT", "initialMargin": money(m["pim"] + m["oim"]),
                        "maintMargin": money(m["mm"]), "positionInitialMargin": money(m["pim"]),
                        "openOrderInitialMargin": money(m["oim"]), "adl": 0, "bidNotional": money(m["bid"]),
                        "askNotional": money(m["ask"])})
        else:
            row.update({"leverage": str(m["lev"]), "maxNotionalValue": str(NOTIONAL_CAP), "marginType": "cross",
                        "isAutoAddMargin": "false"})
        rows.append(row)
    return rows


def _totals(venue, account):
    margins = _margins(venue, account)
    upnl = sum(venue._upnl(account, s) for s in venue.markets)
    avail = venue.available_balance(account)
    pim = sum(m["pim"] for m in margins.values())
    oim = sum(m["oim"] for m in margins.values())
    mm = sum(m["mm"] for m in margins.values())
    return margins, upnl, avail, pim, oim, mm


# account/rest-api/Account-Information-V2 and -V3
def account_body(emu, account, params, call):
    venue, v3 = emu.venue, call.path.startswith("/fapi/v3/")
    margins, upnl, avail, pim, oim, mm = _totals(venue, account)
    wallet = account.balance
    asset = {"asset": "USDT", "walletBalance": money(wallet), "unrealizedProfit": money(upnl),
             "marginBalance": money(wallet + upnl), "maintMargin": money(mm), "initialMargin": money(pim + oim),
             "positionInitialMargin": money(pim), "openOrderInitialMargin": money(oim),
             "crossWalletBalance": money(wallet), "crossUnPnl": money(upnl), "availableBalance": money(avail),
             "maxWithdrawAmount": money(max(0.0, avail)), "updateTime": account.update_time}
    body = {"totalInitialMargin": money(pim + oim), "totalMaintMargin": money(mm), "totalWalletBalance": money(wallet),
            "totalUnrealizedProfit": money(upnl), "totalMarginBalance": money(wallet + upnl),
            "totalPositionInitialMargin": money(pim), "totalOpenOrderInitialMargin": money(oim),
            "totalCrossWalletBalance": money(wallet), "totalCrossUnPnl": money(upnl),
            "availableBalance": money(avail), "maxWithdrawAmount": money(max(0.0, avail)), "assets": [asset]}
    positions = []
    for sym, market in venue.markets.items():
        spec, m = market.spec, margins[sym]
        pos = account.positions.get(sym) or Position()
        row = {"symbol": sym, "positionSide": "BOTH", "positionAmt": spec.fmt_qty(pos.lots),
               "unrealizedProfit": money(venue._upnl(account, sym)), "notional": money(m["notional"]),
               "initialMargin": money(m["pim"] + m["oim"]), "maintMargin": money(m["mm"]),
               "updateTime": pos.update_time}
        if v3:
            if pos.lots == 0:
                continue  # v3 lists only symbols with a position
            row.update({"isolatedMargin": "0", "isolatedWallet": "0"})
        else:
            row.update({"positionInitialMargin": money(m["pim"]), "openOrderInitialMargin": money(m["oim"]),
                        "leverage": str(m["lev"]), "isolated": False, "entryPrice": money(pos.entry),
                        "breakEvenPrice": money(pos.entry), "maxNotional": str(NOTIONAL_CAP),
                        "bidNotional": money(m["bid"]), "askNotional": money(m["ask"])})
        positions.append(row)
    body["positions"] = positions
    if not v3:
        asset["marginAvailable"] = True
        body = {"feeTier": 0, "feeBurn": False, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1, **body}
    return body


# account/rest-api/Futures-Account-Balance-V2 and -V3
def balance_rows(emu, account, params, call):
    _, upnl, avail, _, _, _ = _totals(emu.venue, account)
    return [{"accountAlias": "SgsR", "asset": "USDT", "balance": money(account.balance),
             "crossWalletBalance": money(account.balance), "crossUnPnl": money(upnl),
             "availableBalance": money(avail), "maxWithdrawAmount": money(max(0.0, avail)),
             "marginAvailable": True, "updateTime": account.update_time}]


# account/rest-api/User-Commission-Rate
def commission_rate(emu, account, params, call):
    st = _symbol(emu, params)
    return {"symbol": st.market.spec.symbol, "makerCommissionRate": f"{account.maker_fee:.6f}",
            "takerCommissionRate": f"{account.taker_fee:.6f}", "rpiCommissionRate": f"{account.maker_fee:.6f}"}


# account/rest-api/Notional-and-Leverage-Brackets (one bracket per symbol)
def leverage_bracket(emu, account, params, call):
    rows = [{"symbol": st.market.spec.symbol, "notionalCoef": 1.0, "brackets": [
        {"bracket": 1, "initialLeverage": 125, "notionalCap": NOTIONAL_CAP, "notionalFloor": 0,
         "maintMarginRatio": MAINT_MARGIN_RATIO, "cum": 0}]} for st in _streams(emu, params)]
    return _one_or_all(params, rows)


# trade/rest-api/Change-Initial-Leverage
def set_leverage(emu, account, params, call):
    st = _symbol(emu, params)
    lev = _int(params, "leverage")
    if lev is None:
        raise ApiError(-1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.")
    if not 1 <= lev <= 125:
        raise ApiError(-4028, f"Leverage {lev} is not valid")
    symbol = st.market.spec.symbol
    account.leverage[symbol] = lev
    # user-data-streams/Event-Account-Configuration-Update-previous-Leverage-Update
    now = emu.venue.now_ms()
    emu.venue.notify(account, {"e": wire.ACCOUNT_CONFIG_UPDATE, "E": now, "T": now, "ac": {"s": symbol, "l": lev}})
    return {"leverage": lev, "maxNotionalValue": str(NOTIONAL_CAP), "symbol": symbol}


# trade/rest-api/Change-Margin-Type: cross margin only
def margin_type(emu, account, params, call):
    _symbol(emu, params)
    kind = params.get("marginType", "")
    if kind not in ("ISOLATED", "CROSSED"):
        raise ApiError(-1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or malformed.")
    if kind == "CROSSED":
        raise ApiError(-4046, "No need to change margin type.")
    # Binance's own refusal of isolated margin (in Multi-Assets mode); here: cross margin only
    raise ApiError(-4168, "Unable to adjust to isolated-margin mode: the emulator supports cross margin only.")


# trade/rest-api/Change-Position-Mode and Get-Current-Position-Mode: one-way mode only
def position_mode(emu, account, params, call):
    if call.method == "GET":
        return {"dualSidePosition": False}
    value = params.get("dualSidePosition", "").lower()
    if value not in ("true", "false"):
        raise ApiError(-1102, "Mandatory parameter 'dualSidePosition' was not sent, was empty/null, or malformed.")
    if value == "false":
        raise ApiError(-4059, "No need to change position side.")
    raise ApiError(-1000, "The emulator supports one-way mode only (hedge mode is not available).")


# -- order and trade history -------------------------------------------------------------------------------------
def _time_range(params, default_days: int = 7):
    start, end = _int(params, "startTime"), _int(params, "endTime")
    if start is not None and end is not None and end - start > default_days * DAY_MS:
        raise ApiError(-1127, f"More than {default_days} days between startTime and endTime.")
    return start, end


# trade/rest-api/All-Orders
def all_orders(emu, account, params, call):
    st = _symbol(emu, params)
    limit = _int(params, "limit", 500, 1, 1000)
    start, end = _time_range(params)
    from_id = _int(params, "orderId")
    orders = [o for o in account.orders.values() if o.spec is st.market.spec
              and (from_id is None or o.order_id >= from_id)
              and (start is None or o.time >= start) and (end is None or o.time <= end)]
    orders = orders[:limit] if from_id is not None or start is not None else orders[-limit:]
    return [o.rest_body(with_time=True) for o in orders]


# trade/rest-api/Query-Current-Open-Order
def open_order(emu, account, params, call):
    order = emu.venue.find_order(account, params, NO_SUCH_ORDER)
    if order.status not in ACTIVE:
        raise ApiError(*NO_SUCH_ORDER)
    return order.rest_body(with_time=True)


def _fills(account, symbol: str | None = None):
    return [e for e in account.ledger if e["event"] == "TRADE" and (symbol is None or e["symbol"] == symbol)]


# trade/rest-api/Account-Trade-List
def user_trades(emu, account, params, call):
    st = _symbol(emu, params)
    spec = st.market.spec
    limit = _int(params, "limit", 500, 1, 1000)
    start, end = _time_range(params)
    from_id, order_id = _int(params, "fromId"), _int(params, "orderId")
    if from_id is not None and (start is not None or end is not None):
        raise ApiError(-4133, "fromId cannot be sent with startTime or endTime.")
    rows = [e for e in _fills(account, spec.symbol) if (order_id is None or e["orderId"] == order_id)
            and (from_id is None or e["tradeId"] >= from_id)
            and (start is None or e["time"] >= start) and (end is None or e["time"] <= end)]
    rows = rows[:limit] if from_id is not None or start is not None else rows[-limit:]
    return [{"buyer": e["side"] == "BUY", "commission": money(e["fee"]), "commissionAsset": "USDT",
             "id": e["tradeId"], "maker": e["maker"], "orderId": e["orderId"], "price": spec.fmt_price(
                 round(e["lastPrice"] / spec.tick_size)), "qty": spec.fmt_qty(round(e["lastQty"] / spec.lot_size)),
             "quoteQty": money(e["lastPrice"] * e["lastQty"]), "realizedPnl": money(e["realizedPnl"]),
             "side": e["side"], "positionSide": "BOTH", "symbol": spec.symbol, "time": e["time"]} for e in rows]


# account/rest-api/Get-Income-History (REALIZED_PNL and COMMISSION of every fill; nothing else happens here)
def income(emu, account, params, call):
    st = _symbol(emu, params, required=False)
    kind = params.get("incomeType")
    limit = _int(params, "limit", 100, 1, 1000)
    start, end = _time_range(params, 200)
    rows = []
    for e in _fills(account, st.market.spec.symbol if st else None):
        if (start is not None and e["time"] < start) or (end is not None and e["time"] > end):
            continue
        for income_type, amount in (("REALIZED_PNL", e["realizedPnl"]), ("COMMISSION", -e["fee"])):
            if amount and kind in (None, income_type):
                rows.append({"symbol": e["symbol"], "incomeType": income_type, "income": money(amount),
                             "asset": "USDT", "info": income_type, "time": e["time"],
                             "tranId": e["seq"] * 2 + (income_type == "COMMISSION"), "tradeId": str(e["tradeId"])})
    return rows[:limit] if start is not None else rows[-limit:]


# trade/rest-api/Get-Order-Modify-History
def order_amendments(emu, account, params, call):
    st = _symbol(emu, params)
    order = emu.venue.find_order(account, params, NO_SUCH_ORDER)
    limit = _int(params, "limit", 50, 1, 100)
    spec = st.market.spec
    rows = [{"amendmentId": e["seq"], "symbol": spec.symbol, "pair": spec.symbol, "orderId": order.order_id,
             "clientOrderId": order.client_id, "time": e["time"], "amendment": {
                 "price": {"before": e["priceBefore"], "after": spec.fmt_price(round(e["price"] / spec.tick_size))},
                 "origQty": {"before": e["qtyBefore"], "after": spec.fmt_qty(round(e["qty"] / spec.lot_size))},
                 "count": e["amendmentCount"]}}
            for e in account.ledger if e["event"] == "AMENDMENT" and e["orderId"] == order.order_id]
    return rows[::-1][:limit]  # newest first


# -- multi-order requests ----------------------------------------------------------------------------------------
def _json_list(params, name: str, limit: int, kind):
    import orjson

    raw = params.get(name)
    try:
        values = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        values = None
    if not isinstance(values, list) or not values or not all(isinstance(v, kind) and not isinstance(v, bool)
                                                            for v in values):
        raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    if len(values) > limit:
        raise ApiError(-4080 if name == "batchOrders" else -1130,
                       f"The number of {name} exceeds the limit of {limit}.")
    return values


# trade/rest-api/Cancel-Multiple-Orders
def cancel_batch(emu, account, params, call):
    symbol = _symbol(emu, params).market.spec.symbol
    for name in ("orderIdList", "origClientOrderIdList"):  # Binance also takes the lowercase names (ccxt sends them)
        if name.lower() in params and name not in params:
            params[name] = params.pop(name.lower())
    if params.get("orderIdList"):
        refs = [{"orderId": str(i)} for i in _json_list(params, "orderIdList", 10, int)]
    else:
        refs = [{"origClientOrderId": c} for c in _json_list(params, "origClientOrderIdList", 10, str)]
    out = []
    for ref in refs:
        try:
            out.append(emu.venue.cancel_order(account, {"symbol": symbol, **ref}))
        except ApiError as err:
            out.append(err.body())
    return out


# trade/rest-api/Modify-Multiple-Orders
def modify_batch(emu, account, params, call):
    orders = _json_list(params, "batchOrders", 5, dict)
    emu._count_orders(account, len(orders), call.headers)
    out = []
    for o in orders:
        try:
            out.append(emu.venue.modify_order(account, {k: str(v) for k, v in o.items()}))
        except ApiError as err:
            out.append(err.body())
    return out


# trade/rest-api/Auto-Cancel-All-Open-Orders (countdownCancelAll; the emulator checks the timer every 50 ms)
def countdown_cancel_all(emu, account, params, call):
    symbol = _symbol(emu, params).market.spec.symbol
    countdown = _int(params, "countdownTime")
    if countdown is None:
        raise ApiError(-1102, "Mandatory parameter 'countdownTime' was not sent, was empty/null, or malformed.")
    if countdown and countdown < 1000:
        raise ApiError(-1130, "Data sent for parameter 'countdownTime' is not valid.")
    key = (account.api_key, symbol)
    if countdown == 0:
        emu.countdowns.pop(key, None)
    else:
        emu.countdowns[key] = emu.now_ms() + countdown
    return {"symbol": symbol, "countdownTime": str(countdown)}


def fire_countdowns(emu) -> None:
    now = emu.now_ms()
    for (api_key, symbol), deadline in list(emu.countdowns.items()):
        if now >= deadline:
            del emu.countdowns[(api_key, symbol)]
            account = emu.venue.accounts.get(api_key)
            if account is not None:
                emu.venue.cancel_all(account, {"symbol": symbol})


# (method, path) -> (weight, auth, handler); auth: "none" public, "signed" HMAC-signed
ROUTES = {
    ("GET", "/fapi/v1/trades"): (5, "none", trades),
    ("GET", "/fapi/v1/historicalTrades"): (20, "none", trades),
    ("GET", "/fapi/v1/aggTrades"): (20, "none", agg_trades),
    ("GET", "/fapi/v1/klines"): (5, "none", klines),
    ("GET", "/fapi/v1/continuousKlines"): (5, "none", klines),
    ("GET", "/fapi/v1/ticker/24hr"): (1, "none", ticker_24h),
    ("GET", "/fapi/v1/ticker/price"): (1, "none", ticker_price),
    ("GET", "/fapi/v2/ticker/price"): (1, "none", ticker_price),
    ("GET", "/fapi/v1/ticker/bookTicker"): (2, "none", book_ticker),
    ("GET", "/fapi/v1/premiumIndex"): (1, "none", premium_index),
    ("GET", "/fapi/v1/fundingRate"): (1, "none", funding_rate),
    ("GET", "/fapi/v1/fundingInfo"): (1, "none", funding_info),
    ("GET", "/fapi/v1/openInterest"): (1, "none", open_interest),
    ("GET", "/fapi/v2/positionRisk"): (5, "signed", position_rows),
    ("GET", "/fapi/v3/positionRisk"): (5, "signed", position_rows),
    ("GET", "/fapi/v2/account"): (5, "signed", account_body),
    ("GET", "/fapi/v3/account"): (5, "signed", account_body),
    ("GET", "/fapi/v2/balance"): (5, "signed", balance_rows),
    ("GET", "/fapi/v3/balance"): (5, "signed", balance_rows),
    ("GET", "/fapi/v1/commissionRate"): (20, "signed", commission_rate),
    ("GET", "/fapi/v1/leverageBracket"): (1, "signed", leverage_bracket),
    ("POST", "/fapi/v1/leverage"): (1, "signed", set_leverage),
    ("POST", "/fapi/v1/marginType"): (1, "signed", margin_type),
    ("GET", "/fapi/v1/positionSide/dual"): (30, "signed", position_mode),
    ("POST", "/fapi/v1/positionSide/dual"): (1, "signed", position_mode),
    ("GET", "/fapi/v1/allOrders"): (5, "signed", all_orders),
    ("GET", "/fapi/v1/openOrder"): (1, "signed", open_order),
    ("GET", "/fapi/v1/userTrades"): (5, "signed", user_trades),
    ("GET", "/fapi/v1/income"): (30, "signed", income),
    ("GET", "/fapi/v1/orderAmendment"): (1, "signed", order_amendments),
    ("DELETE", "/fapi/v1/batchOrders"): (1, "signed", cancel_batch),
    ("POST", "/fapi/v1/countdownCancelAll"): (10, "signed", countdown_cancel_all),
    ("PUT", "/fapi/v1/batchOrders"): (5, "signed", modify_batch),
}
