# Relays on a 74HC595 shift register: a model of the chip written here (SER sampled on SRCLK rising
# edge, shift Q0 -> Q1 -> ... -> Q7 -> next chip's Q0; RCLK rising edge copies to the outputs; /OE)
# decodes the pin activity of the driver.
from fieldlink.relays import Relays

DATA, CLOCK, LATCH, OE = 7, 5, 6, 9


class HC595Chain:
    def __init__(self, nbits):
        self.nbits = nbits
        self.sr = 0
        self.out = None  # unknown (random) at power-up until the first latch
        self.levels = {}
        self.latches = []
        self.oe_history = []

    def pin(self, num, value):
        chain = self

        class P:
            def value(self, v=None):
                if v is None:
                    return chain.levels[num]
                chain.edge(num, v)

        self.levels[num] = value
        if num == OE:
            self.oe_history.append(value)
        return P()

    def edge(self, num, v):
        old = self.levels[num]
        self.levels[num] = v
        if num == OE:
            self.oe_history.append(v)
        if old == 0 and v == 1:
            if num == CLOCK:
                self.sr = ((self.sr << 1) | self.levels[DATA]) & ((1 << self.nbits) - 1)
            elif num == LATCH:
                self.out = self.sr
                self.latches.append(self.sr)

    def q(self, i):
        return (self.out >> i) & 1


PINS = {"hc595_data": DATA, "hc595_clock": CLOCK, "hc595_latch": LATCH}


def lilygo():
    # the six relays of boards/lilygo-t-relay-s3.toml
    rl = [{"name": "relay%d" % (i + 1), "hc595_bit": i, "active": "high", "restore": "off",
           "min_switch_ms": 1000} for i in range(4)]
    rl.append({"name": "vent_open", "hc595_bit": 4, "interlock": "vent", "max_on_s": 90})
    rl.append({"name": "vent_close", "hc595_bit": 5, "interlock": "vent", "max_on_s": 90})
    return {"pins": dict(PINS), "relays": rl}


def test_boot_latches_all_off_first():
    chain = HC595Chain(8)
    ev = []
    r = Relays(lilygo(), on_event=lambda e: ev.append((e["reason"], len(chain.latches))), clock=lambda: 0,
               pin_factory=chain.pin)
    assert chain.latches == [0]  # exactly one latch, all outputs low
    assert chain.out == 0
    assert ev == [("boot", 1)] * 6  # the safe pattern was latched before the first event
    assert not any(r.states().values())


def test_bits_map_to_outputs():
    chain = HC595Chain(8)
    r = Relays(lilygo(), clock=lambda: 0, pin_factory=chain.pin)
    r.on("relay1")
    assert chain.out == 0b000001
    r.on("relay4")
    assert chain.out == 0b001001
    r.on("vent_close")
    assert chain.out == 0b101001 and chain.q(5) == 1
    r.on("vent_open")  # interlock: close goes off (latched) before open goes on
    assert chain.latches[-2:] == [0b001001, 0b011001]
    r.off("relay1", now_ms=5000)
    assert chain.out == 0b011000


def test_active_low_bit_and_chained_chips_with_output_enable():
    config = {"pins": dict(PINS, hc595_oe=OE),
              "relays": [{"name": "a", "hc595_bit": 2, "active": "low"},
                         {"name": "b", "hc595_bit": 9, "active": "high", "max_on_s": 1}]}
    chain = HC595Chain(16)
    r = Relays(config, clock=lambda: 0, pin_factory=chain.pin)
    # /OE held high (outputs off) until the safe pattern is latched, then enabled
    assert chain.oe_history == [1, 0]
    assert chain.latches == [0b100]  # active-low relay a: OFF is a high output
    r.on("a")
    r.on("b")
    assert chain.out == 1 << 9
    assert chain.q(2) == 0
    assert r.tick(1000) == 1  # b: max on-time 1 s
    assert chain.out == 0
