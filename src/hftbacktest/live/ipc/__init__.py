"""Shared-memory IPC between one connector and its bots (iceoryx2 publish-subscribe).

Two services per connector name: `<name>/ToBot` (connector publishes, every bot subscribes) and
`<name>/FromBot` (bots publish, the connector subscribes). Each sample is a byte slice of at most
512 bytes plus a 16-byte header `{id, len, seq}`: `id` is the destination bot (0 = all) on ToBot and
the source bot on FromBot; `seq` counts samples per publisher so a subscriber notices dropped samples.
"""
from __future__ import annotations

import ctypes
import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ...errors import ConfigError, IpcError
from . import access
from .codec import MAX_PAYLOAD_SIZE, TO_ALL

__all__ = ["ChannelConfig", "ConnectorChannel", "BotChannel", "MAX_PAYLOAD_SIZE", "TO_ALL", "cleanup"]


class Header(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("len", ctypes.c_uint32), ("seq", ctypes.c_uint32)]

    @staticmethod
    def type_name() -> str:  # iceoryx2 compares this name when a second process opens the service
        return "hftbacktest::IpcHeader"


@dataclass(frozen=True)
class ChannelConfig:
    """Static service parameters; connector and bots must agree or iceoryx2 refuses to open the service."""

    buffer_size: int = 10_000
    max_bots: int = 200

    @classmethod
    def from_env(cls) -> "ChannelConfig":
        path = os.environ.get("HFTBACKTEST_CHANNEL_CONFIG")
        if not path:
            return cls()
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"HFTBACKTEST_CHANNEL_CONFIG={path}: {exc}") from exc
        unknown = set(raw) - {"buffer_size", "max_bots"}
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; expected buffer_size, max_bots")
        for key in ("buffer_size", "max_bots"):
            if key in raw and (not isinstance(raw[key], int) or raw[key] < 1):
                raise ConfigError(f"{path}: {key} must be a positive integer")
        return cls(**raw)


def _iox():
    try:
        import iceoryx2
    except ImportError as exc:  # pragma: no cover - iceoryx2 is a hard dependency
        raise IpcError("the iceoryx2 package is not installed (pip install iceoryx2)") from exc
    return iceoryx2


@lru_cache(maxsize=1)
def _node():
    """One iceoryx2 node per process, its files under this user's runtime directory (see `access`); creating it
    also reclaims resources left by dead nodes."""
    iox = _iox()
    iox.set_log_level_from_env_or(iox.LogLevel.Error)
    base = access.runtime_dir()
    cfg = iox.config.default()
    cfg.global_cfg.root_path = iox.Path.new(str(access.iceoryx_root(base)) + "/")
    cfg.global_cfg.prefix = iox.FileName.new(access.shm_prefix(base))
    try:
        node = (iox.NodeBuilder.new().config(cfg).signal_handling_mode(iox.SignalHandlingMode.Disabled)
                .create(iox.ServiceType.Ipc))
        node.try_cleanup_dead_nodes()
    except Exception as exc:
        raise IpcError(f"cannot create the iceoryx2 node (shared memory under /dev/shm, files under "
                       f"{access.iceoryx_root(base)}): {exc}") from exc
    access.tighten(base)
    return node


def _service(name: str, direction: str, cfg: ChannelConfig):
    iox = _iox()
    full = f"{name}/{direction}"
    try:
        return (
            _node()
            .service_builder(iox.ServiceName.new(full))
            .publish_subscribe(iox.Slice[ctypes.c_uint8])
            .user_header(Header)
            .subscriber_max_buffer_size(cfg.buffer_size)
            .max_publishers(cfg.max_bots if direction == "FromBot" else 1)
            .max_subscribers(cfg.max_bots if direction == "ToBot" else 1)
            .max_nodes(cfg.max_bots + 2)
            .enable_safe_overflow(True)
            .open_or_create()
        )
    except Exception as exc:
        raise IpcError(
            f"cannot open IPC service {full!r} ({exc}); check that connector and bots use the same "
            "HFTBACKTEST_CHANNEL_CONFIG, or run `python -m hftbacktest.live.ipc cleanup --name "
            f"{name}` after a crash"
        ) from exc


class _Endpoint:
    """A publisher on one service and a subscriber on the other."""

    def __init__(self, name: str, pub_dir: str, sub_dir: str, config: ChannelConfig | None):
        if not name or "/" in name:
            raise ConfigError(f"IPC name {name!r} must be non-empty and contain no '/'")
        self.name = name
        cfg = config or ChannelConfig.from_env()
        self._pub_service = _service(name, pub_dir, cfg)
        self._sub_service = _service(name, sub_dir, cfg)
        try:
            self._pub = self._pub_service.publisher_builder().initial_max_slice_len(MAX_PAYLOAD_SIZE).create()
        except Exception as exc:
            raise IpcError(
                f"cannot publish on {name}/{pub_dir}: {exc}"
                + (" (is another connector with this --name running?)" if pub_dir == "ToBot" else "")
            ) from exc
        try:
            self._sub = self._sub_service.subscriber_builder().create()
        except Exception as exc:
            raise IpcError(
                f"cannot subscribe to {name}/{sub_dir}: {exc}"
                + (" (is another connector with this --name running?)" if sub_dir == "FromBot" else "")
            ) from exc
        access.tighten(access.runtime_dir())  # data segments and port files created just now
        self._seq = 0
        self._last_seq: dict[int, int] = {}  # publisher key -> last seq seen
        self.lost = 0  # samples a full buffer dropped before we read them
        self._closed = False

    def _send(self, ident: int, payload: bytes) -> None:
        n = len(payload)
        if n > MAX_PAYLOAD_SIZE:
            raise IpcError(f"IPC message of {n} bytes exceeds the {MAX_PAYLOAD_SIZE}-byte limit")
        sample = self._pub.loan_slice_uninit(MAX_PAYLOAD_SIZE)
        hdr = sample.user_header().contents
        hdr.id = ident
        hdr.len = n
        hdr.seq = self._seq
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        ctypes.memmove(sample.payload_ptr, payload, n)
        sample.assume_init().send()

    def _receive(self) -> tuple[int, int, bytes] | None:
        sample = self._sub.receive()
        if sample is None:
            return None
        hdr = sample.user_header().contents
        ident, seq = hdr.id, hdr.seq
        payload = ctypes.string_at(sample.payload_ptr, hdr.len)
        sample.delete()  # release the shared-memory slot at once
        return ident, seq, payload

    def update_connections(self) -> None:
        self._pub.update_connections()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for port in (self._pub, self._sub):
            try:
                port.delete()
            except Exception:
                pass
        self._pub_service = self._sub_service = None


class ConnectorChannel(_Endpoint):
    """Connector side: publish LiveEvents to bots, receive LiveRequests from them."""

    def __init__(self, name: str, config: ChannelConfig | None = None):
        super().__init__(name, "ToBot", "FromBot", config)

    def send(self, bot_id: int, payload: bytes) -> None:
        """Send to one bot (`bot_id`) or to all (`TO_ALL`)."""
        self._send(bot_id, payload)

    def recv(self) -> tuple[int, bytes] | None:
        """Next request as (source bot id, payload), or None when nothing is waiting."""
        got = self._receive()
        if got is None:
            return None
        bot_id, seq, payload = got
        last = self._last_seq.get(bot_id)
        if last is not None and seq != (last + 1) & 0xFFFFFFFF:
            self.lost += (seq - last - 1) & 0xFFFFFFFF
        self._last_seq[bot_id] = seq
        return bot_id, payload


class BotChannel(_Endpoint):
    """Bot side: send LiveRequests tagged with this bot's id, receive events addressed to it or to all."""

    def __init__(self, name: str, bot_id: int, config: ChannelConfig | None = None):
        if not 0 < bot_id < 1 << 64:
            raise ConfigError(f"bot id must be a non-zero unsigned 64-bit integer, got {bot_id}")
        super().__init__(name, "FromBot", "ToBot", config)
        self.bot_id = bot_id
        self._last = -1
        self.last_id = TO_ALL  # header id of the last payload returned: TO_ALL or this bot's id

    def send(self, payload: bytes) -> None:
        self._send(self.bot_id, payload)

    def recv(self) -> bytes | None:
        """Next payload meant for this bot, or None. Samples for other bots are skipped (but counted for seq)."""
        while True:
            got = self._receive()
            if got is None:
                return None
            ident, seq, payload = got
            if self._last >= 0 and seq != (self._last + 1) & 0xFFFFFFFF and seq != 0:
                # (seq 0 out of turn: a restarted connector counting from scratch, not a loss)
                self.lost += (seq - self._last - 1) & 0xFFFFFFFF
            self._last = seq
            if ident == TO_ALL or ident == self.bot_id:
                self.last_id = ident
                return payload

    def reset_sequence(self) -> None:
        """Forget the last seq (after the connector restarted, its counter starts again at 0)."""
        self._last = -1


def cleanup(name: str | None = None, force: bool = False) -> dict[str, Any]:
    """Reclaim shared memory of dead processes; with `force`, also remove `name`'s services outright."""
    iox = _iox()
    node = _node()
    state = node.try_cleanup_dead_nodes()
    removed = []
    if name and force:
        for direction in ("ToBot", "FromBot"):
            svc_name = iox.ServiceName.new(f"{name}/{direction}")
            try:
                if node.force_remove_service(svc_name, iox.MessagingPattern.PublishSubscribe):
                    removed.append(f"{name}/{direction}")
            except Exception as exc:
                raise IpcError(f"cannot remove service {name}/{direction}: {exc}") from exc
    return {"dead_nodes": str(state), "removed_services": removed}
