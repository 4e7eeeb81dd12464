"""The errors about the cluster (not about the data) a client call may raise.

Pure: the sans-I/O session (session.py) builds them, and the asyncio client raises them.
"""

from __future__ import annotations

from paxctl.client.addresses import format_server
from paxctl.protocol.errors import ErrorCode


class ClientError(Exception):
    """Base of the errors that are about the cluster, not about the data."""

    code: str = "Error"


class Unavailable(ClientError):
    """No server could serve the request before the deadline; nothing was changed."""

    code = ErrorCode.UNAVAILABLE


class Indeterminate(ClientError):
    """A write's fate is unknown: it may or may not have taken effect."""

    code = ErrorCode.INDETERMINATE


class ConnectionLost(ClientError):
    code = "ConnectionLost"


class Refused(ConnectionLost):
    """A server that cannot be connected to at all: nothing listens there (the connection
    was refused), the host is unreachable, or its name does not resolve. Unlike a timeout
    this is known at once, so a client that never reached any server can give up early."""

    def __init__(self, server: tuple[str, int], reason: str) -> None:
        super().__init__(f"{format_server(server)} ({reason})")
        self.server = server
        self.reason = reason


def all_refused(servers: list[tuple[str, int]], refused: dict[tuple[str, int], str]) -> Unavailable:
    """The error for a client that no server would even accept: each one named, with why."""
    tried = ", ".join(f"{format_server(s)} ({refused[s]})" for s in dict.fromkeys(servers))
    return Unavailable(f"no server accepted a connection: {tried}")
