"""The emulator's admin plane (`/_emu/...`): who may use it, and where the emulator's secrets come from.

The admin plane can arm faults (a liquidation, a clock jump) and create accounts, so it is off unless the
emulator is started with an admin token, and every admin request must

* come from loopback without a foreign `Origin` (a web page in a local browser is refused: 403; there are no
  CORS headers, so a browser never lets such a page read a reply) and name a loopback `Host` (DNS rebinding);
* carry the token in the `X-EMU-ADMIN-TOKEN` header (401 otherwise);
* send JSON (`Content-Type: application/json`) when it sends a body (415 otherwise: `text/plain` and form
  bodies are what a browser can send cross-origin without a preflight).

Secrets never need the command line (where `ps` shows them): the admin token and accounts are read from the
environment or from a TOML secrets file.
"""
from __future__ import annotations

import hmac
import os
from pathlib import Path

from .._toml import read_toml
from ..errors import ConfigError

ADMIN_HEADER = "X-EMU-ADMIN-TOKEN"
ADMIN_TOKEN_ENV = "HFTBACKTEST_EMU_ADMIN_TOKEN"
ACCOUNTS_ENV = "HFTBACKTEST_EMU_ACCOUNTS"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
ACCOUNT_KEYS = {"api_key", "secret", "balance", "maker_fee", "taker_fee", "leverage"}


def _host_name(host: str) -> str:
    """`127.0.0.1:8080` -> `127.0.0.1`, `[::1]:80` -> `[::1]`."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def refusal(method: str, headers, port: int, token: str | None) -> tuple[int, str] | None:
    """(HTTP status, reason) when an admin request must be refused, else None. Order: disabled, origin, token,
    media type, so a cross-origin page learns nothing about the token."""
    if token is None:
        return 404, "the admin plane is disabled (start the emulator with an admin token, see docs/emulator.md)"
    host = headers.get("Host", "")
    if _host_name(host.lower()) not in LOOPBACK_NAMES:
        return 403, "admin requests must name a loopback Host"
    origin = headers.get("Origin")
    if origin is not None and origin.lower() not in {f"http://{h}:{port}" for h in LOOPBACK_NAMES}:
        return 403, "cross-origin admin requests are refused"
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return 403, "cross-origin admin requests are refused"
    if method == "OPTIONS":
        return 405, "no CORS: admin endpoints answer no preflight"
    given = headers.get(ADMIN_HEADER, "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return 401, f"missing or wrong {ADMIN_HEADER} header"
    has_body = method in ("POST", "PUT", "PATCH") or headers.get("Content-Length", "0") not in ("", "0")
    if has_body and headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
        return 415, "admin request bodies must be JSON (Content-Type: application/json)"
    return None


def _read_secret_file(path: str) -> dict:
    p = Path(path)
    raw = read_toml(p, "secrets", private=True)
    unknown = set(raw) - {"admin_token", "account"}
    if unknown:
        raise ConfigError(f"{p}: unknown key {sorted(unknown)[0]!r} (accepted: admin_token, [[account]])")
    return raw


def _account(entry, where: str) -> dict:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table with api_key and secret")
    unknown = set(entry) - ACCOUNT_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (accepted: {', '.join(sorted(ACCOUNT_KEYS))})")
    for name in ("api_key", "secret"):
        if not isinstance(entry.get(name), str) or not entry[name]:
            raise ConfigError(f"{where}: key {name!r} must be a non-empty string")
    out = {"api_key": entry["api_key"], "secret": entry["secret"]}
    for name in ("balance", "maker_fee", "taker_fee"):
        if name in entry:
            if not isinstance(entry[name], (int, float)) or isinstance(entry[name], bool):
                raise ConfigError(f"{where}: key {name!r} must be a number")
            out[name] = float(entry[name])
    if "leverage" in entry:
        if not isinstance(entry["leverage"], int) or not 1 <= entry["leverage"] <= 125:
            raise ConfigError(f"{where}: key 'leverage' must be an integer in 1..125")
        out["leverage"] = entry["leverage"]
    return out


def parse_account_spec(spec: str, where: str) -> dict:
    """`KEY:SECRET[:BALANCE]` (the `--account` flag and the `HFTBACKTEST_EMU_ACCOUNTS` list)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"{where} expects KEY:SECRET[:BALANCE]")
    out = {"api_key": parts[0], "secret": parts[1]}
    if len(parts) == 3:
        try:
            out["balance"] = float(parts[2])
        except ValueError:
            raise ConfigError(f"{where}: the balance must be a number") from None
    return out


def load_secrets(secrets_file: str | None, environ=os.environ) -> tuple[str | None, list[dict]]:
    """(admin token or None, accounts) from the secrets file and the environment (the file wins)."""
    token = environ.get(ADMIN_TOKEN_ENV) or None
    accounts = [parse_account_spec(s.strip(), ACCOUNTS_ENV) for s in environ.get(ACCOUNTS_ENV, "").split(",")
                if s.strip()]
    if secrets_file:
        raw = _read_secret_file(secrets_file)
        if "admin_token" in raw:
            if not isinstance(raw["admin_token"], str) or len(raw["admin_token"]) < 16:
                raise ConfigError(f"{secrets_file}: key 'admin_token' must be a string of 16 or more characters")
            token = raw["admin_token"]
        entries = raw.get("account", [])
        if not isinstance(entries, list):
            raise ConfigError(f"{secrets_file}: 'account' must be an array of tables ([[account]])")
        accounts += [_account(e, f"{secrets_file}: account[{i}]") for i, e in enumerate(entries)]
    if token is not None and len(token) < 16:
        raise ConfigError(f"{ADMIN_TOKEN_ENV} must hold 16 or more characters")
    return token, accounts
