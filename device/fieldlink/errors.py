# Errors raised by the fieldlink wire codecs (mpack, cobs, frame).
#
# DecodeError is THE documented error for bad wire input: every codec raises it (and only it) for
# malformed, truncated, hostile or otherwise undecodable bytes -- never IndexError, KeyError,
# struct.error or UnicodeError. Both derive from ValueError so callers that already catch ValueError
# keep working. Passing an object of the wrong Python type (e.g. a str where bytes are expected) is a
# programming error and raises TypeError instead.


class DecodeError(ValueError):
    """Bad wire input: malformed, truncated or hostile bytes, CRC mismatch, unsupported type."""


class EncodeError(ValueError):
    """An object that cannot be put on the wire (unsupported type, out of range, too deep, too long)."""
