import _blocked

_blocked.refuse("machine")
