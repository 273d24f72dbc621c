import _blocked

_blocked.refuse("network")
