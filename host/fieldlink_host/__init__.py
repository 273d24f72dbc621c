"""fieldlink host toolkit: build, sign, deploy, simulate and bridge fieldlink fleets.

Every CLI command is a typed library function first; the CLI in :mod:`fieldlink_host.cli` is a thin
layer on top. User-facing failures raise :class:`fieldlink_host.errors.FieldlinkError`.
"""

from fieldlink_host.errors import FieldlinkError

__version__ = "0.1.0"
__all__ = ["FieldlinkError", "__version__"]
