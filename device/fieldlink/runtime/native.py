# The one place that chooses between the native C core (the `flnative` module: a natmod .mpy in the
# bundle or frozen into the firmware, docs/native.md) and the pure-Python code. The parts ask module()
# here when they create their objects:
#   "frame"  serial frames: CRC16 + COBS encode, the streaming FrameDecoder (fieldlink.codec.native_frame,
#            used by the gateway uplink)
#   "rules"  the rules VM (fieldlink.rules.native_vm; the verifier that builds the Program stays Python:
#            it runs once per load)
# impl() says which one runs; gateway and node `status` report it. Both implementations give identical
# results and use the same rules state array (tests/native/), so falling back never changes behaviour.
# This module imports no part, so that each role's bundle carries only the parts it uses.

try:
    import flnative as _flnative
    if getattr(_flnative, "FORMAT", 0) != 2:  # a module built from another binding version
        _flnative = None
except ImportError:
    _flnative = None

_N = [_flnative]


def module():
    """The native module in use, or None."""
    return _N[0]


def use(module):
    """Select the native module (or None for pure Python) for objects created from now on (tests)."""
    _N[0] = module


def impl():
    """{"frame": "native"|"python", "rules": "native"|"python"}"""
    n = "native" if _N[0] is not None else "python"
    return {"frame": n, "rules": n}
