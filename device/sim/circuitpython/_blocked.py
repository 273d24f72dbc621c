# Shared by the MicroPython-only module names (machine, network, esp32, onewire, aioespnow): CircuitPython
# has none of them, so importing one on the CircuitPython virtual board fails as it does on hardware.
def refuse(name):
    raise ImportError("no module named '%s' (CircuitPython)" % name)
