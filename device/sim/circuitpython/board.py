# CircuitPython `board` for the virtual board: pin names -> microcontroller.Pin, and the board's default
# buses I2C() / STEMMA_I2C() / UART() as singletons. The names come from the board config the virtual
# board runs (board.json "circuitpython": {"board_id": ..., "pins": {"SCL": 4, ...}}, written by the host
# from boards/*.toml), else the Adafruit Feather ESP32-S3 4MB Flash 2MB PSRAM (pins as in
# circuitpython-stubs board_definitions/adafruit_feather_esp32s3_4mbflash_2mbpsram).
import microcontroller
import simboard

FEATHER_S3_ID = "adafruit_feather_esp32s3_4mbflash_2mbpsram"
FEATHER_S3 = {
    "BUTTON": 0, "BOOT0": 0, "D0": 0, "SDA": 3, "D3": 3, "SCL": 4, "D4": 4, "D5": 5, "D6": 6,
    "I2C_POWER": 7, "D7": 7, "A5": 8, "D8": 8, "D9": 9, "D10": 10, "D11": 11, "D12": 12, "LED": 13,
    "D13": 13, "L": 13, "A4": 14, "D14": 14, "A3": 15, "D15": 15, "A2": 16, "D16": 16, "A1": 17, "D17": 17,
    "A0": 18, "D18": 18, "NEOPIXEL_POWER": 21, "NEOPIXEL": 33, "MOSI": 35, "D35": 35, "SCK": 36, "D36": 36,
    "MISO": 37, "D37": 37, "RX": 38, "D38": 38, "TX": 39, "D39": 39,
}


def _definition():
    cfg = simboard.board().config.get("circuitpython") or {}
    pins = cfg.get("pins")
    if pins:
        return str(cfg.get("board_id", "fieldlink_virtual")), pins
    return FEATHER_S3_ID, FEATHER_S3


def _names():
    return sorted(_definition()[1])


def __getattr__(name):  # module __getattr__ (PEP 562; MicroPython >= 1.20 supports it too)
    if name == "board_id":
        return _definition()[0]
    pins = _definition()[1]
    if name in pins:
        return microcontroller.gpio(int(pins[name]))
    raise AttributeError("module 'board' has no attribute '%s'" % name)


def _singleton(key, make):
    b = simboard.board()
    objs = getattr(b, "cpy_board_buses", None)
    if objs is None:
        objs = b.cpy_board_buses = {}
    obj = objs.get(key)
    if obj is None or getattr(obj, "_deinited", False):
        obj = objs[key] = make()
    return obj


def I2C():
    """The board's I2C bus (SCL/SDA) with busio.I2C's defaults; the same object on every call."""
    import busio
    return _singleton("i2c", lambda: busio.I2C(__getattr__("SCL"), __getattr__("SDA")))


def STEMMA_I2C():
    return I2C()  # the Feather's STEMMA QT connector is wired to SCL/SDA


def UART():
    import busio
    return _singleton("uart", lambda: busio.UART(__getattr__("TX"), __getattr__("RX")))
