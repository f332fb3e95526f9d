"""numba fast path for raw Binance lines: `<local_ts> <json>\n`.

It handles the common, well-formed shapes (stream envelopes with depthUpdate/trade/bookTicker/markPriceUpdate,
string prices with at most 15 significant digits) and hands every other line back to the Python path, which
implements the full semantics. Float parsing uses the exact fast path (integer mantissa < 2**53 divided or
multiplied by an exact power of ten, one IEEE rounding), so the doubles equal Python's `float(str)`.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ..kernels.borrow import borrowed

@intrinsic
def unowned(typingctx, arr):
    """The same array without its memory-info pointer: a borrowed view whose passing to helpers costs no atomic
    reference counting (valid while the caller holds the array)."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, value=args[0])
        ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
        ary.parent = cgutils.get_null_value(ary.parent.type)
        return ary._getvalue()

    return arr(arr), codegen


@intrinsic
def float_bits(typingctx, x):
    """The int64 bit pattern of a float64."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


# message kinds recorded in the per-line table
KIND_OTHER = 0
KIND_DEPTH = 1
KIND_TRADE = 2
KIND_TICKER = 3
KIND_MARK = 4
KIND_SNAPSHOT = 5
KIND_ERROR = 6

# parse_lines status
ST_DONE = 0       # every complete line was consumed
ST_FALLBACK = 1   # the line at `pos` must go through the Python path
ST_FULL = 2       # the output tables need more room

# key ids
K_E, K_EVT, K_T, K_S, K_UU, K_U, K_PU, K_B, K_A, K_P, K_Q, K_X, K_M, K_BQ, K_AQ, K_I, K_R, K_TID, K_DATA = range(19)
N_KEYS = 19

_P10 = np.array([10.0 ** i for i in range(23)])
_MAX_EXACT = 1 << 53
_MAX_MS = (2**63 - 1) // 1_000_000

QUOTE = 34
COMMA = 44
COLON = 58
LBRACK = 91
RBRACK = 93
LBRACE = 123
RBRACE = 125
BACKSLASH = 92


@borrowed
def _ws(c):
    """Whitespace inside a line (a newline always ends the line: no scan may cross it)."""
    return c == 32 or c == 9 or c == 13


@borrowed
def _skip_ws(buf, p, e):
    while p < e and _ws(buf[p]):
        p += 1
    return p


@borrowed
def _value_end(buf, p, e):
    """Index just past the JSON value starting at p, or -1 (escapes and bad nesting go to the slow path)."""
    if p >= e:
        return -1
    c = buf[p]
    if c == QUOTE:
        q = p + 1
        while q < e:
            b = buf[q]
            if b == BACKSLASH or b == 10:
                return -1
            if b == QUOTE:
                return q + 1
            q += 1
        return -1
    if c == LBRACK or c == LBRACE:
        depth = 0
        q = p
        in_str = False
        while q < e:
            b = buf[q]
            if b == 10:
                return -1
            if in_str:
                if b == BACKSLASH:
                    return -1
                if b == QUOTE:
                    in_str = False
            elif b == QUOTE:
                in_str = True
            elif b == LBRACK or b == LBRACE:
                depth += 1
            elif b == RBRACK or b == RBRACE:
                depth -= 1
                if depth == 0:
                    return q + 1
            q += 1
        return -1
    q = p
    while q < e:
        b = buf[q]
        if b == COMMA or b == RBRACE or b == RBRACK or b == 10 or _ws(b):
            break
        q += 1
    return q if q > p else -1


@borrowed
def _key_id(buf, a, b):
    n = b - a
    c = buf[a]
    if n == 1:
        if c == 101:   # e
            return K_EVT
        if c == 69:    # E
            return K_E
        if c == 84:    # T
            return K_T
        if c == 115:   # s
            return K_S
        if c == 85:    # U
            return K_UU
        if c == 117:   # u
            return K_U
        if c == 98:    # b
            return K_B
        if c == 97:    # a
            return K_A
        if c == 112:   # p
            return K_P
        if c == 113:   # q
            return K_Q
        if c == 88:    # X
            return K_X
        if c == 109:   # m
            return K_M
        if c == 66:    # B
            return K_BQ
        if c == 65:    # A
            return K_AQ
        if c == 105:   # i
            return K_I
        if c == 114:   # r
            return K_R
        if c == 116:   # t
            return K_TID
        return -1
    if n == 2 and c == 112 and buf[a + 1] == 117:  # pu
        return K_PU
    if n == 4 and c == 100 and buf[a + 1] == 97 and buf[a + 2] == 116 and buf[a + 3] == 97:  # data
        return K_DATA
    return -1


@borrowed
def _parse_int(buf, a, b):
    """A JSON integer (non-negative, ≤ 18 digits) or -1."""
    if a < 0 or b - a < 1 or b - a > 18:
        return -1
    v = 0
    for q in range(a, b):
        d = buf[q] - 48
        if d < 0 or d > 9:
            return -1
        v = v * 10 + d
    return v


@borrowed
def _parse_decimal(buf, a, b):
    """Digits of a plain decimal number in buf[a:b] → (ok, value), equal to Python float() when ok."""
    if a >= b:
        return False, 0.0
    neg = False
    q = a
    if buf[q] == 45:
        neg = True
        q += 1
    mant = 0
    frac = 0
    seen_dot = False
    any_digit = False
    exp10 = 0
    while q < b:
        c = buf[q]
        if 48 <= c <= 57:
            any_digit = True
            if mant != 0 or c != 48:
                if mant >= 100_000_000_000_000_000:
                    return False, 0.0
                mant = mant * 10 + (c - 48)
            if seen_dot:
                frac += 1
        elif c == 46 and not seen_dot:
            seen_dot = True
        elif c == 101 or c == 69:
            q += 1
            eneg = False
            if q < b and (buf[q] == 45 or buf[q] == 43):
                eneg = buf[q] == 45
                q += 1
            if q >= b or b - q > 3:
                return False, 0.0
            ev = 0
            while q < b:
                d = buf[q] - 48
                if d < 0 or d > 9:
                    return False, 0.0
                ev = ev * 10 + d
                q += 1
            exp10 = -ev if eneg else ev
            break
        else:
            return False, 0.0
        q += 1
    if not any_digit or mant > _MAX_EXACT:
        return False, 0.0
    k = frac - exp10
    if mant == 0:
        v = 0.0
    elif k >= 0:
        if k > 22:
            return False, 0.0
        v = mant / _P10[k]
    else:
        if -k > 22:
            return False, 0.0
        v = mant * _P10[-k]
    return True, -v if neg else v


@borrowed
def _parse_str_float(buf, a, b):
    if a < 0 or b - a < 3 or buf[a] != QUOTE or buf[b - 1] != QUOTE:
        return False, 0.0
    return _parse_decimal(buf, a + 1, b - 1)


@borrowed
def _quoted_decimal(buf, p, e):
    """Parse `"123.45"` at p in one pass → (ok, value, index after the closing quote).

    Only plain decimals (optional '-', digits, one '.') with a mantissa below 2**53 are accepted; anything
    else (exponents, long mantissas, escapes) returns ok=False so the caller falls back to the slow path.
    """
    if p >= e or buf[p] != QUOTE:
        return False, 0.0, p
    q = p + 1
    neg = False
    if q < e and buf[q] == 45:
        neg = True
        q += 1
    mant = 0
    frac = 0
    seen_dot = False
    nd = 0
    while q < e:
        c = buf[q]
        if 48 <= c <= 57:
            if mant >= 100_000_000_000_000_000:
                return False, 0.0, p
            mant = mant * 10 + (c - 48)
            nd += 1
            frac += seen_dot
        elif c == 46 and not seen_dot:
            seen_dot = True
        elif c == QUOTE:
            break
        else:
            return False, 0.0, p
        q += 1
    if q >= e or nd == 0 or mant > _MAX_EXACT or frac > 22:
        return False, 0.0, p
    v = mant / _P10[frac]
    return True, -v if neg else v, q + 1


@borrowed
def _bytes_eq(buf, a, b, lit):
    if b - a != len(lit):
        return False
    for q in range(len(lit)):
        if buf[a + q] != lit[q]:
            return False
    return True


@borrowed
def _levels(buf, a, e, rf, n):
    """Parse `[["px","qty"],...]` at a into rf[n:, 3] / rf[n:, 4]. Returns (end index, new n) or (-1, n)."""
    p = _skip_ws(buf, a + 1, e)
    if p < e and buf[p] == RBRACK:
        return p + 1, n
    while p < e:
        if buf[p] != LBRACK:
            return -1, n
        p = _skip_ws(buf, p + 1, e)
        ok, vp, p = _quoted_decimal(buf, p, e)
        if not ok:
            return -1, n
        p = _skip_ws(buf, p, e)
        if p >= e or buf[p] != COMMA:
            return -1, n
        p = _skip_ws(buf, p + 1, e)
        ok, vq, p = _quoted_decimal(buf, p, e)
        if not ok:
            return -1, n
        p = _skip_ws(buf, p, e)
        if p >= e or buf[p] != RBRACK:
            return -1, n
        if n >= rf.shape[0]:
            return -1, n
        rf[n, 3] = vp
        rf[n, 4] = vq
        n += 1
        p = _skip_ws(buf, p + 1, e)
        if p < e and buf[p] == COMMA:
            p = _skip_ws(buf, p + 1, e)
        elif p < e and buf[p] == RBRACK:
            return p + 1, n
        else:
            return -1, n
    return -1, n


@borrowed
def _scan_event(buf, p, e, ks, ke, rf, n):
    """Record the value span of each known key of the event object at p (ks/ke); `[[px,qty],...]` values of b/a
    are parsed straight into
    rf[row, 3:5] from row n on (one pass over the bulk of a depth message). Returns (end, b0, b1, a0, a1)
    where b0:b1 / a0:a1 are the rows parsed for b / a (-1 when absent or not an array)."""
    for k in range(N_KEYS):
        ks[k] = -1
        ke[k] = -1
    b0 = b1 = a0 = a1 = -1
    if p >= e or buf[p] != LBRACE:
        return -1, b0, b1, a0, a1
    p = _skip_ws(buf, p + 1, e)
    if p < e and buf[p] == RBRACE:
        return p + 1, b0, b1, a0, a1
    while p < e:
        if buf[p] != QUOTE:
            return -1, b0, b1, a0, a1
        k0 = p + 1
        k1 = k0
        while k1 < e and buf[k1] != QUOTE:
            if buf[k1] == BACKSLASH or buf[k1] == 10:
                return -1, b0, b1, a0, a1
            k1 += 1
        if k1 >= e or k1 == k0:
            return -1, b0, b1, a0, a1
        p = _skip_ws(buf, k1 + 1, e)
        if p >= e or buf[p] != COLON:
            return -1, b0, b1, a0, a1
        p = _skip_ws(buf, p + 1, e)
        kid = _key_id(buf, k0, k1)
        if (kid == K_B or kid == K_A) and p < e and buf[p] == LBRACK:
            v1, n2 = _levels(buf, p, e, rf, n)
            if v1 < 0:
                return -1, b0, b1, a0, a1
            if kid == K_B:
                b0, b1 = n, n2
            else:
                a0, a1 = n, n2
            n = n2
        else:
            v1 = _value_end(buf, p, e)
            if v1 < 0:
                return -1, b0, b1, a0, a1
        if kid >= 0:
            ks[kid] = p
            ke[kid] = v1
        p = _skip_ws(buf, v1, e)
        if p >= e:
            return -1, b0, b1, a0, a1
        if buf[p] == COMMA:
            p = _skip_ws(buf, p + 1, e)
        elif buf[p] == RBRACE:
            return p + 1, b0, b1, a0, a1
        else:
            return -1, b0, b1, a0, a1
    return -1, b0, b1, a0, a1


_LIT_DEPTH = np.frombuffer(b'"depthUpdate"', np.uint8)
_LIT_TRADE = np.frombuffer(b'"trade"', np.uint8)
_LIT_TICKER = np.frombuffer(b'"bookTicker"', np.uint8)
_LIT_MARK = np.frombuffer(b'"markPriceUpdate"', np.uint8)
_LIT_MARKET = np.frombuffer(b'"MARKET"', np.uint8)
_LIT_TRUE = np.frombuffer(b"true", np.uint8)
_LIT_FALSE = np.frombuffer(b"false", np.uint8)

DEPTH_BUY = np.uint64((1 << 29) | 1)
DEPTH_SELL = np.uint64((1 << 28) | 1)
TRADE_BUY = np.uint64((1 << 29) | 2)
TRADE_SELL = np.uint64((1 << 28) | 2)


@borrowed
def _top_data(buf, p, e):
    """Start of the "data" object inside a combined-stream envelope (other keys are skipped), or -1."""
    if p >= e or buf[p] != LBRACE:
        return -1
    p = _skip_ws(buf, p + 1, e)
    while p < e:
        if buf[p] != QUOTE:
            return -1
        k0 = p + 1
        k1 = k0
        while k1 < e and buf[k1] != QUOTE:
            if buf[k1] == BACKSLASH or buf[k1] == 10:
                return -1
            k1 += 1
        if k1 >= e:
            return -1
        p = _skip_ws(buf, k1 + 1, e)
        if p >= e or buf[p] != COLON:
            return -1
        p = _skip_ws(buf, p + 1, e)
        if _key_id(buf, k0, k1) == K_DATA:
            return p
        v1 = _value_end(buf, p, e)
        if v1 < 0:
            return -1
        p = _skip_ws(buf, v1, e)
        if p >= e or buf[p] != COMMA:
            return -1
        p = _skip_ws(buf, p + 1, e)
    return -1


@borrowed
def _envelope_end(buf, p, e):
    """After the data object: further key/value pairs, then the closing brace. Index after it, or -1."""
    p = _skip_ws(buf, p, e)
    while p < e and buf[p] == COMMA:
        p = _skip_ws(buf, p + 1, e)
        if p >= e or buf[p] != QUOTE:
            return -1
        v = _value_end(buf, p, e)
        if v < 0:
            return -1
        p = _skip_ws(buf, v, e)
        if p >= e or buf[p] != COLON:
            return -1
        v = _value_end(buf, _skip_ws(buf, p + 1, e), e)
        if v < 0:
            return -1
        p = _skip_ws(buf, v, e)
    if p < e and buf[p] == RBRACE:
        return p + 1
    return -1


@borrowed
def _ticker_rows(ru, ri, rf, nrow, x, ts, bid, bid_qty, ask, ask_qty):
    """bookTicker's rows with opt 't': custom events 103 (best bid) and 104 (best ask). Returns the new nrow."""
    _fill(ru, ri, nrow, nrow + 1, np.uint64(103), x, ts)
    _fill(ru, ri, nrow + 1, nrow + 2, np.uint64(104), x, ts)
    rf[nrow, 3] = bid
    rf[nrow, 4] = bid_qty
    rf[nrow + 1, 3] = ask
    rf[nrow + 1, 4] = ask_qty
    return nrow + 2


# --- fixed-layout fast path: the exact key order Binance sends (any deviation falls back to the scanner) ---

_FX_ENV = np.frombuffer(b'{"stream":"', np.uint8)
_FX_DATA = np.frombuffer(b'","data":{"e":"', np.uint8)
_FX_TICKER = np.frombuffer(b'bookTicker","u":', np.uint8)
_FX_TRADE = np.frombuffer(b'trade","E":', np.uint8)
_FX_DEPTH = np.frombuffer(b'depthUpdate","E":', np.uint8)
_FX_T = np.frombuffer(b',"T":', np.uint8)
_FX_E = np.frombuffer(b',"E":', np.uint8)
_FX_S = np.frombuffer(b',"s":', np.uint8)
_FX_B = np.frombuffer(b',"b":', np.uint8)
_FX_BQ = np.frombuffer(b',"B":', np.uint8)
_FX_A = np.frombuffer(b',"a":', np.uint8)
_FX_AQ = np.frombuffer(b',"A":', np.uint8)
_FX_TID = np.frombuffer(b',"t":', np.uint8)
_FX_P = np.frombuffer(b',"p":', np.uint8)
_FX_Q = np.frombuffer(b',"q":', np.uint8)
_FX_UU = np.frombuffer(b',"U":', np.uint8)
_FX_U = np.frombuffer(b',"u":', np.uint8)
_FX_PU = np.frombuffer(b',"pu":', np.uint8)
_FX_MARKET = np.frombuffer(b',"X":"MARKET","m":', np.uint8)
_FX_END = np.frombuffer(b'}}', np.uint8)


@borrowed
def _lit(buf, p, e, lit):
    """p + len(lit) if buf[p:] starts with lit, else -1 (p may already be -1)."""
    if p < 0 or p + len(lit) > e:
        return -1
    for q in range(len(lit)):
        if buf[p + q] != lit[q]:
            return -1
    return p + len(lit)


@borrowed
def _uint(buf, p, e):
    """(value, index after) of 1-18 digits at p, or (-1, -1)."""
    if p < 0:
        return -1, -1
    v = 0
    q = p
    while q < e and 48 <= buf[q] <= 57:
        v = v * 10 + (buf[q] - 48)
        q += 1
    if q == p or q - p > 18:
        return -1, -1
    return v, q




@borrowed
def _udec(buf, q, e):
    """Digits with one optional '.' up to a closing quote at q → (mantissa, fraction digits, index after the
    quote); mantissa -1 when it is not such a plain decimal below 2**53 (then the caller falls back)."""
    mant = 0
    frac = -1
    nd = 0
    while q < e:
        c = buf[q]
        if 48 <= c <= 57:
            mant = mant * 10 + (c - 48)
            nd += 1
            if frac >= 0:
                frac += 1
        elif c == 46 and frac < 0:
            frac = 0
        elif c == QUOTE:
            if nd == 0 or nd > 17 or mant > _MAX_EXACT:
                return -1, 0, -1
            return mant, max(frac, 0), q + 1
        else:
            return -1, 0, -1
        q += 1
    return -1, 0, -1


@borrowed
def _qdec(buf, p, e):
    """A quoted unsigned plain decimal at p → (ok, value, index after it); p may be -1."""
    if p < 0 or p >= e or buf[p] != QUOTE:
        return False, 0.0, -1
    m, f, q = _udec(buf, p + 1, e)
    if m < 0:
        return False, 0.0, -1
    return True, m / _P10[f], q


@borrowed
def _skip_str(buf, p, e):
    """Index after a JSON string without escapes at p (p may be -1), or -1."""
    if p < 0 or p >= e or buf[p] != QUOTE:
        return -1
    p += 1
    while p < e and buf[p] != QUOTE:
        if buf[p] == BACKSLASH or buf[p] == 10:
            return -1
        p += 1
    return p + 1 if p < e else -1


@borrowed(nogil=True)
def _levels_fixed(buf, p, e, rf, n):
    """`[["px","qty"],...]` without whitespace or signs at p into rf[n:, 3:5] → (end, new n) or (-1, n)."""
    if p >= e or buf[p] != LBRACK:
        return -1, n
    p += 1
    if p < e and buf[p] == RBRACK:
        return p + 1, n
    cap = rf.shape[0]
    while p + 2 < e and buf[p] == LBRACK and buf[p + 1] == QUOTE and n < cap:
        m1, f1, p = _udec(buf, p + 2, e)
        if m1 < 0 or p + 1 >= e or buf[p] != COMMA or buf[p + 1] != QUOTE:
            return -1, n
        m2, f2, p = _udec(buf, p + 2, e)
        if m2 < 0 or p + 1 >= e or buf[p] != RBRACK:
            return -1, n
        rf[n, 3] = m1 / _P10[f1]
        rf[n, 4] = m2 / _P10[f2]
        n += 1
        c = buf[p + 1]
        p += 2
        if c == RBRACK:
            return p, n
        if c != COMMA:
            return -1, n
    return -1, n


@borrowed(nogil=True)
def _fixed_line(buf, p, e, sym, opt_t, ru, ri, rf, nrow, ts, out):
    """Parse the JSON of a combined-stream bookTicker/trade/depthUpdate line laid out exactly as Binance sends it,
    writing its rows from nrow on. Returns the index just after the JSON (-1: not this layout; nothing is
    recorded and the generic scanner takes the line). out <- (kind, exch ms, id0, id1, id2, new nrow)."""
    p = _lit(buf, p, e, _FX_ENV)
    if p < 0:
        return -1
    while p < e and buf[p] != QUOTE:
        if buf[p] == BACKSLASH or buf[p] == 10:
            return -1
        p += 1
    p = _lit(buf, p, e, _FX_DATA)
    if p < 0:
        return -1
    q = _lit(buf, p, e, _FX_TICKER)
    if q >= 0:
        u, q = _uint(buf, q, e)
        q = _lit(buf, _lit(buf, q, e, _FX_S), e, sym)
        if opt_t:
            ok1, vb, q = _qdec(buf, _lit(buf, q, e, _FX_B), e)
            ok2, vbq, q = _qdec(buf, _lit(buf, q, e, _FX_BQ), e)
            ok3, va, q = _qdec(buf, _lit(buf, q, e, _FX_A), e)
            ok4, vaq, q = _qdec(buf, _lit(buf, q, e, _FX_AQ), e)
        else:  # the values are not used: only their shape is checked (as the key scanner would)
            vb = vbq = va = vaq = 0.0
            q = _skip_str(buf, _lit(buf, q, e, _FX_B), e)
            q = _skip_str(buf, _lit(buf, q, e, _FX_BQ), e)
            q = _skip_str(buf, _lit(buf, q, e, _FX_A), e)
            q = _skip_str(buf, _lit(buf, q, e, _FX_AQ), e)
            ok1 = ok2 = ok3 = ok4 = q >= 0
        t_ms, q = _uint(buf, _lit(buf, q, e, _FX_T), e)
        _, q = _uint(buf, _lit(buf, q, e, _FX_E), e)
        q = _lit(buf, q, e, _FX_END)
        if q < 0 or u < 0 or t_ms > _MAX_MS or not (ok1 and ok2 and ok3 and ok4):
            return -1
        if opt_t:
            nrow = _ticker_rows(ru, ri, rf, nrow, t_ms * 1_000_000, ts, vb, vbq, va, vaq)
        out[0], out[1], out[2], out[3], out[4], out[5] = KIND_TICKER, t_ms, u, -1, -1, nrow
        return q
    q = _lit(buf, p, e, _FX_TRADE)
    if q >= 0:
        _, q = _uint(buf, q, e)
        t_ms, q = _uint(buf, _lit(buf, q, e, _FX_T), e)
        q = _lit(buf, _lit(buf, q, e, _FX_S), e, sym)
        tid, q = _uint(buf, _lit(buf, q, e, _FX_TID), e)
        ok1, vp, q = _qdec(buf, _lit(buf, q, e, _FX_P), e)
        ok2, vq, q = _qdec(buf, _lit(buf, q, e, _FX_Q), e)
        q = _lit(buf, q, e, _FX_MARKET)
        if q < 0 or tid < 0 or t_ms > _MAX_MS or not (ok1 and ok2):
            return -1
        q2 = _lit(buf, q, e, _LIT_TRUE)
        if q2 >= 0:
            code = TRADE_SELL
        else:
            q2 = _lit(buf, q, e, _LIT_FALSE)
            code = TRADE_BUY
        q = _lit(buf, q2, e, _FX_END)
        if q < 0:
            return -1
        _fill(ru, ri, nrow, nrow + 1, code, t_ms * 1_000_000, ts)
        rf[nrow, 3] = vp
        rf[nrow, 4] = vq
        out[0], out[1], out[2], out[3], out[4], out[5] = KIND_TRADE, t_ms, tid, -1, -1, nrow + 1
        return q
    q = _lit(buf, p, e, _FX_DEPTH)
    if q >= 0:
        _, q = _uint(buf, q, e)
        t_ms, q = _uint(buf, _lit(buf, q, e, _FX_T), e)
        q = _lit(buf, _lit(buf, q, e, _FX_S), e, sym)
        first, q = _uint(buf, _lit(buf, q, e, _FX_UU), e)
        last, q = _uint(buf, _lit(buf, q, e, _FX_U), e)
        prev, q = _uint(buf, _lit(buf, q, e, _FX_PU), e)
        q = _lit(buf, q, e, _FX_B)
        if q < 0 or first < 0 or last < 0 or prev < 0 or t_ms > _MAX_MS:
            return -1
        b0 = nrow
        q, b1 = _levels_fixed(buf, q, e, rf, nrow)
        q = _lit(buf, q, e, _FX_A)
        if q < 0:
            return -1
        q, a1 = _levels_fixed(buf, q, e, rf, b1)
        q = _lit(buf, q, e, _FX_END)
        if q < 0:
            return -1
        x = t_ms * 1_000_000
        _fill(ru, ri, b0, b1, DEPTH_BUY, x, ts)
        _fill(ru, ri, b1, a1, DEPTH_SELL, x, ts)
        out[0], out[1], out[2], out[3], out[4], out[5] = KIND_DEPTH, t_ms, first, last, prev, a1
        return q
    return -1


ROW_MARGIN = 1 << 16  # rows kept free before each line (a diff line of n levels is > 10*n bytes long)


@borrowed
def _digits(buf, a, b):
    v = 0
    for q in range(a, b):
        v = v * 10 + (buf[q] - 48)
    return v


@borrowed(nogil=True)
def _parse_one(buf, pos, end, ts_digits, combined, ks, ke, rf, nrow):
    """Scan one line's timestamp and JSON object; fill ks/ke and the b/a level rows.

    Returns (index of the line's newline, or `end` when the buffer ends right after the JSON, or -1; and the
    b/a row spans).
    """
    q = pos
    while q < end and 48 <= buf[q] <= 57:
        q += 1
    if q - pos != ts_digits or q >= end or buf[q] != 32:
        return -1, -1, -1, -1, -1
    p = _skip_ws(buf, q + 1, end)
    if combined:
        d = _top_data(buf, p, end)
        if d < 0:
            return -1, -1, -1, -1, -1
        d_end, b0, b1, a0, a1 = _scan_event(buf, d, end, ks, ke, rf, nrow)
        if d_end < 0:
            return -1, -1, -1, -1, -1
        e = _envelope_end(buf, d_end, end)
    else:
        d_end, b0, b1, a0, a1 = _scan_event(buf, p, end, ks, ke, rf, nrow)
        e = d_end
    if e < 0:
        return -1, -1, -1, -1, -1
    e = _skip_ws(buf, e, end)
    if e < end and buf[e] != 10:
        return -1, -1, -1, -1, -1
    return e, b0, b1, a0, a1


@borrowed
def _fill(ru, ri, n0, n1, code, x, ts):
    for r in range(n0, n1):
        ru[r, 0] = code
        ri[r, 1] = x
        ri[r, 2] = ts
        ru[r, 5] = 0
        ru[r, 6] = 0
        ru[r, 7] = 0


@borrowed(nogil=True)
def parse_lines(buf, pos, end, final, line_no, ts_digits, ts_mul, combined, opt_m, opt_t, mark_use_e, sym,
                ru, ri, rf, nrow, margin, row_base, m_line, m_kind, m_local, m_exch, m_id0, m_id1, m_id2, m_row, nmsg,
                scratch):
    """Convert complete lines of buf[pos:end] until one needs the slow path or a table fills up.

    Rows go to an (n, 8) table seen as uint64/int64/float64 (`ru`/`ri`/`rf`, the same memory), whose rows
    are `event_dtype` records; `margin` rows are kept free before each line and `row_base` is added to the row
    numbers recorded per message. `sym` holds the expected symbol as a quoted JSON string; another symbol goes to
    the slow path so it can be reported; `scratch` is a (3, N_KEYS) int64 work array. Returns (status, pos,
    line_no, nrow, nmsg); line_no counts lines consumed (1-based).
    """
    buf = unowned(buf)
    sym = unowned(sym)
    ru = unowned(ru)
    ri = unowned(ri)
    rf = unowned(rf)
    ks = unowned(scratch[0])
    ke = unowned(scratch[1])
    fx = unowned(scratch[2])
    cap_rows = ru.shape[0]
    cap_msgs = len(m_line)
    while pos < end:
        if nmsg >= cap_msgs or cap_rows - nrow < margin:
            return ST_FULL, pos, line_no, nrow, nmsg
        # Fixed Binance layouts first: one pass, no key table.
        q = pos
        while q < end and 48 <= buf[q] <= 57:
            q += 1
        if combined and q - pos == ts_digits and q < end and buf[q] == 32 and len(sym) > 0:
            ts = _digits(buf, pos, q) * ts_mul
            q = _fixed_line(buf, q + 1, end, sym, opt_t, ru, ri, rf, nrow, ts, fx)
            if q >= 0 and (q < end and buf[q] == 10 or q >= end and final):
                line_no += 1
                m_line[nmsg] = line_no
                m_kind[nmsg] = fx[0]
                m_local[nmsg] = ts
                m_exch[nmsg] = fx[1] * 1_000_000
                m_id0[nmsg] = fx[2]
                m_id1[nmsg] = fx[3]
                m_id2[nmsg] = fx[4]
                m_row[nmsg] = nrow + row_base
                nmsg += 1
                nrow = fx[5]
                pos = q + 1
                continue
        # The JSON is scanned up to the chunk end (no separate newline pass); the line must end right after it.
        # Any failure looks for the newline: a line cut by the chunk end waits for more data, else slow path.
        nl, b0, b1, a0, a1 = _parse_one(buf, pos, end, ts_digits, combined, ks, ke, rf, nrow)
        if nl < 0:
            nl = line_end(buf, pos, end)
            if nl >= end and not final:
                return ST_DONE, pos, line_no, nrow, nmsg
            return ST_FALLBACK, pos, line_no, nrow, nmsg
        if nl >= end and not final:
            return ST_DONE, pos, line_no, nrow, nmsg  # the newline is not in this chunk yet
        ts = _digits(buf, pos, pos + ts_digits) * ts_mul
        if ks[K_EVT] < 0:
            return ST_FALLBACK, pos, line_no, nrow, nmsg
        ea = ks[K_EVT]
        eb = ke[K_EVT]
        if _bytes_eq(buf, ea, eb, _LIT_DEPTH):
            kind = KIND_DEPTH
        elif _bytes_eq(buf, ea, eb, _LIT_TRADE):
            kind = KIND_TRADE
        elif _bytes_eq(buf, ea, eb, _LIT_TICKER):
            kind = KIND_TICKER
        elif _bytes_eq(buf, ea, eb, _LIT_MARK):
            kind = KIND_MARK
        else:
            kind = KIND_OTHER
        if kind != KIND_OTHER and not _bytes_eq(buf, ks[K_S], ke[K_S], sym):
            return ST_FALLBACK, pos, line_no, nrow, nmsg
        t_ms = _parse_int(buf, ks[K_T], ke[K_T])
        if t_ms > _MAX_MS:  # ms * 1e6 must fit in int64: let the slow path raise a clear error
            return ST_FALLBACK, pos, line_no, nrow, nmsg
        id0 = -1
        id1 = -1
        id2 = -1
        row0 = nrow
        if kind == KIND_DEPTH:
            id0 = _parse_int(buf, ks[K_UU], ke[K_UU])
            id1 = _parse_int(buf, ks[K_U], ke[K_U])
            id2 = _parse_int(buf, ks[K_PU], ke[K_PU])
            if t_ms < 0 or id0 < 0 or id1 < 0 or id2 < 0 or b0 < 0 or a0 < 0 or a0 < b0:
                return ST_FALLBACK, pos, line_no, nrow, nmsg
            x = t_ms * 1_000_000
            _fill(ru, ri, b0, b1, DEPTH_BUY, x, ts)
            _fill(ru, ri, a0, a1, DEPTH_SELL, x, ts)
            nrow = a1
        elif kind == KIND_TRADE:
            id0 = _parse_int(buf, ks[K_TID], ke[K_TID])
            if t_ms < 0 or ks[K_X] < 0 or ks[K_M] < 0:
                return ST_FALLBACK, pos, line_no, nrow, nmsg
            if _bytes_eq(buf, ks[K_X], ke[K_X], _LIT_MARKET):
                if _bytes_eq(buf, ks[K_M], ke[K_M], _LIT_TRUE):
                    code = TRADE_SELL
                elif _bytes_eq(buf, ks[K_M], ke[K_M], _LIT_FALSE):
                    code = TRADE_BUY
                else:
                    return ST_FALLBACK, pos, line_no, nrow, nmsg
                ok1, vp = _parse_str_float(buf, ks[K_P], ke[K_P])
                ok2, vq = _parse_str_float(buf, ks[K_Q], ke[K_Q])
                if not (ok1 and ok2):
                    return ST_FALLBACK, pos, line_no, nrow, nmsg
                _fill(ru, ri, nrow, nrow + 1, code, t_ms * 1_000_000, ts)
                rf[nrow, 3] = vp
                rf[nrow, 4] = vq
                nrow += 1
            else:
                id1 = 1  # non-MARKET trade: no row (reference behaviour), counted by the report
        elif kind == KIND_TICKER:
            id0 = _parse_int(buf, ks[K_U], ke[K_U])
            if t_ms < 0:
                return ST_FALLBACK, pos, line_no, nrow, nmsg
            if opt_t:
                ok1, vb = _parse_str_float(buf, ks[K_B], ke[K_B])
                ok2, vbq = _parse_str_float(buf, ks[K_BQ], ke[K_BQ])
                ok3, va = _parse_str_float(buf, ks[K_A], ke[K_A])
                ok4, vaq = _parse_str_float(buf, ks[K_AQ], ke[K_AQ])
                if not (ok1 and ok2 and ok3 and ok4):
                    return ST_FALLBACK, pos, line_no, nrow, nmsg
                nrow = _ticker_rows(ru, ri, rf, nrow, t_ms * 1_000_000, ts, vb, vbq, va, vaq)
        elif kind == KIND_MARK:
            t_next = t_ms  # T: the next funding time
            if mark_use_e:
                t_ms = _parse_int(buf, ks[K_E], ke[K_E])
            if t_ms < 0 or t_ms > _MAX_MS:
                return ST_FALLBACK, pos, line_no, nrow, nmsg
            if opt_m:
                ok1, vi = _parse_str_float(buf, ks[K_I], ke[K_I])
                ok2, vm = _parse_str_float(buf, ks[K_P], ke[K_P])
                ok3, vr = _parse_str_float(buf, ks[K_R], ke[K_R])
                if not (ok1 and ok2 and ok3):
                    return ST_FALLBACK, pos, line_no, nrow, nmsg
                x = t_ms * 1_000_000
                for r in range(3):
                    _fill(ru, ri, nrow + r, nrow + r + 1, np.uint64(100 + r), x, ts)
                    rf[nrow + r, 4] = 0.0
                rf[nrow, 3] = vi
                rf[nrow + 1, 3] = vm
                rf[nrow + 2, 3] = vr
                if mark_use_e and t_next > 0:  # keep the funding time the rate applies to (ival of row 102)
                    ri[nrow + 2, 6] = t_next * 1_000_000
                nrow += 3
        line_no += 1
        m_line[nmsg] = line_no
        m_kind[nmsg] = kind
        m_local[nmsg] = ts
        m_exch[nmsg] = t_ms * 1_000_000 if t_ms >= 0 else -1
        m_id0[nmsg] = id0
        m_id1[nmsg] = id1
        m_id2[nmsg] = id2
        m_row[nmsg] = row0 + row_base
        nmsg += 1
        pos = nl + 1
    return ST_DONE, pos, line_no, nrow, nmsg


@borrowed
def line_end(buf, pos, end):
    while pos < end and buf[pos] != 10:
        pos += 1
    return pos
