# In-memory fakes shared by test_gateway*.py and test_node*.py (no test functions here): a fake air that
# connects fake links with the fieldlink.link.core API (on/send/submit/send_gw/run/stop/permit_join/join), a
# fake serial line for the gateway uplink, a host end that speaks the uplink protocol, a settable clock,
# fake relays/RTC/WDT, and a tiny asyncio driver that works on both runtimes.
import asyncio

from fieldlink.codec import mpack
from fieldlink.codec.serialframe import FrameDecoder, encode_frame
from fieldlink.link.core import BROADCAST, ST_ERROR, ST_UNHANDLED
from fieldlink.link.core import LinkError as _LinkError
from fieldlink.runtime.tasks import exc_text


class LinkError(_LinkError):
    # fieldlink.link.core.LinkError calls Exception.__init__(self, msg), which MicroPython lacks; build the
    # same object through super() so the fakes raise a real LinkError subclass on both runtimes.
    def __init__(self, msg, status=None, result=None):
        super(_LinkError, self).__init__(msg)
        self.status = status
        self.result = result


def run(coro):
    return asyncio.run(coro)


async def pump(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


class Clock:
    def __init__(self, t=1000):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, ms):
        self.t += ms


def wire(obj):
    # what the radio would deliver: a msgpack round trip (catches unencodable objects)
    return mpack.unpackb(mpack.packb(obj))


class FakeAir:
    def __init__(self):
        self.links = {}
        self.asleep = set()
        self.gw = None
        self.log = []  # (src, dst, mtype, obj)


class FakeLink:
    def __init__(self, air, mac, gateway=False, paired=True):
        self.air = air
        self.mac = mac
        self.handlers = {}
        self.counters = {"tx_msgs": 0, "rx_msgs": 0, "send_fail": 0}
        self.paired = paired
        self.lost = False
        self.on_join = None
        self.join_s = 0
        self.running = False
        self.forgotten = []
        air.links[mac] = self
        if gateway:
            air.gw = mac

    def on(self, mtype, handler):
        self.handlers[mtype] = handler

    def _deliver(self, dst, mtype, obj, msgid):
        peer = self.air.links.get(dst)
        self.air.log.append((self.mac, dst, mtype, obj))
        if peer is None or dst in self.air.asleep or not peer.running:
            self.counters["send_fail"] += 1
            raise LinkError("no ACK")
        self.counters["tx_msgs"] += 1
        peer.counters["rx_msgs"] += 1
        h = peer.handlers.get(mtype)
        if h is None:
            raise LinkError("unhandled", ST_UNHANDLED)
        try:
            r = h(self.mac, mtype, wire(obj), msgid)
        except Exception as e:
            raise LinkError("handler error", ST_ERROR, exc_text(e))
        return wire(r)

    async def send(self, dst, mtype, obj, ack=True, msgid=0):
        await asyncio.sleep(0)
        return self._deliver(dst, mtype, obj, msgid)

    def send_unseq(self, dst, mtype, obj):
        """Link.send_unseq: one frame, no ACK (the OTA transfer has its own)."""
        try:
            self._deliver(dst, mtype, obj, 0)
        except LinkError:
            return False
        return True

    def submit(self, dst, mtype, obj, ack=True, msgid=0):
        if dst == BROADCAST:
            for mac in list(self.air.links):
                if mac != self.mac:
                    try:
                        self._deliver(mac, mtype, obj, msgid)
                    except LinkError:
                        pass
            return None
        try:
            self._deliver(dst, mtype, obj, msgid)
        except LinkError:
            pass
        return None

    async def send_gw(self, mtype, obj, ack=True, msgid=0):
        if not self.paired or self.air.gw is None:
            raise LinkError("not paired")
        return await self.send(self.air.gw, mtype, obj, ack, msgid)

    async def join(self, timeout_ms=3000):
        gw = self.air.links.get(self.air.gw)
        await asyncio.sleep(0)
        if gw is None or not gw.join_s:
            return False
        self.paired = True
        if gw.on_join is not None:
            gw.on_join(self.mac)
        return True

    async def rescan(self, timeout_ms=3000):
        self.lost = False
        return True

    def permit_join(self, seconds):
        self.join_s = seconds

    def node(self, mac):
        return {"rssi": -42} if mac in self.air.links else None

    def forget(self, mac):
        self.forgotten.append(mac)

    async def run(self):
        self.running = True
        while self.running:
            await asyncio.sleep(0.01)

    def stop(self):
        self.running = False


class FakeSerial:
    """Gateway-side transport; the test plays the host through .host_* methods."""

    def __init__(self):
        self.rx = bytearray()  # host -> gateway bytes not yet read
        self.connected = True
        self.dec = FrameDecoder(4096)
        self.received = []  # decoded gateway -> host messages

    def read(self):
        if not self.rx:
            return None
        data = bytes(self.rx[:100])  # small chunks: frames straddle reads
        self.rx = self.rx[100:]
        return data

    def writable(self):
        return self.connected

    def write(self, data):
        if not self.connected:
            return False
        for p in self.dec.feed(data):
            self.received.append(mpack.unpackb(p))
        return True

    def hup(self):
        return not self.connected

    # host side
    def host_send(self, msg):
        self.rx += encode_frame(mpack.packb(msg))

    def host_raw(self, data):
        self.rx += data

    def take(self, t=None):
        out = [m for m in self.received if t is None or m.get("t") == t]
        self.received = [m for m in self.received if not (t is None or m.get("t") == t)]
        return out

    def ack_all(self):
        if self.received:
            s = max(m.get("s", 0) for m in self.received)
            self.host_send({"t": "ack", "s": s})


class FakePin:
    def __init__(self, num, value):
        self.num = num
        self.v = value

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v


class PinBank:
    """pin_factory for fieldlink.relays.Relays that remembers every pin it made."""

    def __init__(self):
        self.pins = {}

    def __call__(self, num, value):
        p = FakePin(num, value)
        self.pins[num] = p
        return p


class FakeRTC:
    def __init__(self):
        self.mem = b""

    def memory(self, data=None):
        if data is None:
            return self.mem
        self.mem = bytes(data)


class FakeWDT:
    def __init__(self):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


NODE_CFG = {
    "name": "t-node", "chip": "esp32s3", "role": "node", "pins": {}, "i2c": [],
    "relays": [{"name": "fan", "pin": 1, "active": "high", "min_switch_ms": 0},
               {"name": "pump", "pin": 2, "active": "low", "max_on_s": 60, "min_switch_ms": 2000}],
    "sensors": [{"name": "syn", "driver": "synthetic", "interval_ms": 1000, "seed": 3},
                {"name": "syn2", "driver": "synthetic", "interval_ms": 2000, "seed": 4}],
    "options": {"heartbeat_s": 30, "telemetry_batch": 3},
}

GW_CFG = {"name": "t-gw", "chip": "esp32c6", "role": "gateway", "pins": {}, "i2c": [], "relays": [],
          "sensors": [], "options": {"ring_buffer": 32, "cmd_ttl_s": 60}}
