# Verify-only Ed25519 (RFC 8032, pure Python, MicroPython and CPython). verify(pub, msg, sig) -> bool.
#
# Check: S < L, A decodes, then encode([S]B - [k]A) == R with k = SHA-512(R || A || M) mod L (the
# cofactorless equation OpenSSL, libsodium and ref10 use; non-canonical R therefore fails). Speed
# (docs/ota.md "Verify time"): extended twisted Edwards coordinates, one joint double-and-add over the
# width-w NAFs of S (w=7, odd multiples of B precomputed once as affine ints) and k (w=5, odd multiples
# of -A per call), mixed additions with the affine table (7 multiplications instead of 8), and plain
# big-int % P reductions (folding 2^255 = 19 by hand measured only ~10 % faster under MicroPython).
from fieldlink.ota.sha512 import sha512

P = (1 << 255) - 19
L = (1 << 252) + 27742317777372353535851937790883648493
D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
D2 = (2 * D) % P
SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_MASK = (1 << 255) - 1
WB = 7  # NAF width for the fixed base point (table of 2^(WB-2) = 32 affine points)
WA = 5  # NAF width for the public key (8 points per verify)


def _pow(b, e):
    try:
        return pow(b, e, P)
    except (TypeError, NotImplementedError, ValueError):  # port without 3-argument pow
        r = 1
        b %= P
        while e:
            if e & 1:
                r = r * b % P
            b = b * b % P
            e >>= 1
        return r


def _inv(z):
    return _pow(z, P - 2)


def _dbl(X, Y, Z):
    # dbl-2008-hwcd with a = -1; T of the input is not needed
    A = X * X % P
    B = Y * Y % P
    C = 2 * Z * Z % P
    s = X + Y
    E = s * s - A - B
    G = B - A
    F = G - C
    H = -A - B
    return E * F % P, G * H % P, F * G % P, E * H % P


def _add(X, Y, Z, T, c0, c1, c2, c3):
    # add-2008-hwcd-3 (a = -1) with Q cached as (Y-X, Y+X, 2d*T, 2Z); c3 None: Q affine (Z = 1)
    A = (Y - X) * c0 % P
    B = (Y + X) * c1 % P
    C = T * c2 % P
    Dd = 2 * Z if c3 is None else Z * c3 % P
    E = B - A
    F = Dd - C
    G = Dd + C
    H = B + A
    return E * F % P, G * H % P, F * G % P, E * H % P


def _cached(X, Y, Z, T):
    return ((Y - X) % P, (Y + X) % P, T * D2 % P, 2 * Z % P)


def _odd_multiples(X, Y, Z, T, n):
    """[1P, 3P, ..., (2n-1)P] in extended coordinates."""
    out = [(X, Y, Z, T)]
    X2, Y2, Z2, T2 = _dbl(X, Y, Z)
    c = _cached(X2, Y2, Z2, T2)
    for _ in range(n - 1):
        X, Y, Z, T = _add(X, Y, Z, T, c[0], c[1], c[2], c[3])
        out.append((X, Y, Z, T))
    return out


_BASE = []


def _base_table():
    """Odd multiples of B as affine cached triples (y-x, y+x, 2d*x*y), computed on first use with one
    shared inversion (Montgomery's trick)."""
    if _BASE:
        return _BASE
    pts = _odd_multiples(BX, BY, 1, BX * BY % P, 1 << (WB - 2))
    n = len(pts)
    acc = [1] * (n + 1)
    for i in range(n):
        acc[i + 1] = acc[i] * pts[i][2] % P
    inv = _inv(acc[n])
    zi = [0] * n
    for i in range(n - 1, -1, -1):
        zi[i] = inv * acc[i] % P
        inv = inv * pts[i][2] % P
    for i in range(n):
        x = pts[i][0] * zi[i] % P
        y = pts[i][1] * zi[i] % P
        _BASE.append(((y - x) % P, (y + x) % P, x * y % P * D2 % P))
    return _BASE


def _naf(k, w):
    out = [0] * 256
    half = 1 << (w - 1)
    full = 1 << w
    i = 0
    while k:
        if k & 1:
            d = k & (full - 1)
            if d >= half:
                d -= full
            k -= d
            out[i] = d
        k >>= 1
        i += 1
    return out


def decode_point(s):
    """(x, y) from a 32-byte encoding, or None if it is not a point on the curve (RFC 8032 5.1.3)."""
    if len(s) != 32:
        return None
    v = int.from_bytes(s, "little")
    sign = v >> 255
    y = v & _MASK
    if y >= P:
        return None
    y2 = y * y % P
    u = (y2 - 1) % P
    w = (D * y2 + 1) % P
    w3 = w * w % P * w % P
    x = u * w3 % P * _pow(u * w3 % P * w3 % P * w % P, (P - 5) // 8) % P
    vx2 = w * x % P * x % P
    if vx2 != u:
        if vx2 != (P - u) % P:
            return None
        x = x * SQRT_M1 % P
    if x == 0 and sign:
        return None
    if (x & 1) != sign:
        x = P - x
    return x, y


def encode_point(X, Y, Z):
    zi = _inv(Z)
    x = X * zi % P
    y = Y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def double_scalar(s, k, ax, ay):
    """[s]B + [k](ax, ay) in extended coordinates (s, k < 2^253)."""
    base = _base_table()
    ta = [_cached(*q) for q in _odd_multiples(ax, ay, 1, ax * ay % P, 1 << (WA - 2))]
    ns = _naf(s, WB)
    nk = _naf(k, WA)
    top = 255
    while top >= 0 and ns[top] == 0 and nk[top] == 0:
        top -= 1
    X, Y, Z, T = 0, 1, 1, 0
    i = top
    while i >= 0:
        X, Y, Z, T = _dbl(X, Y, Z)
        d = ns[i]
        if d > 0:
            c = base[d >> 1]
            X, Y, Z, T = _add(X, Y, Z, T, c[0], c[1], c[2], None)
        elif d < 0:
            c = base[(-d) >> 1]
            X, Y, Z, T = _add(X, Y, Z, T, c[1], c[0], P - c[2], None)
        d = nk[i]
        if d > 0:
            c = ta[d >> 1]
            X, Y, Z, T = _add(X, Y, Z, T, c[0], c[1], c[2], c[3])
        elif d < 0:
            c = ta[(-d) >> 1]
            X, Y, Z, T = _add(X, Y, Z, T, c[1], c[0], P - c[2], c[3])
        i -= 1
    return X, Y, Z, T


def verify(pub, msg, sig):
    """True if sig (64 bytes) is a valid Ed25519 signature of msg by the 32-byte public key pub."""
    if len(pub) != 32 or len(sig) != 64:
        return False
    r = bytes(sig[:32])
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        return False
    a = decode_point(pub)
    if a is None:
        return False
    h = sha512(r)
    h.update(pub)
    h.update(msg)
    k = int.from_bytes(h.digest(), "little") % L
    X, Y, Z, _ = double_scalar(s, (L - k) % L, a[0], a[1])
    return encode_point(X, Y, Z) == r
