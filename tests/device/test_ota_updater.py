# fieldlink.ota.Updater and boot confirm/rollback: the happy paths and one test per attack (each fails
# if its protection is removed). CPython and MicroPython. Power cuts: tests/host/test_ota_powercut.py.
import esp32
import simboard
from devtest import IS_MPY, raises, tmpdir
from otakit import (BOARD, RUNTIME_MPY, Key, app_files, app_update, board_root, bundle, hx, manifest, mpy_file,
                    read, send, slot_files)

from fieldlink.ota import boot, bootsel, rules_sig
from fieldlink.ota.state import State
from fieldlink.ota.updater import OtaError, Updater

OWNER = Key(b"\x01" * 32)
OTHER = Key(b"\x02" * 32)
NEXT = Key(b"\x03" * 32)


def _up(store, root, **kw):
    return Updater(store, root, board=BOARD, mpy=kw.pop("mpy", RUNTIME_MPY), **kw)


def _refused(reason, fn, *a):
    e = raises(OtaError, fn, *a)
    assert e.reason == reason, (e.reason, str(e))
    return e


def _install_app(root, store, files, counter, version, key=OWNER, confirm=True):
    up = _up(store, root)
    m, sig, stream = app_update(key, files, counter, version)
    s = up.begin(m, sig)
    send(s, stream, 97)
    res = s.finish()
    assert res["reboot"]
    slot = bootsel.select(root)
    if confirm:
        r = boot.run_trial(root, store, lambda: (True, None))
        assert r["state"] == "confirmed", r
    return slot


def _unchanged(root, store, active="a"):
    """Nothing was activated: the previous slot is still the one that boots, no trial, no counter."""
    assert read(root + "/fl/active") == active
    assert read(root + "/fl/trial") is None
    assert bootsel.select(root) == active
    assert State(store).d["trial"] is None


def test_test_signer_matches_cryptography():
    if IS_MPY:  # covered by the CPython run; MicroPython has no `cryptography`
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    for k in (OWNER, OTHER):
        ref = Ed25519PrivateKey.from_private_bytes(k.seed)
        raw = ref.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert raw == k.pub
        for msg in (b"", b"manifest", b"x" * 300):
            assert ref.sign(msg) == k.sign(msg)


def test_app_update_confirmed_after_self_test():
    root, store = board_root("app", keys=[OWNER])
    files = app_files(b"v1")
    assert _install_app(root, store, files, 3, "1.1") == "b"
    assert read(root + "/fl/active") == "b" and read(root + "/fl/trial") is None
    got = slot_files(root, "b")
    for n in files:
        assert got[n] == files[n]
    assert sorted(got) == sorted(list(files) + ["manifest.json", "ota.json", "ota.sig"])
    st = State(store).d
    assert st["counters"]["app"] == 3 and st["versions"]["app"] == "1.1"
    assert slot_files(root, "a")["main.mpy"] == app_files(b"v0")["main.mpy"]  # rollback target intact
    # the next update goes to slot a
    assert _install_app(root, store, app_files(b"v2"), 4, "1.2") == "a"


def test_resume_after_interruption_from_the_last_written_bytes():
    root, store = board_root("resume", keys=[OWNER])
    m, sig, stream = app_update(OWNER, app_files(b"r1"), 2, "2.0")
    s = _up(store, root).begin(m, sig)
    half = len(stream) // 2
    send(s, stream[:half], 50)
    up2 = _up(store, root)  # "reboot": a new updater, same manifest
    s2 = up2.begin(m, sig)
    assert s2.offset == half
    assert s2.write(0, stream[:10]) == half  # duplicates are ignored
    _refused("gap", s2.write, half + 5, stream[half + 5:half + 10])
    send(s2, stream, 64)
    assert s2.finish()["reboot"]


def test_tampered_payload_refused():
    root, store = board_root("tamp", keys=[OWNER])
    m, sig, stream = app_update(OWNER, app_files(b"t1"), 2, "2.0")
    bad = bytearray(stream)
    bad[-5] ^= 0x01  # inside the last file
    s = _up(store, root).begin(m, sig)
    _refused("bad_hash", send, s, bytes(bad))
    _unchanged(root, store)
    bad = bytearray(stream)
    bad[3] ^= 0x20  # inside the bundle manifest (signed sha256)
    s = _up(store, root).begin(m, sig)
    _refused("bad_hash", send, s, bytes(bad))
    _unchanged(root, store)


def test_tampered_manifest_refused_before_any_payload():
    root, store = board_root("tampm", keys=[OWNER])
    m, sig, _ = app_update(OWNER, app_files(b"t2"), 2, "2.0")
    m2 = m.replace(b'"counter": 2', b'"counter": 9')
    assert m2 != m
    _refused("bad_signature", _up(store, root).begin, m2, sig)
    bad = bytearray(sig)
    bad[40] ^= 4
    _refused("bad_signature", _up(store, root).begin, m, bytes(bad))
    _refused("bad_signature", _up(store, root).begin, m, sig[:63])
    assert read(root + "/fl/data/ota/session.json") is None
    _unchanged(root, store)


def test_wrong_key_and_unknown_key_id_refused():
    root, store = board_root("keys", keys=[OWNER])
    mb, stream = bundle(app_files(b"k"))
    # signed by OTHER but claiming OWNER's key id
    m, _ = manifest(OWNER, "app", mb, 2, "2.0", stream_size=len(stream), mpy=[6, 0, 0])
    _refused("bad_signature", _up(store, root).begin, m, OTHER.sign(m))
    # signed by OTHER with its own (untrusted) key id
    m, sig = manifest(OTHER, "app", mb, 2, "2.0", stream_size=len(stream), mpy=[6, 0, 0])
    _refused("unknown_key", _up(store, root).begin, m, sig)
    # no trust store at all
    root2, store2 = board_root("notrust")
    m, sig = manifest(OWNER, "app", mb, 2, "2.0", stream_size=len(stream), mpy=[6, 0, 0])
    _refused("no_trust", _up(store2, root2).begin, m, sig)


def test_older_counter_and_same_version_refused():
    root, store = board_root("ctr", keys=[OWNER])
    _install_app(root, store, app_files(b"c5"), 5, "5.0")
    up = _up(store, root)
    m, sig, _ = app_update(OWNER, app_files(b"c4"), 4, "4.0")
    _refused("downgrade", up.begin, m, sig)
    m, sig, _ = app_update(OWNER, app_files(b"c5"), 5, "5.0")  # the installed update, re-sent
    _refused("replay", up.begin, m, sig)
    m, sig, _ = app_update(OWNER, app_files(b"c5"), 6, "5.0")  # same version, new counter
    _refused("replay", up.begin, m, sig)
    m, sig, _ = app_update(OWNER, app_files(b"c6"), 6, "6.0")
    assert up.begin(m, sig).offset == 0


def test_wrong_board_and_wrong_kind_refused():
    root, store = board_root("board", keys=[OWNER])
    m, sig, _ = app_update(OWNER, app_files(b"w"), 2, "2.0", board="esp32-c6-devkitc-1")
    _refused("wrong_board", _up(store, root).begin, m, sig)
    # the signed board matches but the bundle inside names another board
    mb, stream = bundle(app_files(b"w"), board="esp32-c6-devkitc-1")
    m, sig = manifest(OWNER, "app", mb, 2, "2.0", stream_size=len(stream), mpy=[6, 0, 0])
    s = _up(store, root).begin(m, sig)
    _refused("wrong_board", send, s, stream)
    m, sig = manifest(OWNER, "rules", b"FLRV", 2, "r1")
    _refused("wrong_kind", _up(store, root, kinds=("app",)).begin, m, sig)
    m, sig = manifest(OWNER, "bootloader", b"x", 2, "b1")
    _refused("wrong_kind", _up(store, root).begin, m, sig)
    _unchanged(root, store)


def test_payload_longer_than_announced_refused_at_once():
    root, store = board_root("long", keys=[OWNER])
    m, sig, stream = app_update(OWNER, app_files(b"l"), 2, "2.0")
    s = _up(store, root).begin(m, sig)
    send(s, stream)
    _refused("oversize", s.write, len(stream), b"extra")
    _refused("closed", s.finish)
    s = _up(store, root).begin(m, sig)
    assert s.offset == 0  # the aborted session was dropped
    m, sig = manifest(OWNER, "rules", b"0123456789", 3, "r1")
    s = _up(store, root).begin(m, sig)
    _refused("oversize", s.write, 0, b"0123456789A")  # one write past the end: refused, nothing kept
    _unchanged(root, store)


def test_truncated_transfer_not_activated_and_resumable():
    root, store = board_root("trunc", keys=[OWNER])
    m, sig, stream = app_update(OWNER, app_files(b"tr"), 2, "2.0")
    s = _up(store, root).begin(m, sig)
    send(s, stream[:-1])
    _refused("truncated", s.finish)
    _unchanged(root, store)
    s.write(len(stream) - 1, stream[-1:])
    assert s.finish()["reboot"]


def test_mix_and_match_of_two_signed_bundles_refused():
    root, store = board_root("mix", keys=[OWNER])
    m1, sig1, stream1 = app_update(OWNER, app_files(b"A1"), 2, "2.0")
    _m2, _sig2, stream2 = app_update(OWNER, app_files(b"B2"), 3, "3.0")
    mb1, _ = bundle(app_files(b"A1"))
    mixed = mb1 + stream2[len(stream2) - (len(stream1) - len(mb1)):]  # A's manifest, B's files
    assert len(mixed) == len(stream1) and mixed != stream1
    s = _up(store, root).begin(m1, sig1)
    _refused("bad_hash", send, s, mixed)
    _unchanged(root, store)


def test_bundle_for_another_mpy_version_refused_before_switch():
    root, store = board_root("mpy", keys=[OWNER])
    m, sig, _ = app_update(OWNER, app_files(b"m"), 2, "2.0", mpy=(5, 0, 0))
    _refused("mpy_version", _up(store, root).begin, m, sig)
    # native code for another arch
    m, sig, _ = app_update(OWNER, app_files(b"m"), 2, "2.0", mpy=(6, 3, 10))
    _refused("mpy_version", _up(store, root).begin, m, sig)
    # the signed field says 6 but a file inside is .mpy version 5: refused when that file completes
    files = app_files(b"m")
    files["fieldlink/old.mpy"] = mpy_file(b"old", ver=5)
    m, sig, stream = app_update(OWNER, files, 2, "2.0")
    s = _up(store, root).begin(m, sig)
    _refused("mpy_version", send, s, stream)
    _unchanged(root, store)
    # the runtime's own value is detected under MicroPython
    if IS_MPY:
        import sys
        assert Updater(store, root).mpy == sys.implementation._mpy


def test_new_app_crashing_on_boot_rolls_back():
    root, store = board_root("crash", keys=[OWNER])
    _install_app(root, store, app_files(b"x1"), 2, "2.0", confirm=False)
    assert bootsel.crashed(root)  # main.py loader: the slot's main raised
    assert bootsel.select(root) == "a"
    r = boot.run_trial(root, store, lambda: (True, None))
    assert r["state"] == "rolled_back" and r["reason"] == "crash" and r["version"] == "2.0"
    st = State(store).d
    assert st["last_rollback"] == {"kind": "app", "version": "2.0", "reason": "crash"}
    assert "app" not in st["counters"]
    assert _up(store, root).status()["last_rollback"]["reason"] == "crash"
    _unchanged(root, store)


def test_app_failing_self_test_rolls_back():
    root, store = board_root("selftest", keys=[OWNER])
    _install_app(root, store, app_files(b"f1"), 2, "2.0", confirm=False)
    r = boot.run_trial(root, store, lambda: (False, "sensor sht"))
    assert r["state"] == "rolled_back" and r["reason"] == "sensor sht"
    assert bootsel.select(root) == "a"
    assert boot.on_boot(root, store) is None
    _unchanged(root, store)
    assert State(store).d["last_rollback"]["reason"] == "sensor sht"


def test_three_unconfirmed_boots_and_watchdog_roll_back():
    root, store = board_root("boots", keys=[OWNER])
    _install_app(root, store, app_files(b"u1"), 2, "2.0", confirm=False)  # boot 1
    assert boot.on_boot(root, store)["trial"]["version"] == "2.0"
    assert bootsel.select(root) == "b"  # boot 2 (power cut, no confirmation)
    assert bootsel.select(root) == "b"  # boot 3
    assert bootsel.select(root) == "a"  # rolled back
    assert boot.run_trial(root, store)["reason"] == "unconfirmed"
    _unchanged(root, store)
    _install_app(root, store, app_files(b"u2"), 3, "3.0", confirm=False)
    assert bootsel.select(root, cause=bootsel.WDT_RESET) == "a"
    assert boot.run_trial(root, store)["reason"] == "watchdog"
    # the counter was never stored: the same update can be sent again, and now it is confirmed
    _install_app(root, store, app_files(b"u2"), 3, "3.0")
    assert State(store).d["counters"]["app"] == 3


def test_busy_while_an_update_waits_for_confirmation():
    root, store = board_root("busy", keys=[OWNER])
    _install_app(root, store, app_files(b"b1"), 2, "2.0", confirm=False)
    m, sig, _ = app_update(OWNER, app_files(b"b2"), 3, "3.0")
    _refused("busy", _up(store, root).begin, m, sig)  # would overwrite the rollback target


def test_key_rotation_then_old_key_refused():
    root, store = board_root("rot", keys=[OWNER])
    doc = ('{"fieldlink_keys": 1, "keys": ["%s"]}' % hx(NEXT.pub)).encode()
    m, sig = manifest(OWNER, "keys", doc, 7, "k2")
    s = _up(store, root).begin(m, sig)
    send(s, doc)
    assert s.finish()["reboot"] is False
    st = State(store).d
    assert sorted(st["keys"]) == [NEXT.kid] and OWNER.kid in st["retired"]
    m, sig, _ = app_update(OWNER, app_files(b"o"), 8, "8.0")
    _refused("retired_key", _up(store, root).begin, m, sig)
    m, sig, stream = app_update(NEXT, app_files(b"n"), 8, "8.0")
    s = _up(store, root).begin(m, sig)
    send(s, stream)
    assert s.finish()["reboot"]
    # a keys manifest signed by a key that is not trusted cannot add itself
    doc2 = ('{"fieldlink_keys": 1, "keys": ["%s"]}' % hx(OTHER.pub)).encode()
    m, sig = manifest(OTHER, "keys", doc2, 9, "k3")
    _refused("unknown_key", _up(store, root).begin, m, sig)


def _rules_prog():
    from test_rules_verify import prog
    return prog()


def test_rules_update_installs_signed_program():
    root, store = board_root("rules", keys=[OWNER])
    p = _rules_prog()
    got = []
    m, sig = manifest(OWNER, "rules", p, 4, "r4")
    up = _up(store, root, on_rules=got.append)
    s = up.begin(m, sig)
    send(s, p, 33)
    assert s.finish()["reboot"] is False
    assert got == [p]
    with open(store + "/rules.bin", "rb") as f:
        assert f.read() == p
    assert rules_sig.check(store, p, BOARD, rules_sig.envelope(store)) is None  # the stored envelope signs it
    bad = p[:-1] + bytes([p[-1] ^ 1])  # not a valid program (checksum), though signed
    m, sig = manifest(OWNER, "rules", bad, 5, "r5")
    s = up.begin(m, sig)
    send(s, bad)
    _refused("bad_rules", s.finish)


def test_unsigned_rules_refused_once_an_owner_key_is_installed():
    p = _rules_prog()
    root, store = board_root("urules")
    assert rules_sig.check(store, p, BOARD) is None  # no owner key yet: unsigned programs are fine
    root, store = board_root("srules", keys=[OWNER])
    _refused("unsigned", rules_sig.check, store, p, BOARD)
    m, sig = manifest(OWNER, "rules", p, 4, "r4")
    env = {"m": m.decode(), "sig": hx(sig)}
    assert rules_sig.check(store, p, BOARD, env) is None
    _refused("bad_hash", rules_sig.check, store, p[:-1] + b"\x00", BOARD, env)
    m2, sig2 = manifest(OTHER, "rules", p, 4, "r4")
    _refused("unknown_key", rules_sig.check, store, p, BOARD, {"m": m2.decode(), "sig": hx(sig2)})
    m3, sig3 = manifest(OWNER, "app", p, 4, "r4")
    _refused("wrong_kind", rules_sig.check, store, p, BOARD, {"m": m3.decode(), "sig": hx(sig3)})


def _fw_board(tag):
    d = tmpdir(tag)
    simboard.reset()
    simboard.setup(dir=d)
    root, store = board_root(tag + "r", keys=[OWNER])
    return d, root, store


def _reboot(d):
    try:
        simboard.board().end(simboard.HARD_RESET)
    except SystemExit:
        pass
    simboard.reset()
    simboard.setup(dir=d)


def _running():
    return esp32.Partition(esp32.Partition.RUNNING).info()[4]


def test_firmware_update_confirmed_or_rolled_back_by_the_bootloader():
    d, root, store = _fw_board("fw")
    img = b"\xe9" + bytes(range(256)) * 40 + b"\x07" * 123  # not a multiple of the 4096-byte block
    m, sig = manifest(OWNER, "firmware", img, 10, "1.24.0")
    s = _up(store, root).begin(m, sig)
    send(s, img, 1000)
    assert s.finish()["reboot"]
    _reboot(d)
    assert _running() == "ota_1"
    r = boot.run_trial(root, store, lambda: (True, None))
    assert r["state"] == "confirmed"
    _reboot(d)
    assert _running() == "ota_1"
    assert State(store).d["counters"]["firmware"] == 10
    buf = bytearray(len(img))
    esp32.Partition("ota_1").readblocks(0, buf)
    assert bytes(buf) == img
    # the next one fails its self-test: not marked valid, the bootloader goes back to ota_1
    img2 = b"\xe9" + b"\x55" * 5000
    m, sig = manifest(OWNER, "firmware", img2, 11, "1.25.0")
    s = _up(store, root).begin(m, sig)
    send(s, img2, 999)
    s.finish()
    _reboot(d)
    assert _running() == "ota_0"
    r = boot.run_trial(root, store, lambda: (False, "link"))
    assert r["state"] == "rolled_back" and r["reason"] == "link"
    _reboot(d)
    assert _running() == "ota_1"
    assert State(store).d["counters"]["firmware"] == 10


def test_firmware_without_magic_refused():
    d, root, store = _fw_board("fwmagic")
    img = b"\x00" + b"\xe9" * 5000
    m, sig = manifest(OWNER, "firmware", img, 10, "1.24.0")
    s = _up(store, root).begin(m, sig)
    _refused("bad_image", s.write, 0, img[:100])
    _refused("closed", s.finish)
    assert esp32.Partition(esp32.Partition.BOOT).info()[4] == "ota_0"
    # an image larger than the partition is refused before a byte is written
    part_size = esp32.Partition("ota_1").info()[3]
    m, sig = manifest(OWNER, "firmware", b"\xe9", 11, "1.25.0")
    m = m.replace(b'"size": 1', b'"size": %d' % (part_size + 1)).replace(b'"stream_size": 1',
                                                                          b'"stream_size": %d' % (part_size + 1))
    _refused("oversize", _up(store, root).begin, m, OWNER.sign(m))
