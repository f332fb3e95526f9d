"""Binance USD-M Futures protocol rules, written once for every part that speaks it: the converter and the
collector (data/), the connector and the emulator (live side). Pure Python, no numba, imports nothing above
`types`, so the lowest tool layer may use it.

* `numbers`: decimal fields (strings on the wire) <-> floats, integer steps and printed decimals.
* `depth`: the diff-depth synchronisation rules (snapshot bridging, `pu` continuity, repeats).
* `wire`: event types, stream names and routes, order enums.
* `signing`: HMAC-SHA256 signatures of REST and WebSocket-API requests.
* `symbols`: a symbol's trading rules as `exchangeInfo` lists them.
"""
