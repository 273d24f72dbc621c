"""GPIO maps of the supported chips, from Espressif's datasheets, for `boards check` (docs/boards.md).

Each table cites the datasheet section it comes from. They say which GPIO numbers exist and which ones
a board must not give to a relay, a sensor or a bus because the chip already uses them (flash/PSRAM,
USB, console UART) or reads them at reset (strapping pins).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChipPins:
    chip: str
    #: ESP32-S3: Datasheet v1.9 section 2.2 "Pin Overview" (Table 2-1): GPIO0-21 and GPIO26-48; 22-25 do not exist.
    #: ESP32-C6: Datasheet v1.2 section 2.2 "Pin Overview" (Table 2-1, QFN40): GPIO0-30.
    gpios: frozenset[int]
    gpio_text: str
    #: read at reset to select the boot mode: section 3 "Boot Configurations", Table 3-1
    strapping: frozenset[int]
    #: wired to the in-module SPI flash (and quad PSRAM): section 2.3.x "Pin Mapping Between Chip and Flash/PSRAM"
    flash: frozenset[int]
    #: also used by octal flash/PSRAM (ESP32-S3R8/N8R8/N16R8 modules): same table, SPIIO4-7/SPIDQS
    octal: frozenset[int]
    #: USB Serial/JTAG (D-, D+): section 2.3 "IO Pins" / peripheral pin assignment
    usb: frozenset[int]
    #: UART0 TXD0/RXD0, the REPL console used by deploy and monitor
    console: frozenset[int]
    #: ADC1 channels (ADC2 cannot be used while Wi-Fi/ESP-NOW is on): section 4.2 "Analog Peripherals"
    adc1: frozenset[int]
    #: I2C controllers MicroPython exposes as machine.I2C(id)
    i2c_ids: frozenset[int]
    #: UART ids a sensor may use (UART0 is the console)
    uart_ids: frozenset[int]


def _r(a: int, b: int) -> frozenset[int]:
    return frozenset(range(a, b + 1))


CHIP_PINS: dict[str, ChipPins] = {
    # ESP32-S3 Series Datasheet (Espressif, v1.9): Table 2-1 pin overview; Table 3-1 strapping pins
    # GPIO0, GPIO3, GPIO45, GPIO46; SPI0/1 flash pins GPIO26-32 (SPICS1, SPIHD, SPIWP, SPICS0, SPICLK,
    # SPIQ, SPID), octal pins GPIO33-37; USB_D- GPIO19, USB_D+ GPIO20; U0TXD GPIO43, U0RXD GPIO44;
    # ADC1_CH0-9 on GPIO1-10; two I2C controllers; three UARTs.
    "esp32s3": ChipPins(
        chip="esp32s3",
        gpios=_r(0, 21) | _r(26, 48),
        gpio_text="GPIO0-21 and GPIO26-48",
        strapping=frozenset({0, 3, 45, 46}),
        flash=_r(26, 32),
        octal=_r(33, 37),
        usb=frozenset({19, 20}),
        console=frozenset({43, 44}),
        adc1=_r(1, 10),
        i2c_ids=frozenset({0, 1}),
        uart_ids=frozenset({1, 2}),
    ),
    # ESP32-C6 Series Datasheet (Espressif, v1.2): Table 2-1 pin overview (QFN40) GPIO0-30; Table 3-1
    # strapping pins MTMS/GPIO4, MTDI/GPIO5, GPIO8, GPIO9, GPIO15; SPI0/1 flash pins GPIO24-30
    # (not recommended for other uses); USB_D- GPIO12, USB_D+ GPIO13; U0TXD GPIO16, U0RXD GPIO17;
    # ADC1_CH0-6 on GPIO0-6; one HP I2C controller; UART0 and UART1 (HP).
    "esp32c6": ChipPins(
        chip="esp32c6",
        gpios=_r(0, 30),
        gpio_text="GPIO0-30",
        strapping=frozenset({4, 5, 8, 9, 15}),
        flash=_r(24, 30),
        octal=frozenset(),
        usb=frozenset({12, 13}),
        console=frozenset({16, 17}),
        adc1=_r(0, 6),
        i2c_ids=frozenset({0}),
        uart_ids=frozenset({1}),
    ),
}

#: pin uses and whether each may sit on a strapping pin: a relay driver or an analog input can hold a
#: strapping pin at the wrong level during reset; the BOOT button and the status LED of Espressif's own
#: DevKits sit on strapping pins by design (GPIO0; GPIO8 on the C6), and I2C pull-ups keep the default level.
STRAPPING_OK = frozenset({"status_led", "button", "i2c", "onewire", "uart", "hc595"})


def pin_problem(cp: ChipPins, pin: int, use: str, psram: str) -> str | None:
    """Why ``pin`` cannot serve ``use`` on this chip (rule broken), or None if it can."""
    if pin not in cp.gpios:
        return f"GPIO{pin} does not exist on {cp.chip} (it has {cp.gpio_text})"
    if pin in cp.flash:
        return f"GPIO{pin} is wired to the SPI flash/PSRAM on {cp.chip} modules"
    if psram == "octal" and pin in cp.octal:
        return f"GPIO{pin} is used by the octal flash/PSRAM (board psram = \"octal\")"
    if pin in cp.usb:
        return f"GPIO{pin} is a USB D-/D+ line on {cp.chip} (console and deploy over native USB)"
    if pin in cp.console:
        return f"GPIO{pin} is the UART0 console (TXD0/RXD0) on {cp.chip}"
    if pin in cp.strapping and use not in STRAPPING_OK:
        what = {"adc": "an analog input", "relay": "a relay driver"}.get(use, use)
        return f"GPIO{pin} is a strapping pin on {cp.chip}: {what} on it could change the boot mode at reset"
    if use == "adc" and pin not in cp.adc1:
        return (f"GPIO{pin} is not an ADC1 pin on {cp.chip} (ADC1: GPIO{min(cp.adc1)}-{max(cp.adc1)}; "
                "ADC2 is unusable while ESP-NOW runs)")
    return None
