# CircuitPython `supervisor` for the virtual board: ticks_ms() (the 2**29-wrapping millisecond counter of
# CircuitPython), runtime (run_reason, usb/serial connected, autoreload), reload(), set_next_code_file(),
# get_previous_traceback(), get_setting() (settings.toml values from the board's [circuitpython.settings]).
import simboard
from simboard import ticks_ms as _sim_ticks

_TICKS_PERIOD = 1 << 29


def ticks_ms():
    """Milliseconds, wrapping at 2**29 (CircuitPython's supervisor.ticks_ms; use ticks_diff arithmetic)."""
    return _sim_ticks() & (_TICKS_PERIOD - 1)


class RunReason:
    STARTUP = "STARTUP"
    AUTO_RELOAD = "AUTO_RELOAD"
    SUPERVISOR_RELOAD = "SUPERVISOR_RELOAD"
    REPL_RELOAD = "REPL_RELOAD"


class SafeModeReason:
    NONE = "NONE"
    PROGRAMMATIC = "PROGRAMMATIC"
    USER = "USER"
    WATCHDOG = "WATCHDOG"


class Runtime:
    def __init__(self):
        self.autoreload = True
        self.ble_workflow = False
        self.rgb_status_brightness = 255

    @property
    def usb_connected(self):
        return False

    @property
    def serial_connected(self):
        return True

    @property
    def serial_bytes_available(self):
        return 0

    @property
    def run_reason(self):
        b = simboard.board()
        return b.state.get("cpy_run_reason", RunReason.STARTUP)

    @property
    def safe_mode_reason(self):
        return SafeModeReason.NONE


runtime = Runtime()


def reload():
    """Restart code.py: here the board's process ends like a soft reset (simboard.EXIT_SOFT_RESET)."""
    b = simboard.board()
    b.state["cpy_run_reason"] = RunReason.SUPERVISOR_RELOAD
    b.end(simboard.SOFT_RESET)


def set_next_code_file(filename, *, working_directory=None, reload_on_success=False, reload_on_error=False,
                       sticky_on_success=False, sticky_on_error=False, sticky_on_reload=False):
    b = simboard.board()
    b.state["cpy_next_code_file"] = filename
    b.save_state()


def get_previous_traceback():
    return simboard.board().state.get("cpy_traceback")


def get_setting(key, default=None):
    settings = (simboard.board().config.get("circuitpython") or {}).get("settings") or {}
    return settings.get(key, default)


def reset_terminal(x_pixels, y_pixels):
    pass


def set_usb_identification(manufacturer=None, product=None, vid=-1, pid=-1):
    pass
