# Child process of tests/system/test_power_cut.py, run by the MicroPython unix port (MICROPYPATH =
# tests/system, device). Two modes:
#   write NAME STEP DIR   establish the OLD content of persisted file NAME in DIR (no cut), then write its
#                         NEW content through the real device code; at write step STEP of that file
#                         (open, half written, all written, flushed, closed, before rename, after rename)
#                         print "CUT" and hang until the parent SIGKILLs the process: a power cut with
#                         nothing flushed or closed. Prints "DONE" if the write has fewer steps.
#   boot DIR              read every persisted file back through the real readers (a booting board) and
#                         print one JSON line of what they give; relay pins are recorded from creation.
import json
import os
import sys
import time

from fieldlink.link.gateway_link import GatewayLink
from fieldlink.link.node_link import NodeLink
from fieldlink.link.peers import SEC_AUTH
from fieldlink.relays import FileStore, Relays
from fieldlink.rules import engine as rules_engine
from fieldlink.runtime import config, store
from fieldlink.runtime.state import State

GW = b"\x02\x00\x00\x00\x00\x01"
NODE = b"\x02\x00\x00\x00\x00\x02"
KEY_OLD = b"o" * 16
KEY_NEW = b"n" * 16
RELAY_CFG = {"name": "pc", "role": "node", "relays": [{"name": "heater", "pin": 5, "restore": "last"},
                                                        {"name": "pump", "pin": 6, "active": "low",
                                                         "restore": "last"}]}


class Esp:
    def add_peer(self, *a, **k):
        pass

    def del_peer(self, *a):
        pass

    def send(self, *a):
        return True

    def any(self):
        return False

    def irecv(self, *a):
        return None, None


class Pins:
    def __init__(self):
        self.log = []

    def __call__(self, num, value):
        pins = self

        class P:
            def value(self, v=None):
                if v is not None:
                    pins.log.append((num, v))
                return 0
        self.log.append((num, value))
        return P()


_cut = {"name": None, "step": -1, "n": 0}


def _step(path):
    if _cut["name"] is None or not (path.endswith("/" + _cut["name"]) or
                                    path.endswith("/" + _cut["name"] + ".tmp") or
                                    path.endswith("/" + _cut["name"] + ".new")):
        return
    _cut["n"] += 1
    if _cut["n"] == _cut["step"]:
        sys.stdout.write("CUT\n")
        while True:  # power is gone: nothing after this point runs, no file is closed
            time.sleep(1)


class CutFile:
    def __init__(self, f, path):
        self.f = f
        self.path = path

    def write(self, data):
        h = len(data) // 2
        self.f.write(data[:h])
        self.f.flush()
        _step(self.path)  # half of the new content is on disk
        n = self.f.write(data[h:])
        _step(self.path)
        return n

    def flush(self):
        self.f.flush()
        _step(self.path)

    def close(self):
        self.f.close()
        _step(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def cut_open(path, mode="r"):
    f = open(path, mode)
    if "w" in mode:
        _step(path)
        return CutFile(f, path)
    return f


class CutOs:
    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, a, b):
        _step(b)
        os.rename(a, b)
        _step(b)


def arm(name, step):
    _cut["name"], _cut["step"], _cut["n"] = name, step, 0


def _rules(tag):
    # smallest valid program of the device's rules format: built with the host compiler by the parent
    with open(os.getenv("PC_RULES_" + tag), "rb") as f:
        return f.read()


# ------------------------------------------------------------------------------- the persisted files

def w_relays(d, new):
    r = Relays(RELAY_CFG, store=FileStore(d + "/relays.json"), pin_factory=Pins())
    r.set("heater", new, "command")  # one write: heater off -> on
    if not new:
        r.set("pump", True, "command")


def w_node_state(d, new):
    State(d + "/node_state.json")  # every construction is a boot: boot id + 1, saved


def w_gw_state(d, new):
    State(d + "/gw_state.json")


def w_boot(d, new):
    NodeLink(Esp(), NODE, store=d)  # every link start takes the next boot id


def w_pair(d, new):
    nl = NodeLink(Esp(), NODE, store=d, boot_id=1)
    nl._adopt(GW, 6 if new else 1, KEY_NEW if new else KEY_OLD, SEC_AUTH)
    nl._save_pair()


def w_nodes(d, new):
    gl = GatewayLink(Esp(), GW, store=d, boot_id=1)
    gl.add_node(NODE, KEY_NEW if new else KEY_OLD, SEC_AUTH)


def w_ctr(d, new):
    gl = GatewayLink(Esp(), GW, store=d, boot_id=1)
    gl.add_node(NODE, KEY_OLD, SEC_AUTH)
    p = gl.table.get(NODE)
    for _ in range(40 if new else 1):  # crosses a persisted block of 32 when new
        gl._next_ctr(p)


def w_last_good(d, new):
    with open(d + "/board.json", "w") as f:
        f.write(json.dumps(dict(RELAY_CFG, name="new" if new else "old")))
    config.load(d + "/board.json", d + "/board.json.last")


def w_rules(d, new):
    rules_engine.RuleEngine(d + "/rules.bin", restore=False).load(_rules("NEW" if new else "OLD"))


WRITERS = {"relays.json": w_relays, "node_state.json": w_node_state, "gw_state.json": w_gw_state,
           "boot.json": w_boot, "pair.json": w_pair, "nodes.json": w_nodes, "ctr.json": w_ctr,
           "board.json.last": w_last_good, "rules.bin": w_rules}


def boot(d):
    out = {}
    pins = Pins()
    r = Relays(RELAY_CFG, store=FileStore(d + "/relays.json"), pin_factory=pins)
    out["relays"] = {"first": [lv for _n, lv in pins.log[:2]], "state": [r.state("heater"), r.state("pump")]}
    out["node_state"] = State(d + "/node_state.json").boot - 1
    out["gw_state"] = State(d + "/gw_state.json").boot - 1
    out["boot"] = store.read_json(d + "/boot.json")
    nl = NodeLink(Esp(), NODE, store=d, boot_id=1)
    out["pair"] = [nl.channel, nl.table.get(GW).key.decode() if nl.gateway else None]
    gl = GatewayLink(Esp(), GW, store=d, boot_id=1)
    p = gl.table.get(NODE)
    out["nodes"] = p.key.decode() if p is not None and p.key else None
    c = store.read_json(d + "/ctr.json")
    out["ctr"] = list(c["tx"].values()) if isinstance(c, dict) else None
    last = config.load_last_good(d + "/board.json", d + "/board.json.last")
    out["last_good"] = last["name"] if last else None
    eng = rules_engine.RuleEngine(d + "/rules.bin", restore=True)
    out["rules"] = len(eng.prog.raw) if eng.prog is not None else None
    print(json.dumps(out))


def main():
    mode = sys.argv[1]
    if mode == "boot":
        boot(sys.argv[2])
        return
    name, step, d = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    w = WRITERS[name]
    w(d, False)  # the old content, written completely
    store.open = cut_open
    store.os = CutOs()
    rules_engine.open = cut_open
    rules_engine.os = CutOs()
    arm(name, step)
    w(d, True)
    print("DONE")


main()
