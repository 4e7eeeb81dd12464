"""Client library: ``Client`` (asyncio) and ``SyncClient`` (blocking)."""

from paxctl.client.client import Client, ClientError, Indeterminate, Unavailable
from paxctl.client.sync import SyncClient

__all__ = ["Client", "ClientError", "Indeterminate", "SyncClient", "Unavailable"]
