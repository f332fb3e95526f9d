"""`@borrowed` lives in `hftbacktest._numba_tricks.borrow` (with the other numba-internals tricks)."""
from .._numba_tricks.borrow import BORROWED, borrowed, _qualified_name  # noqa: F401
