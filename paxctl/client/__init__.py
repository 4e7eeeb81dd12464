"""Client library: ``Client`` (asyncio) and ``SyncClient`` (blocking).

Its names are imported on first use (PEP 562): ``paxctl get`` uses the blocking reader
(blocking.py) and must not pay for asyncio by importing this package on the way.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Where each name lives.
_WHERE = {
    "Client": "paxctl.client.client",
    "ClientError": "paxctl.client.errors",
    "Indeterminate": "paxctl.client.errors",
    "SessionExpired": "paxctl.statemachine.errors",
    "SessionState": "paxctl.client.session_types",
    "Unavailable": "paxctl.client.errors",
    "Watch": "paxctl.client.watch",
    "WatchEvent": "paxctl.client.watch",
    "SyncClient": "paxctl.client.sync",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


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
