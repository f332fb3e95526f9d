"""Request signatures (HMAC-SHA256 keys; general-info "SIGNED (TRADE, USER_DATA) Endpoint security" and
websocket-api-general-info "SIGNED request security")."""
from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any
from urllib.parse import urlencode

_SIGNATURE = re.compile(r"(^|&)signature=[^&]*")


def sign(secret: str, payload: str) -> str:
    """Hex HMAC-SHA256 of `payload` under `secret`."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def rest_payload(raw_query: str, raw_body: str) -> str:
    """What a REST signature covers: the query string then the body, exactly as sent (percent-encoding kept),
    without the `signature` parameter."""
    return _SIGNATURE.sub("", raw_query).lstrip("&") + _SIGNATURE.sub("", raw_body).lstrip("&")


def ws_payload(params: dict[str, Any]) -> str:
    """What a WebSocket-API signature covers: every other parameter sorted by name, url-encoded `k=v&...`."""
    return urlencode(sorted((k, v) for k, v in params.items() if k != "signature"))


def valid(secret: str, payload: str, signature: str) -> bool:
    """The signature matches (case-insensitive hex, compared in constant time)."""
    return hmac.compare_digest(sign(secret, payload), signature.lower())
