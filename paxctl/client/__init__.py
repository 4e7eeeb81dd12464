"""Client library: ``Client`` (asyncio) and ``SyncClient`` (blocking)."""

from paxctl.client.client import (
    Client,
    ClientError,
    Indeterminate,
    SessionExpired,
    SessionState,
    Unavailable,
    Watch,
    WatchEvent,
)
from paxctl.client.sync import SyncClient

__all__ = [
    "Client",
    "ClientError",
    "Indeterminate",
    "SessionExpired",
    "SessionState",
    "SyncClient",
    "Unavailable",
    "Watch",
    "WatchEvent",
]
