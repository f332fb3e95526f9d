"""Local Binance USD-M Futures exchange emulator (REST + WebSocket on loopback). See docs/emulator.md."""
from .._lazy import lazy_exports

__all__ = ["Emulator", "EmulatorConfig", "FAULT_KINDS"]
__getattr__, __dir__ = lazy_exports(__name__, globals(), {
    "Emulator": ".server",
    "EmulatorConfig": ".server",
    "FAULT_KINDS": ".faults",
})
