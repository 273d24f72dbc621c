# A small, strict MessagePack codec for the fieldlink wire (device side; also imports under CPython).
#
# Encoding is byte-identical to msgpack.packb(obj, use_bin_type=True) of the PyPI `msgpack` library
# for the supported types: smallest integer encoding (unsigned formats for values >= 0), str as
# fixstr/str8/str16/str32, bytes/bytearray/memoryview as bin8/16/32, list/tuple as array, dict as map
# (in the dict's iteration order; on MicroPython that is hash order, not insertion order), float as
# float64 (0xcb) or, with use_single_float=True, float32 (0xca).
#
# Decoding: nil, bool, all int formats, float32/float64, str (strict UTF-8) -> str, bin -> bytes,
# array -> list, map -> dict. Rejected with DecodeError: ext/fixext types (0xc7-0xc9, 0xd4-0xd8,
# including the timestamp extension), the reserved byte 0xc1, truncated data, invalid UTF-8, map keys
# that are containers, nesting deeper than MAX_DEPTH containers, and any container whose declared
# length cannot fit in the remaining input (an array item needs >= 1 byte, a map entry >= 2), so a
# hostile 5-byte input can never make the decoder allocate more than the input justifies.
# Duplicate map keys: the last value wins. The decoder is iterative (no Python recursion).
import struct

from fieldlink.errors import DecodeError, EncodeError

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

MAX_DEPTH = const(32)  # max container nesting for both encode and decode

_NO_KEY = object()  # marks "map is waiting for a key"
_F32_INF = b"\x7f\x80\x00\x00"
_F32_NINF = b"\xff\x80\x00\x00"


# ---------------------------------------------------------------------------------------- encoding

def _pack_int(n, out):
    if n >= 0:
        if n < 0x80:
            out.append(n)
        elif n < 0x100:
            out.append(0xCC)
            out.append(n)
        elif n < 0x10000:
            out += struct.pack(">BH", 0xCD, n)
        elif n < 0x100000000:
            out += struct.pack(">BI", 0xCE, n)
        elif n < 0x10000000000000000:
            out += struct.pack(">BQ", 0xCF, n)
        else:
            raise EncodeError("int too large for msgpack: %d" % n)
    else:
        if n >= -32:
            out.append(n & 0xFF)
        elif n >= -0x80:
            out += struct.pack(">Bb", 0xD0, n)
        elif n >= -0x8000:
            out += struct.pack(">Bh", 0xD1, n)
        elif n >= -0x80000000:
            out += struct.pack(">Bi", 0xD2, n)
        elif n >= -0x8000000000000000:
            out += struct.pack(">Bq", 0xD3, n)
        else:
            raise EncodeError("int too small for msgpack: %d" % n)


def _pack_len(n, out, fix, fixmax, c8, c16, c32):
    # fix < 0 means the type has no fix form (bin); c8 == 0 means no 8-bit form (array, map)
    if fix >= 0 and n <= fixmax:
        out.append(fix | n)
    elif c8 and n < 0x100:
        out.append(c8)
        out.append(n)
    elif n < 0x10000:
        out += struct.pack(">BH", c16, n)
    elif n < 0x100000000:
        out += struct.pack(">BI", c32, n)
    else:
        raise EncodeError("object too long for msgpack: %d" % n)


def _pack(obj, out, depth, single):
    if obj is None:
        out.append(0xC0)
    elif obj is False:
        out.append(0xC2)
    elif obj is True:
        out.append(0xC3)
    elif isinstance(obj, int):
        _pack_int(obj, out)
    elif isinstance(obj, float):
        if single:
            try:
                b = struct.pack(">Bf", 0xCA, obj)
            except OverflowError:
                b = b"\xca" + _F32_INF
            if b[1:] in (_F32_INF, _F32_NINF) and obj * 0 == 0:  # finite value overflowed to inf
                raise EncodeError("float out of float32 range: %r" % obj)
            out += b
        else:
            out += struct.pack(">Bd", 0xCB, obj)
    elif isinstance(obj, str):
        try:
            b = obj.encode("utf-8")
        except UnicodeError:
            raise EncodeError("str is not encodable as UTF-8")
        _pack_len(len(b), out, 0xA0, 31, 0xD9, 0xDA, 0xDB)
        out += b
    elif isinstance(obj, (bytes, bytearray)):
        _pack_len(len(obj), out, -1, 0, 0xC4, 0xC5, 0xC6)
        out += obj
    elif isinstance(obj, memoryview):
        b = bytes(obj)
        _pack_len(len(b), out, -1, 0, 0xC4, 0xC5, 0xC6)
        out += b
    elif isinstance(obj, (list, tuple)):
        depth += 1
        if depth > MAX_DEPTH:
            raise EncodeError("nesting deeper than %d" % MAX_DEPTH)
        _pack_len(len(obj), out, 0x90, 15, 0, 0xDC, 0xDD)
        for x in obj:
            _pack(x, out, depth, single)
    elif isinstance(obj, dict):
        depth += 1
        if depth > MAX_DEPTH:
            raise EncodeError("nesting deeper than %d" % MAX_DEPTH)
        _pack_len(len(obj), out, 0x80, 15, 0, 0xDE, 0xDF)
        for k, v in obj.items():
            _pack(k, out, depth, single)
            _pack(v, out, depth, single)
    else:
        raise EncodeError("cannot encode %s to msgpack" % type(obj).__name__)


def packb(obj, use_single_float=False):
    """Encode obj as msgpack bytes. Raises EncodeError for unsupported types/ranges/depth."""
    out = bytearray()
    _pack(obj, out, 0, use_single_float)
    return bytes(out)


# ---------------------------------------------------------------------------------------- decoding

def _utf8_ok(b, i, end):
    # Strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF). CPython's decoder already is
    # strict; MicroPython's accepts overlong forms and surrogates, so non-ASCII strings are checked
    # here on both runtimes for identical behaviour.
    while i < end:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            n = 1
        elif 0xE0 <= c <= 0xEF:
            n = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif 0xF0 <= c <= 0xF4:
            n = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return False
        if i + n >= end:
            return False
        c = b[i + 1]
        if c < lo or c > hi:
            return False
        k = 2
        while k <= n:
            if b[i + k] & 0xC0 != 0x80:
                return False
            k += 1
        i += n + 1
    return True


def _str(buf, p, n):
    try:
        s = str(buf[p:p + n], "utf-8")
    except (UnicodeError, ValueError):
        raise DecodeError("msgpack: invalid UTF-8 in str")
    if len(s) != n and not _utf8_ok(buf, p, p + n):
        raise DecodeError("msgpack: invalid UTF-8 in str")
    return s


def _truncated():
    return DecodeError("msgpack: truncated data")


def _decode(buf, pos, end):
    # Iterative decoder. stack entries: [container, items_left, key] where key is _NO_KEY for maps
    # waiting for a key and for lists (unused).
    stack = []
    while True:
        if pos >= end:
            raise _truncated()
        c = buf[pos]
        pos += 1
        n = -1  # container length when c starts a container
        is_map = False
        if c < 0x80:
            val = c
        elif c >= 0xE0:
            val = c - 0x100
        elif c < 0x90:
            n = c & 0x0F
            is_map = True
        elif c < 0xA0:
            n = c & 0x0F
        elif c < 0xC0:
            m = c & 0x1F
            if pos + m > end:
                raise _truncated()
            val = _str(buf, pos, m)
            pos += m
        elif c == 0xC0:
            val = None
        elif c == 0xC2:
            val = False
        elif c == 0xC3:
            val = True
        elif c == 0xC1:
            raise DecodeError("msgpack: reserved byte 0xc1")
        elif c <= 0xC6:  # bin 8/16/32
            w = 1 << (c - 0xC4)
            if pos + w > end:
                raise _truncated()
            m = struct.unpack_from((">B", ">H", "", ">I")[w - 1], buf, pos)[0]
            pos += w
            if pos + m > end:
                raise _truncated()
            val = bytes(buf[pos:pos + m])
            pos += m
        elif c <= 0xC9 or 0xD4 <= c <= 0xD8:
            raise DecodeError("msgpack: ext types are not supported (0x%02x)" % c)
        elif c <= 0xD3:  # 0xca..0xd3: float32, float64, uint8..64, int8..64
            fmt, w = _NUM[c - 0xCA]
            if pos + w > end:
                raise _truncated()
            val = struct.unpack_from(fmt, buf, pos)[0]
            pos += w
        elif c <= 0xDB:  # str 8/16/32
            w = 1 << (c - 0xD9)
            if pos + w > end:
                raise _truncated()
            m = struct.unpack_from((">B", ">H", "", ">I")[w - 1], buf, pos)[0]
            pos += w
            if pos + m > end:
                raise _truncated()
            val = _str(buf, pos, m)
            pos += m
        else:  # 0xdc..0xdf: array16, array32, map16, map32
            w = 2 if c & 1 == 0 else 4
            if pos + w > end:
                raise _truncated()
            n = struct.unpack_from(">H" if w == 2 else ">I", buf, pos)[0]
            pos += w
            is_map = c >= 0xDE

        if n >= 0:  # container header
            if len(stack) >= MAX_DEPTH:
                raise DecodeError("msgpack: nesting deeper than %d" % MAX_DEPTH)
            if n:
                if (2 * n if is_map else n) > end - pos:
                    raise DecodeError("msgpack: container length %d exceeds remaining input" % n)
                if is_map:
                    stack.append([{}, n, _NO_KEY])
                else:
                    stack.append([[], n, None])
                continue
            val = {} if is_map else []

        # attach val to the enclosing containers, closing every container that becomes complete
        while stack:
            top = stack[-1]
            cont = top[0]
            if isinstance(cont, list):
                cont.append(val)
            elif top[2] is _NO_KEY:
                if isinstance(val, (list, dict)):
                    raise DecodeError("msgpack: map key must not be a container")
                top[2] = val
                break  # now wait for the value
            else:
                cont[top[2]] = val
                top[2] = _NO_KEY
            top[1] -= 1
            if top[1]:
                break
            stack.pop()
            val = cont
        else:
            return val, pos


# struct format and width for 0xca..0xd3
_NUM = (
    (">f", 4), (">d", 8),
    (">B", 1), (">H", 2), (">I", 4), (">Q", 8),
    (">b", 1), (">h", 2), (">i", 4), (">q", 8),
)


def _check_buf(data):
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    raise TypeError("msgpack: need bytes, bytearray or memoryview, not %s" % type(data).__name__)


def unpack_from(buf, offset=0):
    """Decode one msgpack object from buf at offset. Returns (obj, next_offset).

    Raises DecodeError for malformed, truncated or unsupported input.
    """
    buf = _check_buf(buf)
    end = len(buf)
    if not 0 <= offset <= end:
        raise DecodeError("msgpack: offset %d outside buffer of %d bytes" % (offset, end))
    return _decode(buf, offset, end)


def unpackb(data):
    """Decode exactly one msgpack object; trailing bytes raise DecodeError."""
    data = _check_buf(data)
    obj, pos = _decode(data, 0, len(data))
    if pos != len(data):
        raise DecodeError("msgpack: %d trailing bytes" % (len(data) - pos))
    return obj
