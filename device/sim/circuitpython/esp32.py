import _blocked

_blocked.refuse("esp32")
