# Device-side OTA: verify a signed manifest before accepting a single payload byte, stream the payload
# into the staging area while hashing, verify every hash, then activate (docs/ota.md "Device update
# API"). Kinds: app (bundle into the inactive slot fl/a|b, switched on trial: see fieldlink.ota.boot),
# firmware (next esp32 OTA partition, ESP-IDF rollback), rules (signed rules program into the store),
# keys (owner key rotation). State (trust store, counters, trial, session) lives in <store>/ota.
try:
    import json
except ImportError:  # pragma: no cover
    import ujson as json

try:
    from hashlib import sha256
except ImportError:  # pragma: no cover
    from uhashlib import sha256

from fieldlink.ota import fsio
from fieldlink.ota.manifest import KINDS, OtaError, check, mpy_loadable, runtime_mpy, safe_path
from fieldlink.ota.state import State, parse_owner_keys

BLOCK = 4096  # firmware: flash sector (erase unit) = esp32.Partition block
PIECE = 512  # firmware: written and recorded per piece, so a resume resends < 2 transfer windows
PIECES = BLOCK // PIECE
SLOTS = ("a", "b")
BUNDLE_FORMAT = "fieldlink-bundle/1"
BUNDLE_MANIFEST = "manifest.json"
RULES_FILE = "rules.bin"  # = fieldlink.ota.rules_sig.RULES_FILE
RULES_SIG = "rules.bin.ota"  # signed manifest + signature of the installed rules program
AUTO = object()


def _dirname(p):
    i = p.rfind("/")
    return p[:i] if i > 0 else ""


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


class Updater:
    def __init__(self, store, root=".", board=None, kinds=KINDS, mpy=AUTO, on_rules=None, verify_rules=None):
        """store: the store directory (fl/data); root: where fl/ lives; board: this board's name;
        mpy: the runtime's sys.implementation._mpy (AUTO: detect; None: do not check);
        verify_rules(program_bytes): the rules verifier (fieldlink.rules.verify.verify); without it the
        device takes no rules updates (a gateway: the rules code stays out of its bundle);
        on_rules(program_bytes): called after a rules update is installed (the node swaps it in)."""
        self.store = store.rstrip("/")
        self.root = root.rstrip("/") or "."
        self.board = board
        self.kinds = kinds
        self.mpy = runtime_mpy() if mpy is AUTO else mpy
        self.on_rules = on_rules
        self.verify_rules = verify_rules
        if verify_rules is None:
            self.kinds = tuple(k for k in kinds if k != "rules")
        self.state = State(self.store)
        self.dir = self.state.dir
        self.session_path = self.dir + "/session.json"
        self.session = None

    # ---- paths
    def fl(self, name):
        return self.root + "/fl/" + name

    def active_slot(self):
        s = read_text(self.fl("active"))
        return s if s in SLOTS else None

    # ---- manifest
    def check_manifest(self, mbytes, sig):
        """Everything that can be checked before the payload (fieldlink.ota.manifest.check)."""
        self.state.reload()
        return check(self.state, mbytes, sig, self.board, self.kinds, self.mpy)

    # ---- sessions
    def begin(self, mbytes, sig):
        """Verify the manifest, then open (or resume) the session that receives its payload."""
        mbytes = bytes(mbytes)
        sig = bytes(sig)
        m = self.check_manifest(mbytes, sig)
        t = self.state.d["trial"]
        if t is not None:
            raise OtaError("busy", "%s %s waits for its boot confirmation" % (t["kind"], t["version"]))
        text = mbytes.decode()
        old = self._load_session()
        if old is not None and old.get("m") == text and old.get("sig") == fsio.hexs(sig):
            s = Session(self, m, mbytes, sig, old)
            s.resume()
        else:
            self._drop_session(old)
            s = Session(self, m, mbytes, sig, None)
            s.start()
        self.session = s
        return s

    def _load_session(self):
        try:
            d = json.loads(fsio.read(self.session_path))
            return d if isinstance(d, dict) else None
        except (OSError, ValueError):
            return None

    def _drop_session(self, old):
        fsio.remove(self.session_path)
        fsio.remove(self.dir + "/stage.bin")
        fsio.remove(self.dir + "/fwprog.bin")
        fsio.remove(self.dir + "/fwsec.bin")

    def status(self):
        d = self.state.reload()
        r = {"keys": sorted(d["keys"]), "counters": dict(d["counters"]), "versions": dict(d["versions"]),
             "trial": None, "last_rollback": d["last_rollback"], "session": None}
        t = d["trial"]
        if t is not None:
            r["trial"] = {"kind": t["kind"], "version": t["version"]}
        s = self.session
        if s is not None and not s.closed:
            r["session"] = {"kind": s.kind, "version": s.m["version"], "offset": s.offset, "total": s.total}
        return r


class Session:
    def __init__(self, up, m, mbytes, sig, rec):
        self.up = up
        self.m = m
        self.mbytes = mbytes
        self.sig = sig
        self.kind = m["kind"]
        self.total = m["stream_size"]
        self.offset = 0
        self.closed = False
        self.rec = rec or {"m": mbytes.decode(), "sig": fsio.hexs(sig)}
        self.h = sha256()

    # ---- setup
    def _save(self):
        fsio.atomic_write(self.up.session_path, json.dumps(self.rec).encode())

    def start(self):
        up = self.up
        fsio.mkdirs(up.dir)
        if self.kind == "app":
            active = up.active_slot()
            slot = "b" if active == "a" else "a"
            # the staging slot is emptied BEFORE the session record exists: a session on disk always
            # means its slot holds only bytes of that session
            fsio.clear_dir(up.fl(slot))
            self.rec["slot"] = slot
        elif self.kind == "firmware":
            part = self._partition(None)
            self.rec["label"] = part.info()[4]
        self._save()
        self._setup()

    def _partition(self, label):
        try:
            import esp32
        except ImportError:
            raise OtaError("wrong_kind", "no esp32 partitions on this port: firmware updates impossible")
        if label is not None:
            return esp32.Partition(label)
        nxt = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
        if self.total > nxt.info()[3]:
            raise OtaError("oversize", "image of %d bytes, partition holds %d" % (self.total, nxt.info()[3]))
        return nxt

    def _setup(self):
        if self.kind == "app":
            self.slot = self.rec["slot"]
            self.sdir = self.up.fl(self.slot)
            self.files = [[BUNDLE_MANIFEST, self.m["size"], self.m["sha256"]]]
            self.fi = 0
            self.fpos = 0
        elif self.kind == "firmware":
            self.part = self._partition(self.rec["label"])
            self.prog = self.up.dir + "/fwprog.bin"  # one byte per piece on flash (its size = progress)
            self.secf = self.up.dir + "/fwsec.bin"  # a sector's recorded prefix while it is rebuilt
            self.buf = bytearray(BLOCK)
            self.blen = 0
            self.pieces = 0
        else:
            self.stage = self.up.dir + "/stage.bin"

    def resume(self):
        """Continue an interrupted session from what is on flash (app, rules, keys) or from the last
        block recorded (firmware), re-hashing the bytes already there."""
        self._setup()
        if self.kind == "app":
            while self.fi < len(self.files):
                name, size, _ = self.files[self.fi]
                p = self.sdir + "/" + name
                have = fsio.size(p)
                if have < 0:
                    break
                if have > size:
                    self.abort("bad_hash")
                    raise OtaError("bad_hash", "%s is longer than listed" % name)
                self.h = fsio.sha256_file(p)
                self.fpos = have
                self.offset += have
                if have < size:
                    break
                self._file_done()
            self._empty_files()
        elif self.kind == "firmware":
            self._fw_resume()
        else:
            if fsio.exists(self.stage):
                self.h = fsio.sha256_file(self.stage)
                self.offset = fsio.size(self.stage)

    # ---- streaming
    def write(self, offset, data):
        """Take payload bytes at offset. Returns the new resume offset (self.offset)."""
        if self.closed:
            raise OtaError("closed", "session is closed")
        if offset > self.offset:
            raise OtaError("gap", "expected offset %d, got %d" % (self.offset, offset))
        end = offset + len(data)
        if end <= self.offset:
            return self.offset  # already have it
        if end > self.total:
            self.abort("oversize")
            raise OtaError("oversize", "%d bytes announced, got data up to %d" % (self.total, end))
        data = memoryview(data)[self.offset - offset:]
        if self.kind == "app":
            self._write_app(data)
        elif self.kind == "firmware":
            self._write_fw(data)
        else:
            if self.offset == 0 and not fsio.exists(self.stage):
                fsio.atomic_write(self.stage, b"")
            fsio.append(self.stage, data)
            self.h.update(data)
            self.offset += len(data)
        return self.offset

    def _write_app(self, data):
        i = 0
        n = len(data)
        while i < n:
            name, size, _ = self.files[self.fi]
            k = min(n - i, size - self.fpos)
            p = self.sdir + "/" + name
            if self.fpos == 0:
                d = _dirname(name)
                if d:
                    fsio.mkdirs(self.sdir + "/" + d)
            chunk = data[i:i + k]
            fsio.append(p, chunk)
            self.h.update(chunk)
            self.fpos += k
            self.offset += k
            i += k
            if self.fpos == size:
                self._file_done()
                self._empty_files()

    def _empty_files(self):
        while self.fi < len(self.files) and self.files[self.fi][1] == 0:
            name = self.files[self.fi][0]
            if _dirname(name):
                fsio.mkdirs(self.sdir + "/" + _dirname(name))
            fsio.atomic_write(self.sdir + "/" + name, b"")
            self._file_done()

    def _file_done(self):
        name, size, want = self.files[self.fi]
        if fsio.hexs(self.h.digest()) != want:
            self.abort("bad_hash")
            raise OtaError("bad_hash", "%s does not match its sha256" % name)
        p = self.sdir + "/" + name
        if name.endswith(".mpy"):
            with open(p, "rb") as f:
                hdr = f.read(4)
            if len(hdr) < 4 or hdr[0] != 0x4D or not mpy_loadable(hdr[1], hdr[2] & 3, hdr[2] >> 2, self.up.mpy):
                self.abort("mpy_version")
                raise OtaError("mpy_version", "%s: .mpy this runtime cannot load" % name)
        if self.fi == 0:
            self._bundle_manifest(p)
        self.fi += 1
        self.fpos = 0
        self.h = sha256()

    def _bundle_manifest(self, p):
        try:
            bm = json.loads(fsio.read(p))
            ok = isinstance(bm, dict) and bm.get("format") == BUNDLE_FORMAT and isinstance(bm.get("files"), list)
        except (OSError, ValueError):
            ok = False
        if not ok:
            self.abort("bad_manifest")
            raise OtaError("bad_manifest", "bundle manifest.json is not %s" % BUNDLE_FORMAT)
        if bm.get("board") != self.m["board"]:
            self.abort("wrong_board")
            raise OtaError("wrong_board", "bundle is for %s" % bm.get("board"))
        total = self.m["size"]
        seen = {}
        for f in bm["files"]:
            path = f.get("path") if isinstance(f, dict) else None
            size = f.get("size") if isinstance(f, dict) else None
            sha = f.get("sha256") if isinstance(f, dict) else None
            if not safe_path(path) or path in seen or not isinstance(size, int) or size < 0 \
                    or not isinstance(sha, str) or len(sha) != 64:
                self.abort("bad_manifest")
                raise OtaError("bad_manifest", "bad file entry %r" % (path,))
            seen[path] = 1
            self.files.append([path, size, sha])
            total += size
        if total != self.total:
            self.abort("bad_manifest")
            raise OtaError("bad_manifest", "files add up to %d bytes, stream_size is %d" % (total, self.total))

    def _write_fw(self, data):
        if self.offset == 0 and len(data) and data[0] != 0xE9:
            self.abort("bad_image")
            raise OtaError("bad_image", "firmware image does not start with the 0xE9 magic")
        self.h.update(data)
        self.offset += len(data)
        buf = self.buf  # one preallocated piece buffer
        i = 0
        n = len(data)
        while i < n:
            k = min(n - i, PIECE - self.blen)
            buf[self.blen:self.blen + k] = data[i:i + k]
            self.blen += k
            i += k
            if self.blen == PIECE:
                self._flush_piece(memoryview(buf)[:PIECE])
                self.blen = 0

    def _flush_piece(self, data):
        """Program piece number self.pieces (erased flash only: its sector is erased when its first
        piece is written, a resume re-erases a sector whose tail may hold a cut write), then record it."""
        n = self.pieces
        blk, sub = divmod(n, PIECES)
        label = self.rec["label"]
        if sub == 0:
            fsio.hook("erase %s block %d" % (label, blk))
            self.part.ioctl(6, blk)  # BLOCK_ERASE: the whole 4096-byte sector
        fsio.hook("flash %s piece %d" % (label, n))
        self.part.writeblocks(blk, data, sub * PIECE)  # with offset: program only, no erase
        fsio.append(self.prog, b"\x01")
        self.pieces = n + 1

    def _fw_resume(self):
        """Resume point: the last recorded piece. The sector it lies in may hold the start of a piece
        that was being written (cut between program and record): keep the recorded prefix of that sector
        in the store, erase the sector, program the prefix back, so every later write lands on erased
        flash. A cut during this rebuild is finished from fwsec.bin at the next resume."""
        part = self.part
        if fsio.exists(self.secf):
            raw = fsio.read(self.secf)
            self._fw_restore(raw[0] | (raw[1] << 8) | (raw[2] << 16), memoryview(raw)[3:])
        n = max(fsio.size(self.prog), 0)
        upto = min(n * PIECE, self.total)
        blk = self.buf
        mv = memoryview(blk)
        for i in range((upto + BLOCK - 1) // BLOCK):
            part.readblocks(i, blk)
            self.h.update(mv[:min(BLOCK, upto - i * BLOCK)])
        self.offset = upto
        self.pieces = n
        b, sub = divmod(n, PIECES)
        if sub and upto < self.total:
            part.readblocks(b, blk)
            if any(x != 0xFF for x in mv[sub * PIECE:]):  # not erased after the resume point: rebuild
                fsio.atomic_write(self.secf, bytes((b & 0xFF, (b >> 8) & 0xFF, b >> 16)) + bytes(mv[:sub * PIECE]))
                self._fw_restore(b, bytes(mv[:sub * PIECE]))

    def _fw_restore(self, b, prefix):
        label = self.rec["label"]
        fsio.hook("erase %s block %d" % (label, b))
        self.part.ioctl(6, b)
        fsio.hook("flash %s block %d prefix" % (label, b))
        self.part.writeblocks(b, prefix, 0)
        fsio.remove(self.secf)

    # ---- end
    def abort(self, reason=None):
        self.closed = True
        self.up._drop_session(self.rec)
        self.up.session = None

    def finish(self):
        """All bytes received: check the payload hash, then activate. Returns {kind, version, counter,
        reboot}. A truncated stream raises OtaError('truncated') and the session stays resumable."""
        if self.closed:
            raise OtaError("closed", "session is closed")
        if self.offset < self.total:
            raise OtaError("truncated", "%d of %d bytes received" % (self.offset, self.total))
        m = self.m
        kind = self.kind
        up = self.up
        st = up.state
        if kind == "firmware":
            if self.blen:  # the last, short piece (the rest of its sector stays erased)
                self._flush_piece(memoryview(self.buf)[:self.blen])
                self.blen = 0
        if kind != "app" and fsio.hexs(self.h.digest()) != m["sha256"]:
            self.abort("bad_hash")
            raise OtaError("bad_hash", "payload does not match the signed sha256")
        res = {"kind": kind, "version": m["version"], "counter": m["counter"], "reboot": False}
        trial = {"kind": kind, "version": m["version"], "counter": m["counter"], "booted": False}
        if kind == "app":
            fsio.atomic_write(self.sdir + "/ota.json", self.mbytes)
            fsio.atomic_write(self.sdir + "/ota.sig", self.sig)
            trial["slot"] = self.slot
            trial["prev"] = up.active_slot()
            st.d["trial"] = trial
            st.save()
            fsio.atomic_write(up.fl("trial"), ("%s 0" % self.slot).encode())
            res["reboot"] = True
        elif kind == "firmware":
            import esp32
            trial["label"] = self.rec["label"]
            trial["prev"] = esp32.Partition(esp32.Partition.RUNNING).info()[4]
            st.d["trial"] = trial
            st.save()
            fsio.hook("set_boot " + self.rec["label"])
            try:
                self.part.set_boot()
            except OSError as e:
                st.d["trial"] = None
                st.save()
                self.abort("bad_image")
                raise OtaError("bad_image", "set_boot refused the image: %s" % (e,))
            res["reboot"] = True
        elif kind == "rules":
            prog = fsio.read(self.stage)
            try:
                up.verify_rules(prog)
            except Exception as e:
                self.abort("bad_rules")
                raise OtaError("bad_rules", "rules program rejected: %s" % (e,))
            fsio.atomic_write(up.store + "/" + RULES_SIG,
                              json.dumps({"m": self.mbytes.decode(), "sig": fsio.hexs(self.sig)}).encode())
            fsio.atomic_write(up.store + "/" + RULES_FILE, prog)
            st.raise_counter(kind, m["counter"], m["version"])
            st.save()
            if up.on_rules is not None:
                up.on_rules(prog)
        else:  # keys
            try:
                pubs = parse_owner_keys(fsio.read(self.stage))
            except ValueError as e:
                self.abort("bad_keys")
                raise OtaError("bad_keys", str(e))
            st.install_keys(pubs)
            st.raise_counter(kind, m["counter"], m["version"])
            st.save()  # new keys, retired keys and the counter in one record write
        self.closed = True
        up._drop_session(self.rec)
        up.session = None
        return res
