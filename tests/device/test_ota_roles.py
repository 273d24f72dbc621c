# OTA through the real roles (fieldlink.gateway.role.Gateway with its mailbox, fieldlink.node.role.Node
# with NodeOtaLink) on the fake link of test_node_support: the host uploads and pushes an image over the
# serial uplink; a sleeping node is not contacted while it sleeps, learns of the update in the ACK of its
# telemetry at its next wake, stays awake for the transfer, then goes back to sleep. Both runtimes.
import hashlib

from devtest import rmtree, tmpdir

from test_node import GW, N1, Rig
from test_node_support import Clock, FakeSerial, GW_CFG, asyncio, run
from test_ota_mailbox import SIG, FakeUpdater, manifest_for
from test_ota_transfer import image

from fieldlink.gateway.role import Gateway, mac_hex
from fieldlink.gateway.uplink import Uplink
from fieldlink.link.core import T_OTA_CHUNK
from fieldlink.ota.mailbox import ImageStore, Mailbox, image_id
from fieldlink.ota.transfer_node import NodeOtaLink


class Hook:
    def __init__(self, upd):
        self.upd = upd

    def updater(self, **kw):
        return self.upd


def test_sleeping_node_updates_at_its_next_wake():
    d = tmpdir("otaroles")

    async def main():
        clk = Clock()
        r = Rig(opts={"sleep_ms": 60000, "awake_ms": 300})
        r.clk = clk
        r.node.clock = clk
        ser = FakeSerial()
        up = Uplink(ser, boot=1, clock=clk)
        box = Mailbox(ImageStore(d + "/gw"), chunk=100, window=4)
        gw = Gateway(GW_CFG, r.gwl, up, clock=clk, ota=box)
        upd = FakeUpdater()
        r.node.ota = Hook(upd)
        r.node.ota_link = NodeOtaLink(r.node, d + "/rx", credit=4)
        gw._running = True
        ota_task = asyncio.create_task(gw._ota_task())
        ser.host_send({"t": "hello"})
        up.step()
        payload = image(3000, 7)
        man = manifest_for(payload)
        iid = image_id(man)
        cmds = [{"op": "ota_image", "a": {"id": iid, "size": len(payload), "m": man, "sig": SIG,
                                          "sha256": hashlib.sha256(payload).digest()}}]
        for off in range(0, len(payload), 700):
            cmds.append({"op": "ota_data", "a": {"id": iid, "off": off, "d": payload[off:off + 700]}})
        cmds.append({"op": "ota_push", "a": {"id": iid, "nodes": [mac_hex(N1)]}})
        # the gateway knows this node sleeps; it is asleep now
        gw._node(N1)["sleep"] = 60000
        gw._node(N1)["last"] = clk()
        clk.advance(5000)
        r.air.asleep.add(N1)
        for i, c in enumerate(cmds):
            c["t"] = "cmd"
            c["id"] = 100 + i
            ser.host_send(c)
            up.step()
            res = ser.take("res")
            assert res and res[0]["ok"], (c["op"], res)
        assert res[0]["r"] == {"n": 1}
        for _ in range(10):
            await asyncio.sleep(0.01)
        assert not [e for e in r.air.log if e[2] == T_OTA_CHUNK]     # nothing sent while it sleeps
        assert [m["state"] for m in ser.take("ota")] == ["scheduled"]
        # it wakes: telemetry -> ACK result {"ota": id} -> it stays awake for the whole transfer
        r.air.asleep.discard(N1)
        task = asyncio.create_task(r.node.run())
        for _ in range(1000):
            await asyncio.sleep(0.01)
            clk.advance(10)
            up.step()
            ser.ack_all()
            if r.sleeps:
                break
        await task
        for _ in range(5):
            await asyncio.sleep(0.01)
            up.step()
            ser.ack_all()
        assert r.sleeps == [60000]
        assert bytes(upd.slot) == payload and upd.finished == 1
        seen = {}
        for m in ser.take("ota"):     # the uplink repeats what the (fake) host did not acknowledge
            seen[m["s"]] = m["state"]
        states = [seen[k] for k in sorted(seen)]
        assert states[0] == "updating" and states[-1] == "transferred", states
        assert box.state()[mac_hex(N1)]["state"] == "transferred"
        frames = [e for e in r.air.log if e[2] == T_OTA_CHUNK]
        n = (box.store.blob_size() + 99) // 100
        assert len([e for e in frames if e[0] == GW and e[3][0] == 2]) == n     # every chunk once
        st = gw.status()
        assert st["ota"]["started"] == 1 and st["ota"]["done"] == 1
        gw._running = False
        await asyncio.sleep(0.06)
        ota_task.cancel()

    try:
        run(main())
    finally:
        rmtree(d)
