# Virtual-board `esp32` module: Partition (file-backed flash with real NOR semantics and ESP-IDF OTA
# rollback), NVS (file-backed, commit semantics), and a few helpers.
#
# Flash: each partition is BOARD_DIR/flash/<label>.bin (in memory without a board dir). Erased flash
# reads 0xFF; programming can only clear bits (new = old & data); erase works on 4096-byte sectors.
# OTA: BOARD_DIR/sim_state.json "ota" holds what otadata holds on the chip. set_boot() marks the slot
# NEW; the next boot makes it PENDING_VERIFY; if it boots again while still pending (the app did not
# call Partition.mark_app_valid_cancel_rollback()), the bootloader marks it ABORTED and boots the
# previous slot -- ESP-IDF's CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE behaviour, which MicroPython enables.
import simboard
import simfs

SECTOR = 4096
ESP_ERR_INVALID_ARG = 0x102
ESP_ERR_INVALID_SIZE = 0x104
ESP_ERR_NOT_FOUND = 0x105
ESP_ERR_NVS_NOT_FOUND = 0x1102
ESP_ERR_NVS_TYPE_MISMATCH = 0x1103
ESP_ERR_NVS_NOT_ENOUGH_SPACE = 0x1105
ESP_ERR_NVS_INVALID_NAME = 0x1106
ESP_ERR_NVS_KEY_TOO_LONG = 0x1109
ESP_ERR_NVS_INVALID_LENGTH = 0x110C
ESP_ERR_NVS_VALUE_TOO_LONG = 0x110E
ESP_ERR_OTA_VALIDATE_FAILED = 0x1503
ESP_ERR_OTA_ROLLBACK_INVALID_STATE = 0x1505
ESP_IMAGE_HEADER_MAGIC = 0xE9

_ERR_NAMES = {
    ESP_ERR_INVALID_ARG: "ESP_ERR_INVALID_ARG", ESP_ERR_INVALID_SIZE: "ESP_ERR_INVALID_SIZE",
    ESP_ERR_NOT_FOUND: "ESP_ERR_NOT_FOUND", ESP_ERR_NVS_NOT_FOUND: "ESP_ERR_NVS_NOT_FOUND",
    ESP_ERR_NVS_TYPE_MISMATCH: "ESP_ERR_NVS_TYPE_MISMATCH",
    ESP_ERR_NVS_NOT_ENOUGH_SPACE: "ESP_ERR_NVS_NOT_ENOUGH_SPACE",
    ESP_ERR_NVS_INVALID_NAME: "ESP_ERR_NVS_INVALID_NAME", ESP_ERR_NVS_KEY_TOO_LONG: "ESP_ERR_NVS_KEY_TOO_LONG",
    ESP_ERR_NVS_INVALID_LENGTH: "ESP_ERR_NVS_INVALID_LENGTH",
    ESP_ERR_NVS_VALUE_TOO_LONG: "ESP_ERR_NVS_VALUE_TOO_LONG",
    ESP_ERR_OTA_VALIDATE_FAILED: "ESP_ERR_OTA_VALIDATE_FAILED",
    ESP_ERR_OTA_ROLLBACK_INVALID_STATE: "ESP_ERR_OTA_ROLLBACK_INVALID_STATE",
}


def esp_error(code):
    """The OSError MicroPython's check_esp_err() raises: OSError(-code, 'ESP_ERR_...')."""
    return OSError(-code, _ERR_NAMES.get(code, "ESP_ERR_0x%x" % code))


HEAP_DATA = 4
HEAP_EXEC = 1
WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True

_APP_SUB = {"factory": 0x00, "test": 0x20}
for _i in range(16):
    _APP_SUB["ota_%d" % _i] = 0x10 + _i
_DATA_SUB = {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04, "efuse": 0x05,
             "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83}


def _subtype(p):
    st = p["subtype"]
    if isinstance(st, int):
        return st
    table = _APP_SUB if p["type"] == "app" else _DATA_SUB
    if st not in table:
        raise ValueError("unknown partition subtype %r" % (st,))
    return table[st]


def _ptype(p):
    t = p["type"]
    if isinstance(t, int):
        return t
    return 0 if t == "app" else 1


# ---- flash storage -----------------------------------------------------------------------------------
class _Store:
    """Bytes of one partition: a file under BOARD_DIR/flash/ (shorter than the partition = rest erased)
    or, without a board dir, a dict of 4 KiB sectors kept on the board object. The file is a host file
    (simfs), opened once per board and label and kept open: LittleFS does many small reads."""

    def __init__(self, board, label, size):
        self.size = size
        self.path = None
        self.board = board
        self.label = label
        if board.dir is not None:
            simboard._mkdir(board.dir + "/flash")
            self.path = board.dir + "/flash/" + label + ".bin"
            self.mem = None
        else:
            mems = getattr(board, "flash_mem", None)
            if mems is None:
                mems = board.flash_mem = {}
            self.mem = mems.setdefault(label, {})

    def _file(self, create):
        files = getattr(self.board, "flash_files", None)
        if files is None:
            files = self.board.flash_files = {}
        f = files.get(self.label)
        if f is None:
            try:
                f = simfs.hopen(self.path, "r+b")
            except OSError:
                if not create:
                    return None
                f = simfs.hopen(self.path, "w+b")
            files[self.label] = f
        return f

    def read(self, off, n):
        if self.mem is not None:
            out = bytearray(n)
            i = 0
            while i < n:
                a = off + i
                sec, so = divmod(a, SECTOR)
                k = min(n - i, SECTOR - so)
                blk = self.mem.get(sec)
                out[i:i + k] = blk[so:so + k] if blk is not None else b"\xff" * k
                i += k
            return bytes(out)
        f = self._file(False)
        data = b""
        if f is not None:
            f.seek(off)
            data = f.read(n)
        if len(data) < n:
            data = data + b"\xff" * (n - len(data))
        return data

    def write_raw(self, off, data):
        if self.mem is not None:
            i = 0
            n = len(data)
            while i < n:
                a = off + i
                sec, so = divmod(a, SECTOR)
                k = min(n - i, SECTOR - so)
                blk = self.mem.get(sec)
                if blk is None:
                    blk = self.mem[sec] = bytearray(b"\xff" * SECTOR)
                blk[so:so + k] = data[i:i + k]
                i += k
            return
        f = self._file(True)
        f.seek(0, 2)
        end = f.tell()
        if end < off:
            pad = off - end
            while pad > 0:
                k = min(pad, SECTOR)
                f.write(b"\xff" * k)
                pad -= k
        f.seek(off)
        f.write(data)
        f.flush()

    def program(self, off, data):
        old = self.read(off, len(data))
        if old == b"\xff" * len(data):  # programming erased flash (the usual case): the data itself
            new = bytes(data)
        else:
            new = bytes(a & b for a, b in zip(old, data))
        self.write_raw(off, new)

    def erase(self, off, n):
        self.write_raw(off, b"\xff" * n)


# ---- OTA / bootloader ------------------------------------------------------------------------------
def _ota(board):
    o = board.state.get("ota")
    if o is None:
        o = board.state["ota"] = {"boot": None, "prev": None, "states": {}, "running": None}
    return o


def _apps(board):
    return [p for p in board.partitions if p["type"] in ("app", 0)]


def _bootloader(board):
    """Run at every boot (simboard.Board.boot): choose the app slot, apply rollback."""
    o = _ota(board)
    apps = _apps(board)
    if not apps:
        o["running"] = None
        return
    labels = [p["name"] for p in apps]
    target = o.get("boot")
    if target not in labels:
        target = None
    if target is None:
        fac = [p["name"] for p in apps if p["subtype"] in ("factory", 0)]
        target = fac[0] if fac else labels[0]
    states = o["states"]
    st = states.get(target)
    if st == "new":
        states[target] = "pending"
    elif st == "pending":  # booted before and never confirmed: roll back
        states[target] = "aborted"
        prev = o.get("prev")
        if prev not in labels or states.get(prev) in ("aborted", "invalid"):
            fac = [p["name"] for p in apps if p["subtype"] in ("factory", 0)]
            prev = fac[0] if fac else labels[0]
        print("bootloader: app %s not confirmed, rolling back to %s" % (target, prev))
        o["boot"] = prev
        target = prev
    o["running"] = target


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096):
        b = simboard.board()
        if not isinstance(block_size, int) or block_size < 512 or block_size & (block_size - 1):
            raise ValueError("invalid block size")
        if id == Partition.RUNNING or id == Partition.BOOT:
            o = _ota(b)
            label = o.get("running") if id == Partition.RUNNING else (o.get("boot") or o.get("running"))
            if label is None:
                raise OSError(2)  # ENOENT
            id = label
        if not isinstance(id, str):
            raise TypeError("partition id must be a label, Partition.BOOT or Partition.RUNNING")
        for p in b.partitions:
            if p["name"] == id:
                break
        else:
            raise OSError(2)  # ENOENT: no partition with that label
        self._board = b
        self._p = p
        self.block_size = block_size
        self._store = _Store(b, p["name"], p["size"])

    @staticmethod
    def find(type=TYPE_APP, subtype=0xFF, label=None, block_size=4096):
        out = []
        for p in simboard.board().partitions:
            if _ptype(p) != type:
                continue
            if subtype != 0xFF and _subtype(p) != subtype:
                continue
            if label is not None and p["name"] != label:
                continue
            out.append(Partition(p["name"], block_size))
        return out

    def info(self):
        p = self._p
        return (_ptype(p), _subtype(p), p["offset"], p["size"], p["name"], False)

    def __repr__(self):
        t, st, addr, size, label, enc = self.info()
        return "<Partition type=%d, subtype=%d, address=%d, size=%d, label=%s, encrypted=%d>" % (
            t, st, addr, size, label, enc)

    def __eq__(self, other):
        return isinstance(other, Partition) and other._p["name"] == self._p["name"]

    def __hash__(self):
        return hash(self._p["name"])

    def _range(self, off, n):
        if off < 0 or n < 0 or off + n > self._p["size"]:
            raise esp_error(ESP_ERR_INVALID_SIZE)

    # The block device protocol. On the chip these are C functions a Ctrl-C cannot interrupt; here they
    # are Python called from inside LittleFS, and a KeyboardInterrupt escaping one would abort a
    # filesystem operation half way (and corrupt the mounted filesystem's state). So an interrupt that
    # lands here is deferred: the operation is redone whole (all of them are idempotent) and the
    # interrupt re-sent to the process shortly after (simfs.defer_interrupt).
    def readblocks(self, block_num, buf, offset=0):
        while True:
            try:
                return self._readblocks(block_num, buf, offset)
            except KeyboardInterrupt:
                simfs.defer_interrupt()

    def writeblocks(self, block_num, buf, offset=None):
        while True:
            try:
                return self._writeblocks(block_num, buf, offset)
            except KeyboardInterrupt:
                simfs.defer_interrupt()

    def ioctl(self, cmd, arg):
        while True:
            try:
                return self._ioctl(cmd, arg)
            except KeyboardInterrupt:
                simfs.defer_interrupt()

    def _readblocks(self, block_num, buf, offset=0):
        off = block_num * self.block_size + offset
        n = len(buf)
        self._range(off, n)
        data = self._store.read(off, n)
        mv = memoryview(buf)
        mv[:] = data
        return None

    def _writeblocks(self, block_num, buf, offset=None):
        data = bytes(buf)
        off = block_num * self.block_size + (offset or 0)
        self._range(off, len(data))
        if offset is None:  # whole-block write: erase the blocks first (as the ESP32 port does)
            start = (off // SECTOR) * SECTOR
            end = ((off + len(data) + SECTOR - 1) // SECTOR) * SECTOR
            self._range(start, end - start)
            self._store.erase(start, end - start)
        self._store.program(off, data)
        return None

    def _ioctl(self, cmd, arg):
        if cmd in (1, 2, 3):  # INIT, DEINIT, SYNC
            return 0
        if cmd == 4:  # BLOCK_COUNT
            return self._p["size"] // self.block_size
        if cmd == 5:  # BLOCK_SIZE
            return self.block_size
        if cmd == 6:  # BLOCK_ERASE
            off = arg * self.block_size
            n = max(self.block_size, SECTOR)
            off = (off // SECTOR) * SECTOR
            self._range(off, n)
            self._store.erase(off, n)
            return 0
        return None

    # -- OTA --
    def set_boot(self):
        p = self._p
        if p["type"] not in ("app", 0):
            raise esp_error(ESP_ERR_INVALID_ARG)
        if self._store.read(0, 1)[0] != ESP_IMAGE_HEADER_MAGIC:
            raise esp_error(ESP_ERR_OTA_VALIDATE_FAILED)
        b = self._board
        o = _ota(b)
        label = p["name"]
        o["prev"] = o.get("running")
        o["boot"] = label
        if p["subtype"] in ("factory", 0):
            o["states"].pop(label, None)
        else:
            o["states"][label] = "new"
        b.save_state()

    def get_next_update(self):
        b = self._board
        otas = [q for q in _apps(b) if str(q["subtype"]).startswith("ota_") or
                (isinstance(q["subtype"], int) and 0x10 <= q["subtype"] < 0x20)]
        if not otas:
            raise OSError(2)  # ENOENT
        otas.sort(key=_subtype)
        names = [q["name"] for q in otas]
        me = self._p["name"]
        nxt = names[(names.index(me) + 1) % len(names)] if me in names else names[0]
        return Partition(nxt, self.block_size)

    @staticmethod
    def mark_app_valid_cancel_rollback():
        b = simboard.board()
        o = _ota(b)
        run = o.get("running")
        if run is not None and o["states"].get(run) in ("pending", "new"):
            o["states"][run] = "valid"
            b.save_state()
        return None

    def _ota_state(self):
        """Sim helper: 'new', 'pending', 'valid', 'aborted' or None (no otadata entry)."""
        return _ota(self._board)["states"].get(self._p["name"])


# ---- NVS ---------------------------------------------------------------------------------------------
_NVS_ENTRY = 32
_NVS_PAGE_ENTRIES = 126
_BLOB_MAX = 508000


def _nvs_committed(b):
    if b.nvs_committed is None:
        path = b.path("nvs.json")
        b.nvs_committed = simboard.read_json(path, {}) if path else {}
        b.nvs_working = {}
        for ns, d in b.nvs_committed.items():
            b.nvs_working[ns] = dict(d)
    return b.nvs_committed


def _nvs_capacity(b):
    size = 0x6000
    for p in b.partitions:
        if p["name"] == "nvs":
            size = p["size"]
    pages = size // SECTOR
    return max(0, pages - 1) * _NVS_PAGE_ENTRIES * _NVS_ENTRY


def _entry_bytes(v):
    if v[0] == "i32":
        return _NVS_ENTRY
    n = len(v[1]) // 2
    return _NVS_ENTRY * (2 + (n + _NVS_ENTRY - 1) // _NVS_ENTRY)


def _check_name(name, what):
    if not isinstance(name, str):
        raise TypeError("%s must be a str" % what)
    if not name:
        raise esp_error(ESP_ERR_NVS_INVALID_NAME)
    if len(name) > 15:
        raise esp_error(ESP_ERR_NVS_KEY_TOO_LONG)


class NVS:
    """Changes are kept in RAM until commit(); a reset before commit() loses them."""

    def __init__(self, namespace):
        _check_name(namespace, "namespace")
        self._b = simboard.board()
        _nvs_committed(self._b)
        self._ns = namespace

    def _work(self):
        return self._b.nvs_working.setdefault(self._ns, {})

    def _get(self, key, typ):
        _check_name(key, "key")
        v = self._work().get(key)
        if v is None or v[0] != typ:
            raise esp_error(ESP_ERR_NVS_NOT_FOUND)
        return v

    def _set(self, key, v):
        _check_name(key, "key")
        w = self._work()
        old = w.get(key)
        if old is not None and old[0] != v[0]:
            raise esp_error(ESP_ERR_NVS_TYPE_MISMATCH)
        used = 0
        for d in self._b.nvs_working.values():
            for k in d:
                used += _entry_bytes(d[k])
        used += _entry_bytes(v) - (_entry_bytes(old) if old is not None else 0)
        if used > _nvs_capacity(self._b):
            raise esp_error(ESP_ERR_NVS_NOT_ENOUGH_SPACE)
        w[key] = v

    def set_i32(self, key, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("value must be an int")
        if not -0x80000000 <= value <= 0x7FFFFFFF:
            raise OverflowError("value does not fit in 32 bits")
        self._set(key, ["i32", value])

    def get_i32(self, key):
        return self._get(key, "i32")[1]

    def set_blob(self, key, value):
        data = value.encode() if isinstance(value, str) else bytes(value)
        if len(data) > _BLOB_MAX:
            raise esp_error(ESP_ERR_NVS_VALUE_TOO_LONG)
        self._set(key, ["blob", data.hex()])

    def get_blob(self, key, buffer):
        data = bytes.fromhex(self._get(key, "blob")[1])
        if len(buffer) < len(data):
            raise esp_error(ESP_ERR_NVS_INVALID_LENGTH)
        mv = memoryview(buffer)
        mv[:len(data)] = data
        return len(data)

    def erase_key(self, key):
        _check_name(key, "key")
        w = self._work()
        if key not in w:
            raise esp_error(ESP_ERR_NVS_NOT_FOUND)
        del w[key]

    def commit(self):
        b = self._b
        committed = _nvs_committed(b)
        committed[self._ns] = dict(self._work())
        path = b.path("nvs.json")
        if path:
            simboard.write_json(path, committed)


# ---- misc ----------------------------------------------------------------------------------------------
def mcu_temperature():
    return 41


def wake_on_ext0(pin, level):
    simboard.board().state["wake_ext0"] = [getattr(pin, "id", pin), int(level)]


def wake_on_ext1(pins, level):
    simboard.board().state["wake_ext1"] = [[getattr(p, "id", p) for p in pins], bool(level)]


def wake_on_touch(wake):
    pass


def wake_on_ulp(wake):
    pass


def gpio_deep_sleep_hold(enable):
    pass


def idf_heap_info(capabilities):
    return [(327680, 200000, 150000, 180000)]
