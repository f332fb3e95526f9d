"""Local Binance USD-M Futures exchange emulator (REST + WebSocket on loopback)."""
