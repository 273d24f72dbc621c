# Boot the virtual board like the ESP32 port's frozen _boot.py: after this, the board's "/" is the
# LittleFS2 filesystem in its `vfs` partition (BOARD_DIR/flash/vfs.bin), formatted on first boot by the
# same steps as the port's inisetup.py, and the host's filesystem is unreachable through open/os/vfs.
#
#   simboot.boot(board, code=[dir, ...], uplink=path, main=globals())
#
# Order matters: every sim module is imported *before* the host VFS is unmounted (afterwards MICROPYPATH's
# host directories no longer exist for the importer); the sim keeps its own files through simfs's
# private VfsPosix. `code` directories (the device package for `fieldlink sim` boards) are mounted
# read-only at /.sim/0, /.sim/1, ... and put on sys.path after /lib. See docs/virtual-board.md.
import sys

import simboard
import simfs

CODE_ROOT = "/.sim"
BOOT_PY = """\
# This file is executed on every boot (including wake-boot from deepsleep)
#import esp
#esp.osdebug(None)
#import webrepl
#webrepl.start()
"""
# sim modules preloaded before the remount (vboard/simboot themselves are already loaded)
SIM_MODULES = ("simfs", "simboard", "machine_rtc", "machine_bus", "machine", "esp32", "network", "air",
               "airlink", "espnow", "aioespnow", "onewire", "scenario", "chips", "simchip_bme280",
               "chips_onewire", "chips_uart")
CHIP_NAMES = {"esp32s3": "ESP32S3", "esp32c6": "ESP32C6"}


def machine_name(board):
    """What sys.implementation._machine / os.uname().machine say: '<board> with <CHIP>' like the port's
    MICROPY_HW_BOARD_NAME " with " MICROPY_HW_MCU_NAME."""
    name = board.config.get("name") or board.sim.get("name") or "fieldlink virtual board"
    chip = CHIP_NAMES.get(board.chip, str(board.chip).upper())
    return "%s with %s" % (name, chip)


def preload():
    """Import the sim's modules. (Not every .py of device/sim: rules_replay imports the device package,
    which must then come from the code mounts, not from a host path that is about to disappear.)"""
    for m in SIM_MODULES:
        try:
            __import__(m)
        except ImportError:
            pass


def _initial_setup(vfs, bdev):
    """inisetup.setup() of the ESP32 port: refuse a non-empty unmountable partition, else format."""
    buf = bytearray(bdev.ioctl(5, 0))
    bdev.readblocks(0, buf)
    for b in buf:
        if b != 0xFF:
            raise OSError(19, "vfs partition holds no filesystem and is not erased")
    print("Performing initial setup")
    vfs.VfsLfs2.mkfs(bdev)
    fs = vfs.VfsLfs2(bdev)
    vfs.mount(fs, "/")
    with open("boot.py", "w") as f:
        f.write(BOOT_PY)
    return fs


def boot_fs(board):
    """Unmount the host VFS and mount the board's vfs partition at "/" (MicroPython only)."""
    import esp32
    import vfs
    bdev = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")
    bdev = bdev[0] if bdev else None
    for _fs, path in vfs.mount():
        vfs.umount(path)
    if bdev is None:
        return None
    try:
        vfs.mount(bdev, "/")
    except OSError:
        _initial_setup(vfs, bdev)
    import os
    os.chdir("/")
    return bdev


def mount_code(dirs):
    """Mount host code directories read-only at /.sim/N; returns the mount points."""
    import vfs
    points = []
    for i, d in enumerate(dirs):
        p = "%s/%d" % (CODE_ROOT, i)
        vfs.mount(vfs.VfsPosix(d), p, readonly=True)
        points.append(p)
    return points


# ---- what device code sees: the port's os, vfs and sys -----------------------------------------------
class _Namespace:
    pass


class _Uname(tuple):
    """os.uname() result: a tuple with the port's field names."""

    @property
    def sysname(self):
        return self[0]

    @property
    def nodename(self):
        return self[1]

    @property
    def release(self):
        return self[2]

    @property
    def version(self):
        return self[3]

    @property
    def machine(self):
        return self[4]


def _uname_value(machine):
    import sys as real_sys
    ver = real_sys.implementation.version
    release = "%d.%d.%d" % (ver[0], ver[1], ver[2])
    if len(ver) > 3 and ver[3]:
        release += "-" + ver[3]
    tail = real_sys.version.split("MicroPython ", 1)
    version = tail[1] if len(tail) > 1 else release
    u = _Uname(("esp32", "esp32", release, version, machine))
    return u


def board_os(machine):
    """The ESP32 port's `os` over the real one (which now acts on the board's VFS): no system(),
    putenv(), unsetenv(); uname() names the board; getenv() stays (the sim's provisioning channel)."""
    import os as real_os
    o = _Namespace()
    for name in ("chdir", "getcwd", "ilistdir", "listdir", "mkdir", "remove", "rename", "rmdir", "stat",
                 "statvfs", "urandom", "mount", "umount", "sep", "VfsFat", "VfsLfs2", "VfsLfs1",
                 "getenv"):
        if hasattr(real_os, name):
            setattr(o, name, getattr(real_os, name))
    u = _uname_value(machine)

    def uname():
        return u

    def sync():
        return None

    def dupterm(stream_object=None, index=0):
        return None

    def dupterm_notify(obj):
        return None

    o.uname = uname
    o.sync = sync
    o.dupterm = dupterm
    o.dupterm_notify = dupterm_notify
    o.__name__ = "os"
    return o


def board_vfs():
    import vfs as real_vfs
    v = _Namespace()
    for name in ("mount", "umount", "VfsFat", "VfsLfs1", "VfsLfs2", "VfsRom"):
        if hasattr(real_vfs, name):
            setattr(v, name, getattr(real_vfs, name))
    v.__name__ = "vfs"
    return v


class _Impl:
    def __init__(self, machine):
        import sys as real_sys
        r = real_sys.implementation
        self.name = r.name
        self.version = r.version
        self._machine = machine
        self._mpy = getattr(r, "_mpy", None)
        self._build = getattr(r, "_build", None)
        self._thread = getattr(r, "_thread", None)

    def __repr__(self):
        return "(name=%r, version=%r, _machine=%r, _mpy=%r, _build=%r, _thread=%r)" % (
            self.name, self.version, self._machine, self._mpy, self._build, self._thread)


class _Sys:
    """`sys` for device code: the real module with sys.implementation naming the board."""

    def __init__(self, real, impl):
        self._real = real
        self.implementation = impl

    def __getattr__(self, name):
        return getattr(self._real, name)


def install_guards(machine, uplink=None):
    """Make `import os/uos/vfs/sys` give device code the port's view, and hide `ffi` (host libc)."""
    import builtins
    mods = sys.modules
    o = board_os(machine)
    mods["os"] = o
    mods["uos"] = o
    mods["vfs"] = board_vfs()
    mods["ffi"] = None
    mods["sys"] = _Sys(sys, _Impl(machine))
    if uplink:
        # the gateway's uplink is the board's UART to the host: the one host path device code may open
        real_open = builtins.open

        def open(file, mode="r", *args, **kw):
            if file == uplink:
                return simfs.hopen(file, mode)
            return real_open(file, mode, *args, **kw)

        builtins.open = open


def provision(board, name, data):
    """Write `data` to `/name` on the board's filesystem if it differs (host-provisioned file)."""
    try:
        with open("/" + name, "rb") as f:
            if f.read() == data:
                return False
    except OSError:
        pass
    with open("/" + name, "wb") as f:
        f.write(data)
    return True


def boot(board, code=(), uplink=None, main=None, files=None):
    """The full boot: preload, mount the board's filesystem, provision `files` {name: bytes}, mount
    `code`, guards, sys.path = ['', '.frozen', '/lib', *code], gc and vfs in `main` (a globals dict)."""
    if not simboard.IS_MPY:
        raise RuntimeError("simboot.boot() needs the MicroPython unix port")
    preload()
    code = [simfs.habspath(d) for d in code]
    machine = machine_name(board)
    boot_fs(board)
    for name, data in (files or {}).items():
        provision(board, name, data)
    points = mount_code(code)
    sys.path[:] = ["", ".frozen", "/lib"] + points
    install_guards(machine, uplink)
    import gc
    gc.collect()
    if main is not None:
        main["gc"] = gc
        main["vfs"] = sys.modules["vfs"]
    return machine
