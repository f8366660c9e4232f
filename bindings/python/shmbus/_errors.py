"""The exceptions of shmbus: one base, shmbus.Error, and a subclass for the statuses a program
is likely to handle. Every one carries the status's name (.status), its number in the C API
(.code) and the library's sentence about what happened (str(e))."""

from __future__ import annotations


class Error(Exception):
    """A shmbus call failed. .status names why ("topic_not_found", "would_block"...)."""

    def __init__(self, message: str, status: str = "error", code: int = -1) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DaemonNotRunning(Error):
    """Nobody serves the bus directory: start shmbusd."""


class TopicNotFound(Error):
    """The topic does not exist (and was not created on first use)."""


class PermissionDenied(Error):
    """The bus's access control, or the file system, refused."""


class Full(Error):
    """The topic's ring is full of unacked messages (on-full fail), or stayed full until the
    publish timeout (on-full block)."""


class TooLarge(Error):
    """The message (with its headers) is larger than the topic's max_message."""


class TopicDeleted(Error):
    """The topic was deleted; everything published before was delivered."""


class Corrupt(Error):
    """The topic's shared memory failed a check: damaged or hostile."""


_BY_STATUS = {
    "daemon_not_running": DaemonNotRunning,
    "topic_not_found": TopicNotFound,
    "permission_denied": PermissionDenied,
    "would_block": Full,
    "timed_out": Full,
    "too_large": TooLarge,
    "message_too_large": TooLarge,
    "deleted": TopicDeleted,
    "corrupt": Corrupt,
    "corrupt_segment": Corrupt,
}


def error_for(code: int, status: str, text: str) -> Error:
    """The exception for a C API status (called by the extension)."""
    cls = _BY_STATUS.get(status, Error)
    return cls(text or status, status, code)
