"""Binance USD-M Futures connector: one process per account that bots reach over shared-memory IPC."""
from .config import ConnectorConfig, load_config

__all__ = ["ConnectorConfig", "load_config"]
