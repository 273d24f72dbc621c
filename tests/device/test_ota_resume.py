# A node that loses power in the middle of an OTA transfer resumes from its last durably written bytes:
# the real chain (transfer_rx.Receiver -> transfer_node.BlobSink -> updater.Updater session) of every kind
# (app, firmware, rules, keys) is cut at many points of the transfer (the node's RAM, its receive
# window and the frames in the air are lost; its flash stays), started again, and the sender's resent
# DATA chunks after the cut are counted: always fewer than 2 windows (docs/protocol.md target). A
# firmware update writes the ESP partition in 512-byte pieces, each on erased flash only (checked on
# the virtual board's NOR model). CPython and MicroPython.
import esp32
import simboard
from devtest import tmpdir
from otakit import BOARD, RUNTIME_MPY, Key, app_files, app_update, board_root, manifest, slot_files
from test_ota_transfer import Run

from fieldlink.ota import transfer_rx as trx
from fieldlink.ota import transfer_tx as ttx
from fieldlink.ota.mailbox import blob_prefix, image_id
from fieldlink.ota.state import State
from fieldlink.ota.transfer_node import BlobSink
from fieldlink.ota.updater import Updater

OWNER = Key(b"\x05" * 32)
NEXT = Key(b"\x06" * 32)
CHUNK = 200

_programmed_dirty = []
_orig_program = esp32._Store.program


def _strict_program(self, off, data):
    """NOR flash: programming may only land on erased (0xFF) bytes; record any write that does not."""
    if self.read(off, len(data)) != b"\xff" * len(data):
        _programmed_dirty.append((self.label, off, len(data)))
    _orig_program(self, off, data)


def _updater(store, root):
    from fieldlink.rules.verify import verify
    return Updater(store, root, board=BOARD, mpy=RUNTIME_MPY, verify_rules=verify)


def _rules_prog():
    from test_rules_verify import prog
    return prog()


def _fw_image():
    return b"\xe9" + bytes((i * 7 + (i >> 9)) & 0xFF for i in range(11000)) + b"\x33" * 37


def _update(kind):
    """(signed manifest, signature, stream) of an update of this kind."""
    if kind == "app":
        return app_update(OWNER, app_files(b"v2" * 20), 2, "2.0")
    if kind == "firmware":
        img = _fw_image()
        m, sig = manifest(OWNER, "firmware", img, 2, "2.0")
        return m, sig, img
    if kind == "rules":
        p = _rules_prog()
        m, sig = manifest(OWNER, "rules", p, 2, "r2")
        return m, sig, p
    doc = ('{"fieldlink_keys":1,"keys":["%s","%s"]}' % (NEXT.pub.hex(), OWNER.pub.hex())).encode()
    m, sig = manifest(OWNER, "keys", doc, 2, "k2")
    return m, sig, doc


def _installed(kind, root, store, stream):
    """The update arrived whole and was activated."""
    st = State(store).d
    if kind == "app":
        assert st["trial"]["version"] == "2.0", st["trial"]
        got = slot_files(root, st["trial"]["slot"])
        for name, data in app_files(b"v2" * 20).items():
            assert got[name] == data, name
    elif kind == "firmware":
        assert st["trial"]["label"] == "ota_1", st["trial"]
        buf = bytearray(len(stream))
        esp32.Partition("ota_1").readblocks(0, buf)
        assert bytes(buf) == stream
    elif kind == "rules":
        assert st["counters"]["rules"] == 2
        with open(store + "/rules.bin", "rb") as f:
            assert f.read() == stream
    else:
        assert sorted(st["keys"].values()) == sorted([NEXT.pub.hex(), OWNER.pub.hex()]), st["keys"]


def _cut_run(kind, cut, window, tag):
    """One transfer with a power cut after `cut` frames on a fresh board. Returns (DATA chunks resent
    after the cut, chunks in the image), or None when the transfer ended before the cut."""
    sim = None
    if kind == "firmware":
        sim = tmpdir(tag + "sim")
        simboard.reset()
        simboard.setup(dir=sim)
    root, store = board_root(tag, keys=[OWNER])
    m, sig, stream = _update(kind)
    blob = blob_prefix(m, sig) + stream
    rx = tmpdir(tag + "rx")
    run = Run(blob, chunk=CHUNK, window=window, sink=BlobSink(rx, _updater(store, root)))
    run.s = ttx.Sender(7, image_id(m), len(blob), run.read, chunk=CHUNK, window=window)
    run.r = trx.Receiver(run.sink, window=window)
    run.until(lambda: run.chan.frames >= cut or run.s.finished())
    if run.s.finished():
        return None
    # power cut: RAM (receive window, open session, piece buffer) and the frames in the air are gone,
    # the flash stays; the node boots again and the gateway resumes the session when it hears it
    run.chan.q = []
    if sim is not None:
        simboard.reset()
        simboard.setup(dir=sim)
    run.sink = BlobSink(rx, _updater(store, root))
    run.r = trx.Receiver(run.sink, window=window)
    before = run.s.counters["data_resent"]
    run.complete()
    assert run.s.ok, (kind, cut, run.s.info)
    _installed(kind, root, store, stream)
    return run.s.counters["data_resent"] - before, run.s.n


def _every_cut(kind, window=16, step=5):
    """Cut after 1, 1+step, ... frames until the transfer ends first; every resume resends < 2
    windows. Returns the worst resend count."""
    del _programmed_dirty[:]
    esp32._Store.program = _strict_program
    try:
        cut = 1
        worst = 0
        runs = 0
        while True:
            r = _cut_run(kind, cut, window, "res%s%d" % (kind[:2], cut))
            if r is None:
                break
            resent, n = r
            assert resent < 2 * window, (kind, cut, resent, window)
            worst = max(worst, resent)
            runs += 1
            cut += step
        assert runs * step > n, (runs, n)  # the cuts covered the whole transfer
        assert not _programmed_dirty, _programmed_dirty[:3]
        return worst
    finally:
        esp32._Store.program = _orig_program


def test_app_resume_resends_under_two_windows():
    _every_cut("app")


def test_firmware_resume_resends_under_two_windows():
    # 8-chunk windows too: a 4096-byte sector is 20 chunks, so resuming from the last sector would fail
    _every_cut("firmware", window=16, step=4)
    _every_cut("firmware", window=8, step=4)


def test_rules_resume_resends_under_two_windows():
    _every_cut("rules", step=2)


def test_keys_resume_resends_under_two_windows():
    _every_cut("keys", window=4, step=1)
