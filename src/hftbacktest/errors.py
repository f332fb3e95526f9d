"""Typed exception hierarchy. Messages name the file, line, asset or field at fault; never a secret."""
from __future__ import annotations


class HftBacktestError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(HftBacktestError, ValueError):
    """A builder, TOML file or CLI flag holds an invalid value (the message names the field)."""


class DataError(HftBacktestError, ValueError):
    """Event data is malformed: wrong dtype, unsorted, NaN where a number is required, unreadable file."""


class DataQualityError(DataError):
    """Raised in strict mode by converters/validators (sequence gap, crossed book, malformed line...)."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line


class OrderError(HftBacktestError):
    """An order request was refused (live: carries the exchange's code and message)."""

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(message if code is None else f"[{code}] {message}")
        self.code = code


class ConnectorError(HftBacktestError):
    """The live connector or its transport failed."""


class IpcError(ConnectorError):
    """Shared-memory IPC could not be set up or used."""
