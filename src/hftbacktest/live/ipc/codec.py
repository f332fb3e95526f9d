"""Little-endian wire codec for bot <-> connector messages (our own format, no Rust compatibility needed).

Every payload starts with a version byte and a one-byte tag. Strings are `u16 length + utf-8`.
A feed event is the 64-byte backtest event row and an order the fields of the backtest order record,
so both sides can copy them straight into numpy arrays.
"""
from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any, NamedTuple

from ...errors import IpcError
from ...types import order_dtype

VERSION = 2  # 2: BotHello carries the connector's token
MAX_PAYLOAD_SIZE = 512
TO_ALL = 0  # header id meaning "every bot"

# LiveEvent tags (connector -> bot)
TAG_BATCH_START = 1
TAG_BATCH_END = 2
TAG_FEED = 3
TAG_ORDER = 4
TAG_POSITION = 5
TAG_ERROR = 6
# LiveRequest tags (bot -> connector)
TAG_REQ_ORDER = 1
TAG_REQ_REGISTER = 2
TAG_REQ_HELLO = 3
TAG_REQ_GOODBYE = 4

_PREFIX = struct.Struct("<BB")
_STR_LEN = struct.Struct("<H")
EVENT_STRUCT = struct.Struct("<QqqddQqd")  # ev, exch_ts, local_ts, px, qty, order_id, ival, fval (64 bytes)
ORDER_STRUCT = struct.Struct("<dddqqdqqQ?BBBbB")
_POSITION = struct.Struct("<dq")
_REGISTER = struct.Struct("<dd")
_ERROR_KIND = struct.Struct("<B")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")


class ErrorKind(IntEnum):
    """What went wrong, as reported to the bot's error handler."""

    ConnectionInterrupted = 0
    CriticalConnectionError = 1
    OrderError = 2
    Custom = 3


# Custom error numbers the connector emits (ErrorKind.Custom).
CUSTOM_HEARTBEAT = 0  # filtered by the bot before the user's handler
CUSTOM_HEDGE_MODE = 1001
CUSTOM_SYMBOL_CASE = 1002
CUSTOM_RATE_LIMIT_NEAR = 1003
CUSTOM_CONNECTOR_RESTARTED = 1004
CUSTOM_CODEC_MISMATCH = 1005
CUSTOM_REQUEST_TIMEOUT = 1006
CUSTOM_FUNDING_MISSED = 1007  # a crossed position's funding fee not found in the income history


class WireOrder(NamedTuple):
    qty: float
    leaves_qty: float
    exec_qty: float
    exec_price_tick: int
    price_tick: int
    tick_size: float
    exch_timestamp: int
    local_timestamp: int
    order_id: int
    maker: bool
    order_type: int
    req: int
    status: int
    side: int
    time_in_force: int


class BatchStart(NamedTuple):
    pass


class BatchEnd(NamedTuple):
    pass


class Feed(NamedTuple):
    symbol: str
    event: tuple  # the 8 fields of an event row


class OrderUpdate(NamedTuple):
    symbol: str
    order: WireOrder


class Position(NamedTuple):
    symbol: str
    qty: float
    exch_ts: int


class Error(NamedTuple):
    kind: ErrorKind
    value: Any  # str | int | float | bool | list | dict | None
    code: int = 0  # the number of a Custom error


class OrderRequest(NamedTuple):
    symbol: str
    order: WireOrder


class BotHello(NamedTuple):
    """Sent before a bot's registrations: `token` (read from the connector's token file) admits the bot; its
    process id lets the connector tell when the bot is gone (same host), so a later bot can adopt the orders it
    left open."""
    pid: int
    token: str = ""

    def __repr__(self) -> str:  # the token never reaches a log
        return f"BotHello(pid={self.pid}, token={'***' if self.token else ''!r})"


class BotGoodbye(NamedTuple):
    """Sent by `close()`: the bot's open orders go to the next bot that registers their symbol."""


class RegisterInstrument(NamedTuple):
    symbol: str
    tick_size: float
    lot_size: float


def _put_str(out: bytearray, s: str) -> None:
    raw = s.encode()
    if len(raw) > 0xFFFF:
        raise IpcError("string too long for the IPC codec")
    out += _STR_LEN.pack(len(raw))
    out += raw


def _get_str(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = _STR_LEN.unpack_from(buf, pos)
    pos += 2
    return buf[pos : pos + n].decode(), pos + n


# Value: 0 Empty, 1 String, 2 Int, 3 Float, 4 Bool, 5 List, 6 Map
def _put_value(out: bytearray, v: Any) -> None:
    if v is None:
        out.append(0)
    elif isinstance(v, bool):
        out.append(4)
        out.append(1 if v else 0)
    elif isinstance(v, int):
        out.append(2)
        out += _I64.pack(v)
    elif isinstance(v, float):
        out.append(3)
        out += _F64.pack(v)
    elif isinstance(v, str):
        out.append(1)
        _put_str(out, v)
    elif isinstance(v, (list, tuple)):
        out.append(5)
        out += _STR_LEN.pack(len(v))
        for item in v:
            _put_value(out, item)
    elif isinstance(v, dict):
        out.append(6)
        out += _STR_LEN.pack(len(v))
        for k, item in v.items():
            _put_str(out, str(k))
            _put_value(out, item)
    else:
        raise IpcError(f"cannot encode value of type {type(v).__name__}")


def _get_value(buf: bytes, pos: int) -> tuple[Any, int]:
    tag = buf[pos]
    pos += 1
    if tag == 0:
        return None, pos
    if tag == 1:
        return _get_str(buf, pos)
    if tag == 2:
        return _I64.unpack_from(buf, pos)[0], pos + 8
    if tag == 3:
        return _F64.unpack_from(buf, pos)[0], pos + 8
    if tag == 4:
        return bool(buf[pos]), pos + 1
    if tag in (5, 6):
        (n,) = _STR_LEN.unpack_from(buf, pos)
        pos += 2
        if tag == 5:
            items = []
            for _ in range(n):
                item, pos = _get_value(buf, pos)
                items.append(item)
            return items, pos
        mapping = {}
        for _ in range(n):
            key, pos = _get_str(buf, pos)
            mapping[key], pos = _get_value(buf, pos)
        return mapping, pos
    raise IpcError(f"unknown value tag {tag}")


def _truncate_for_wire(value: Any) -> Any:
    """Error messages from exchanges can be long; keep the encoded error under the payload limit."""
    if isinstance(value, str):
        return value[:400]
    if isinstance(value, dict):
        return {k: (v[:300] if isinstance(v, str) else v) for k, v in value.items()}
    return value


def _finish(out: bytearray) -> bytes:
    if len(out) > MAX_PAYLOAD_SIZE:
        raise IpcError(f"IPC message of {len(out)} bytes exceeds the {MAX_PAYLOAD_SIZE}-byte limit")
    return bytes(out)


def encode_event(msg: Any) -> bytes:
    """Encode a connector -> bot message."""
    cls = type(msg)
    if cls is Feed:
        out = bytearray(_PREFIX.pack(VERSION, TAG_FEED))
        _put_str(out, msg.symbol)
        out += EVENT_STRUCT.pack(*msg.event)
    elif cls is OrderUpdate:
        out = bytearray(_PREFIX.pack(VERSION, TAG_ORDER))
        _put_str(out, msg.symbol)
        out += ORDER_STRUCT.pack(*msg.order)
    elif cls is BatchStart:
        out = bytearray(_PREFIX.pack(VERSION, TAG_BATCH_START))
    elif cls is BatchEnd:
        out = bytearray(_PREFIX.pack(VERSION, TAG_BATCH_END))
    elif cls is Position:
        out = bytearray(_PREFIX.pack(VERSION, TAG_POSITION))
        _put_str(out, msg.symbol)
        out += _POSITION.pack(msg.qty, msg.exch_ts)
    elif cls is Error:
        out = bytearray(_PREFIX.pack(VERSION, TAG_ERROR))
        out += _ERROR_KIND.pack(int(msg.kind))
        if msg.kind == ErrorKind.Custom:
            out += _I64.pack(msg.code)
        _put_value(out, _truncate_for_wire(msg.value))
    else:
        raise IpcError(f"not a connector->bot message: {cls.__name__}")
    return _finish(out)


def decode_event(buf: bytes) -> Any:
    """Decode a connector -> bot message; raises IpcError on a foreign version or a malformed payload."""
    if len(buf) < 2 or buf[0] != VERSION:
        raise IpcError(f"IPC codec version mismatch (got {buf[0] if buf else None}, expected {VERSION})")
    tag = buf[1]
    try:
        if tag == TAG_FEED:
            symbol, pos = _get_str(buf, 2)
            return Feed(symbol, EVENT_STRUCT.unpack_from(buf, pos))
        if tag == TAG_ORDER:
            symbol, pos = _get_str(buf, 2)
            return OrderUpdate(symbol, WireOrder._make(ORDER_STRUCT.unpack_from(buf, pos)))
        if tag == TAG_BATCH_START:
            return BatchStart()
        if tag == TAG_BATCH_END:
            return BatchEnd()
        if tag == TAG_POSITION:
            symbol, pos = _get_str(buf, 2)
            qty, ts = _POSITION.unpack_from(buf, pos)
            return Position(symbol, qty, ts)
        if tag == TAG_ERROR:
            kind = ErrorKind(buf[2])
            pos, code = 3, 0
            if kind == ErrorKind.Custom:
                code = _I64.unpack_from(buf, pos)[0]
                pos += 8
            value, _ = _get_value(buf, pos)
            return Error(kind, value, code)
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
        raise IpcError(f"malformed IPC event (tag {tag}): {exc}") from exc
    raise IpcError(f"unknown IPC event tag {tag}")


def encode_request(msg: Any) -> bytes:
    """Encode a bot -> connector message."""
    cls = type(msg)
    if cls is OrderRequest:
        out = bytearray(_PREFIX.pack(VERSION, TAG_REQ_ORDER))
        _put_str(out, msg.symbol)
        out += ORDER_STRUCT.pack(*msg.order)
    elif cls is RegisterInstrument:
        out = bytearray(_PREFIX.pack(VERSION, TAG_REQ_REGISTER))
        _put_str(out, msg.symbol)
        out += _REGISTER.pack(msg.tick_size, msg.lot_size)
    elif cls is BotHello:
        out = bytearray(_PREFIX.pack(VERSION, TAG_REQ_HELLO))
        out += _I64.pack(msg.pid)
        _put_str(out, msg.token)
    elif cls is BotGoodbye:
        out = bytearray(_PREFIX.pack(VERSION, TAG_REQ_GOODBYE))
    else:
        raise IpcError(f"not a bot->connector message: {cls.__name__}")
    return _finish(out)


def order_request_header(symbol: str) -> bytes:
    """The constant start of every `OrderRequest` for `symbol` (see `encode_order_record`)."""
    out = bytearray(_PREFIX.pack(VERSION, TAG_REQ_ORDER))
    _put_str(out, symbol)
    return bytes(out)


# Byte ranges of an `order_dtype` record that make up the wire order: the nine 8-byte fields, then the six
# one-byte ones (the queue-model words in between stay local). Checked against the dtype at import.
_REC_WIDE = slice(0, 72)
_REC_NARROW = slice(88, 94)


def encode_order_record(header: bytes, record: bytes) -> bytes:
    """`encode_request(OrderRequest(symbol, order))` straight from an `order_dtype` record's bytes: the bot's
    request path skips building a WireOrder."""
    return header + record[_REC_WIDE] + record[_REC_NARROW]


def _record_layout_matches() -> bool:
    offsets = [order_dtype.fields[name][1] for name in WireOrder._fields]
    return offsets == list(range(0, 72, 8)) + list(range(88, 94))


if not _record_layout_matches():  # pragma: no cover - guards a change of types.order_dtype
    raise ImportError("hftbacktest.types.order_dtype no longer matches the IPC order layout")


def decode_request(buf: bytes) -> Any:
    """Decode a bot -> connector message; raises IpcError on a foreign version or a malformed payload."""
    if len(buf) < 2 or buf[0] != VERSION:
        raise IpcError(f"IPC codec version mismatch (got {buf[0] if buf else None}, expected {VERSION})")
    tag = buf[1]
    try:
        if tag == TAG_REQ_ORDER:
            symbol, pos = _get_str(buf, 2)
            return OrderRequest(symbol, WireOrder._make(ORDER_STRUCT.unpack_from(buf, pos)))
        if tag == TAG_REQ_REGISTER:
            symbol, pos = _get_str(buf, 2)
            tick, lot = _REGISTER.unpack_from(buf, pos)
            return RegisterInstrument(symbol, tick, lot)
        if tag == TAG_REQ_HELLO:
            token, _ = _get_str(buf, 10)
            return BotHello(_I64.unpack_from(buf, 2)[0], token)
        if tag == TAG_REQ_GOODBYE:
            return BotGoodbye()
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise IpcError(f"malformed IPC request (tag {tag}): {exc}") from exc
    raise IpcError(f"unknown IPC request tag {tag}")
