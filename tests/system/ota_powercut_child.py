# ruff: noqa: UP031, I001 - MicroPython code: %-formatting on purpose, device-test import order
# MicroPython side of tests/system/test_ota_powercut.py. Modes (argv: MODE ROOT [CUT]):
#   setup    a board root: v0 app in slot a (counter 1 installed), owner key, a store file to keep
#   update   the whole update of v2 (begin, stream, finish, boot, self-test, confirm); with CUT=k the
#            process stops at its k-th file-system step ("@at k STEP" on stdout) until the test kills it;
#            without CUT it prints "@steps N"
#   recover  boot like the device after the cut (loader slot selection + on_boot, repeated on a reboot
#            request), report the state ("@state JSON"), then run the update to the end and report again
#   fwsetup / fwupdate [CUT] / fwconfirm [CUT] / fwrecover   the same for a firmware update on the virtual
#            board's esp32.Partition (each process start is a board boot; fwconfirm = boot + self-test +
#            confirm; fwrecover reboots in-process as long as the boot asks for it)
#   rksetup / rkupdate KIND [CUT] / rkrecover KIND   a rules or keys update (no reboot, no confirmation):
#            rkrecover reports what the board would run / trust now, then runs the update to the end
import sys

try:
    import json
except ImportError:
    import ujson as json

from hashlib import sha256

from otakit import BOARD, RUNTIME_MPY, Key, app_files, app_update, board_root, send
from fieldlink.ota import boot, bootsel, fsio
from fieldlink.ota.state import State
from fieldlink.ota.updater import OtaError, Updater

OWNER = Key(b"\x07" * 32)
KEEP = "relay state: fan on"


def _steps(cut):
    n = [0]

    def hook(name):
        n[0] += 1
        if cut is not None and n[0] == cut:
            print("@at %d %s" % (n[0], name))
            sys.stdout.flush() if hasattr(sys.stdout, "flush") else None
            sys.stdin.read()  # wait here for SIGKILL
    fsio.set_hook(hook)
    bootsel.hook = hook
    return n


def _update(root, store):
    up = Updater(store, root, board=BOARD, mpy=RUNTIME_MPY)
    m, sig, stream = app_update(OWNER, app_files(b"v2"), 2, "2.0")
    s = up.begin(m, sig)
    send(s, stream, 300)
    s.finish()


def _boot(root, store):
    for _ in range(4):
        bootsel.select(root)
        r = boot.run_trial(root, store, lambda: (True, None))
        if r["state"] != "reboot":
            return r
    raise AssertionError("boot loops")


def _slot_ok(root, slot):
    """The slot holds a complete bundle: every listed file with its sha256, nothing else."""
    d = root + "/fl/" + slot
    bm = json.loads(fsio.read(d + "/manifest.json"))
    for f in bm["files"]:
        if fsio.hexs(sha256(fsio.read(d + "/" + f["path"])).digest()) != f["sha256"]:
            return None
    return bm["version"]


def _state(root, store):
    active = bootsel._read(root + "/fl/active")
    st = State(store).d
    return {"active": active, "version": _slot_ok(root, active), "counter": st["counters"].get("app"),
            "trial": st["trial"] is not None, "trial_file": bootsel._read(root + "/fl/trial"),
            "keep": bootsel._read(store + "/keep.txt"), "main": fsio.read(root + "/fl/" + active + "/main.mpy")[4:]
            .decode()}


FW_OLD = b"\xe9" + b"\x11" * 5000
FW_NEW = b"\xe9" + bytes(range(256)) * 40 + b"\x22" * 77  # 3 blocks and a partial one


def _sim_boot(root):
    import simboard
    simboard.reset()
    simboard.setup(dir=root + "/sim")


def _sim_reboot(root):
    import simboard
    try:
        simboard.board().end(simboard.HARD_RESET)
    except SystemExit:
        pass
    _sim_boot(root)


def _fw_update(root, store, report=False):
    from otakit import manifest
    up = Updater(store, root, board=BOARD, mpy=RUNTIME_MPY)
    m, sig = manifest(OWNER, "firmware", FW_NEW, 2, "2.0")
    s = up.begin(m, sig)
    if report:
        print("@resume %d" % s.offset)
    send(s, FW_NEW, 1500)
    s.finish()


def _fw_state(root, store):
    import esp32
    run = esp32.Partition(esp32.Partition.RUNNING)
    label = run.info()[4]
    buf = bytearray(len(FW_NEW) if label == "ota_1" else len(FW_OLD))
    run.readblocks(0, buf)
    image = {bytes(FW_NEW): "2.0", bytes(FW_OLD): "1.0"}.get(bytes(buf))
    st = State(store).d
    return {"running": label, "version": image, "counter": st["counters"].get("firmware"),
            "trial": st["trial"] is not None, "state": run._ota_state(), "keep": bootsel._read(store + "/keep.txt")}


def _fw_settle(root, store):
    for _ in range(5):
        r = boot.run_trial(root, store, lambda: (True, None))
        if r["state"] in ("reboot", "rolled_back"):
            _sim_reboot(root)
            continue
        return r
    raise AssertionError("boot loops")


def fw_main(mode, root, store):
    if mode == "fwsetup":
        board_root("pcfw", keys=[OWNER])
        fsio.mkdirs(store)
        st = State(store)
        st.install_keys([OWNER.pub])
        st.raise_counter("firmware", 1, "1.0")
        st.save()
        with open(store + "/keep.txt", "w") as f:
            f.write(KEEP)
        _sim_boot(root)
        import esp32
        esp32.Partition("ota_0").writeblocks(0, FW_OLD + b"\xff" * (-len(FW_OLD) % 4096))
        print("@ok")
        return
    _sim_boot(root)  # every process start is a boot
    if mode == "fwupdate":
        cut = int(sys.argv[3]) if len(sys.argv) > 3 else None
        n = _steps(cut)
        _fw_update(root, store)
        print("@steps %d" % n[0])
    elif mode == "fwconfirm":
        cut = int(sys.argv[3]) if len(sys.argv) > 3 else None
        n = _steps(cut)
        r = boot.run_trial(root, store, lambda: (True, None))
        assert r["state"] == "confirmed", r
        print("@steps %d" % n[0])
    elif mode == "fwrecover":
        # NOR flash: every program must land on erased bytes (the updater erases a sector before its
        # first piece, and rebuilds a sector whose tail a cut may have programmed)
        import esp32
        dirty = []
        orig = esp32._Store.program

        def program(self, off, data):
            if self.label == "ota_1" and self.read(off, len(data)) != b"\xff" * len(data):
                dirty.append(off)
            orig(self, off, data)
        esp32._Store.program = program
        steps = []
        fsio.set_hook(steps.append)
        _fw_settle(root, store)
        print("@state " + json.dumps(_fw_state(root, store)))
        try:
            _fw_update(root, store, report=True)
            _sim_reboot(root)
            _fw_settle(root, store)
            _sim_reboot(root)
        except OtaError as e:
            print("@refused " + e.reason)
        fin = _fw_state(root, store)
        fin["dirty"] = len(dirty)
        fin["rebuilt"] = len([n for n in steps if n.endswith(" prefix")])
        print("@final " + json.dumps(fin))


NEXT = Key(b"\x08" * 32)


def _rk_update(kind, store, root):
    from otakit import manifest
    from fieldlink.rules.verify import verify
    from test_rules_verify import prog
    if kind == "rules":
        payload = prog()
    else:
        payload = ('{"fieldlink_keys":1,"keys":["%s","%s"]}' % (fsio.hexs(NEXT.pub), fsio.hexs(OWNER.pub))).encode()
    m, sig = manifest(OWNER, kind, payload, 2, "2.0")
    up = Updater(store, root, board=BOARD, mpy=RUNTIME_MPY, verify_rules=verify)
    s = up.begin(m, sig)
    send(s, payload, 40)
    s.finish()
    return payload


def _rk_state(kind, store):
    """What a booting node would use: the persisted rules program if its envelope signs it (else the
    bundled one, "bundled"), or the trusted keys; with the counter and version of that kind."""
    from fieldlink.ota import rules_sig
    st = State(store).d
    r = {"counter": st["counters"].get(kind), "version": st["versions"].get(kind),
         "keep": bootsel._read(store + "/keep.txt")}
    if kind == "rules":
        try:
            p = fsio.read(store + "/rules.bin")
        except OSError:
            p = None
        ok = False
        if p is not None:
            try:
                ok = rules_sig.check(store, p, BOARD, rules_sig.envelope(store)) is None
            except OtaError:
                ok = False
        r["runs"] = fsio.hexs(sha256(p).digest()) if ok else "bundled"
    else:
        r["runs"] = sorted(st["keys"])
        r["retired"] = sorted(st["retired"])
    return r


def rk_main(mode, kind, root, store):
    if mode == "rksetup":
        import os
        r, s = board_root("pcrk", keys=[OWNER])
        os.rename(r + "/fl", root + "/fl")
        with open(store + "/keep.txt", "w") as f:
            f.write(KEEP)
        print("@ok")
    elif mode == "rkupdate":
        cut = int(sys.argv[4]) if len(sys.argv) > 4 else None
        n = _steps(cut)
        _rk_update(kind, store, root)
        print("@steps %d" % n[0])
    elif mode == "rkrecover":
        print("@state " + json.dumps(_rk_state(kind, store)))
        try:
            _rk_update(kind, store, root)
        except OtaError as e:
            print("@refused " + e.reason)  # replay: the cut came after the activation
        fin = _rk_state(kind, store)
        if kind == "rules":
            from test_rules_verify import prog
            fin["new"] = fsio.hexs(sha256(prog()).digest())
        print("@final " + json.dumps(fin))


def main():
    mode, root = sys.argv[1], sys.argv[2]
    if mode.startswith("rk"):
        rk_main(mode, sys.argv[3], root, root + "/fl/data")
        return
    if mode.startswith("fw"):
        fw_main(mode, root, root + "/fl/data")
        return
    store = root + "/fl/data"
    if mode == "setup":
        r, s = board_root("pc", keys=[OWNER], files=app_files(b"v0"))
        # the test passes an empty directory; board_root made a fresh one: move its content there
        import os
        for name in ("fl",):
            os.rename(r + "/" + name, root + "/" + name)
        st = State(store)
        st.raise_counter("app", 1, "1.0")
        st.save()
        with open(store + "/keep.txt", "w") as f:
            f.write(KEEP)
        # slot a needs a manifest.json to be checkable: write one for v0
        from otakit import bundle
        mb, _ = bundle(app_files(b"v0"), version="1.0")
        with open(root + "/fl/a/manifest.json", "wb") as f:
            f.write(mb)
        # slot b holds an older bundle (the previous rollback target): the update must clear it first
        old = app_files(b"vold")
        mbo, _ = bundle(old, version="0.9")
        old["manifest.json"] = mbo
        for name in old:
            fsio.mkdirs(root + "/fl/b/" + name[:name.rfind("/")] if "/" in name else root + "/fl/b")
            with open(root + "/fl/b/" + name, "wb") as f:
                f.write(old[name])
        print("@ok")
    elif mode == "update":
        cut = int(sys.argv[3]) if len(sys.argv) > 3 else None
        n = _steps(cut)
        _update(root, store)
        bootsel.select(root)
        r = boot.run_trial(root, store, lambda: (True, None))
        assert r["state"] == "confirmed", r
        print("@steps %d" % n[0])
    elif mode == "recover":
        _boot(root, store)
        print("@state " + json.dumps(_state(root, store)))
        try:
            _update(root, store)
            _boot(root, store)
        except OtaError as e:
            print("@refused " + e.reason)
        print("@final " + json.dumps(_state(root, store)))


main()
