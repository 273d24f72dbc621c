"""The one user-facing error type of the host toolkit."""

from __future__ import annotations


class FieldlinkError(Exception):
    """A user error or an environment problem, reported by the CLI as one line without a traceback.

    ``where`` optionally names the file (and line/column or key) the problem is in.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class FieldlinkTimeout(FieldlinkError, TimeoutError):
    """Something did not happen in time (a board's output, a serial reply). A FieldlinkError for the CLI
    and still a TimeoutError for callers that catch that."""


class Terminated(KeyboardInterrupt):
    """Raised from a SIGTERM handler so that SIGTERM unwinds (and cleans up) exactly like Ctrl-C."""
