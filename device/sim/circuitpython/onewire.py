import _blocked

_blocked.refuse("onewire")
