import _blocked

_blocked.refuse("aioespnow")
