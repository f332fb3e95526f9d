"""Local Binance USD-M Futures exchange emulator (REST + WebSocket on loopback). See docs/emulator.md."""
from .faults import FAULT_KINDS
from .server import Emulator, EmulatorConfig

__all__ = ["Emulator", "EmulatorConfig", "FAULT_KINDS"]
