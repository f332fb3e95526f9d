"""Binance USD-M WebSocket API (`ws://…/ws-fapi/v1`): signed order entry and account queries as JSON requests
on one connection (pages websocket-api-general-info, trade/websocket-api/New-Order, Cancel-Order, Modify-Order,
Query-Order, account/websocket-api/*, user-data-streams/Start-User-Data-Stream-Wsp).

Request `{"id", "method", "params"}`; signed methods carry `apiKey`, `timestamp` (optional `recvWindow`) and
`signature` = hex HMAC-SHA256 of the other params sorted by name and url-encoded as `k=v&…`. Reply
`{"id", "status", "result" | "error": {"code", "msg"}, "rateLimits": [...]}`. The same venue, limits and user
stream as REST: an order placed here is the same order over REST and pushes the same events.
"""
from __future__ import annotations

import logging

import orjson
from aiohttp import WSMsgType, web

from ..binance import signing
from .matching import ApiError
from .views import Call, account_body, balance_rows, book_ticker, position_rows, ticker_price

log = logging.getLogger("hftbacktest.emulator")


def _order_place(emu, account, params, call):
    emu._count_orders(account, 1, call.headers)
    return emu.venue.place_order(account, params)[1]


def _order_modify(emu, account, params, call):
    emu._count_orders(account, 1, call.headers)
    return emu.venue.modify_order(account, params)


def _listen_key(method: str):
    return lambda emu, account, params, call: emu._listen_key(method, account)


def _view(fn, path: str):
    return lambda emu, account, params, call: fn(emu, account, params, Call("GET", path, call.headers))


# method -> (weight, auth: "signed" | "key" | "none", handler(emu, account, params, call))
METHODS = {
    "order.place": (0, "signed", _order_place),
    "order.modify": (1, "signed", _order_modify),
    "order.cancel": (1, "signed", lambda emu, a, p, c: emu.venue.cancel_order(a, p)),
    "order.status": (1, "signed", lambda emu, a, p, c: emu.venue.query_order(a, p)),
    "account.status": (5, "signed", _view(account_body, "/fapi/v2/account")),
    "v2/account.status": (5, "signed", _view(account_body, "/fapi/v3/account")),
    "account.balance": (5, "signed", _view(balance_rows, "/fapi/v2/balance")),
    "v2/account.balance": (5, "signed", _view(balance_rows, "/fapi/v3/balance")),
    "account.position": (5, "signed", _view(position_rows, "/fapi/v2/positionRisk")),
    "v2/account.position": (5, "signed", _view(position_rows, "/fapi/v3/positionRisk")),
    "userDataStream.start": (1, "key", _listen_key("POST")),
    "userDataStream.ping": (1, "key", _listen_key("PUT")),
    "userDataStream.stop": (1, "key", _listen_key("DELETE")),
    "depth": (5, "none", lambda emu, a, p, c: emu._depth(p)),
    "ticker.price": (1, "none", _view(ticker_price, "/fapi/v1/ticker/price")),
    "ticker.book": (2, "none", _view(book_ticker, "/fapi/v1/ticker/bookTicker")),
}


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _account(emu, params: dict, signed: bool):
    key = params.get("apiKey")
    if not key:
        raise ApiError(-2014, "API-key format invalid.", 401)
    account = emu.venue.accounts.get(key)
    if account is None:
        raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    if signed:
        signature = params.get("signature")
        if not isinstance(signature, str) or not signature:
            raise ApiError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        if not signing.valid(account.secret, signing.ws_payload(params), signature):
            raise ApiError(-1022, "Signature for this request is not valid.")
        emu.check_timestamp(params)
    return account


def _rate_limits(emu, headers: dict) -> list[dict]:
    cfg = emu.config
    out = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": cfg.weight_limit,
            "count": emu._weight[1]}]
    if "X-MBX-ORDER-COUNT-10S" in headers:
        out += [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": cfg.order_limit_10s,
                 "count": int(headers["X-MBX-ORDER-COUNT-10S"])},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": cfg.order_limit_1m,
                 "count": int(headers["X-MBX-ORDER-COUNT-1M"])}]
    return out


def handle_request(emu, text: str) -> dict:
    """One request -> its reply (never raises)."""
    try:
        req = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"id": None, "status": 400, "error": {"code": -1102, "msg": "Invalid JSON request."}}
    if not isinstance(req, dict):
        return {"id": None, "status": 400, "error": {"code": -1102, "msg": "Invalid JSON request."}}
    rid, method, params = req.get("id"), req.get("method"), req.get("params", {})
    headers: dict = {}
    spec = METHODS.get(method)
    if spec is None or not isinstance(params, dict):
        return {"id": rid, "status": 400, "error": {"code": -1100 if spec else -1020,
                                                    "msg": f"Unknown method {method!r}." if spec is None
                                                    else "'params' must be an object."}}
    weight, auth, handler = spec
    limited = emu._rate_limit(weight)
    if limited is not None:
        return {"id": rid, "status": limited.status, "error": orjson.loads(limited.body),
                "rateLimits": _rate_limits(emu, headers)}
    try:
        account = _account(emu, params, auth == "signed") if auth != "none" else None
        args = {k: _text(v) for k, v in params.items() if k not in ("apiKey", "signature", "timestamp", "recvWindow")}
        result = handler(emu, account, args, Call("WS", method, headers))
    except ApiError as err:
        return {"id": rid, "status": err.http, "error": err.body(), "rateLimits": _rate_limits(emu, headers)}
    return {"id": rid, "status": 200, "result": result, "rateLimits": _rate_limits(emu, headers)}


async def serve(emu, request: web.Request) -> web.WebSocketResponse:
    """One WS API connection: requests are answered in order; server pings as on the streams."""
    ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
    await ws.prepare(request)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                reply = handle_request(emu, msg.data)
                if emu.faults.faults and emu.faults.fire("ws_api_drop") is not None:
                    await ws.close()  # executed, never answered: the client must find out by itself
                    break
                await ws.send_str(orjson.dumps(reply).decode())
    except ConnectionError:
        pass
    return ws
