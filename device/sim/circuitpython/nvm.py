# CircuitPython `nvm` for the virtual board: microcontroller.nvm is a fixed-size ByteArray (8192 bytes on
# the ESP32-S3 Feathers, kept in the NVS partition on hardware). Here it is kept in the board directory
# (cpy_nvm.bin), or in memory without one; every write is persisted at once, like the hardware.
import simboard

SIZE = 8192
_TOKEN = object()


def _load(b):
    data = getattr(b, "cpy_nvm", None)
    if data is None:
        data = bytearray(b"\xff" * SIZE)  # erased flash
        path = b.path("cpy_nvm.bin")
        if path is not None:
            try:
                with open(path, "rb") as f:
                    raw = f.read()
                data[:len(raw[:SIZE])] = raw[:SIZE]
            except OSError:
                pass
        b.cpy_nvm = data
    return data


def _save(b, data):
    path = b.path("cpy_nvm.bin")
    if path is not None:
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        import os
        os.rename(tmp, path)


class ByteArray:
    """Non-volatile bytes: len(), indexing and slicing; a slice assignment must keep the length."""

    def __init__(self, _token=None):
        if _token is not _TOKEN:
            raise TypeError("cannot create 'ByteArray' instances")

    def __bool__(self):
        return True

    def __len__(self):
        return SIZE

    def _range(self, index):
        start, stop, step = index.indices(SIZE) if hasattr(index, "indices") else _indices(index, SIZE)
        if step != 1:
            raise NotImplementedError("only slices with step=1 (aka None) are supported")
        return start, max(start, stop)

    def __getitem__(self, index):
        data = _load(simboard.board())
        if isinstance(index, int):
            if index < 0:
                index += SIZE
            if not 0 <= index < SIZE:
                raise IndexError("ByteArray index out of range")
            return data[index]
        start, stop = self._range(index)
        return bytearray(data[start:stop])

    def __setitem__(self, index, value):
        b = simboard.board()
        data = _load(b)
        if isinstance(index, int):
            if index < 0:
                index += SIZE
            if not 0 <= index < SIZE:
                raise IndexError("ByteArray index out of range")
            if not isinstance(value, int) or not 0 <= value <= 255:
                raise ValueError("Array values should be single bytes")
            data[index] = value
        else:
            start, stop = self._range(index)
            value = bytes(value)
            if len(value) != stop - start:
                raise ValueError("Slice and value different lengths.")
            data[start:stop] = value
        _save(b, data)


def _indices(s, n):  # MicroPython slices have no .indices()
    step = 1 if s.step is None else s.step
    start = 0 if s.start is None else s.start
    stop = n if s.stop is None else s.stop
    if start < 0:
        start = max(0, start + n)
    if stop < 0:
        stop = max(0, stop + n)
    return min(start, n), min(stop, n), step
