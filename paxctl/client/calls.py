"""What both drivers of a ``ClientSession`` share: how one is set up for a client, how a read
is asked and what each read returns. The asyncio ``Client`` (client.py) and the blocking
``BlockingClient`` (blocking.py) move bytes differently; here they answer alike.

Pure: no sockets, loops or clocks (the session's secret comes from the OS's randomness).
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable, Sequence
from typing import Any

from paxctl.client.addresses import format_server
from paxctl.client.session import ClientSession
from paxctl.protocol.messages import ReadKind
from paxctl.protocol.secrets import SECRET_BYTES

#: How long one attempt on one server may take before the client tries another.
ATTEMPT_TIMEOUT = 2.0

#: errno values of a connect that failed for good (as opposed to a slow or busy server).
REFUSALS = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EADDRNOTAVAIL: "address not available",
}


def new_secret() -> bytes:
    """A fresh client secret from the OS's randomness: it names the temporary id and proves
    the session (protocol/secrets.py)."""
    return os.urandom(SECRET_BYTES)


def new_session(
    servers: Sequence[tuple[str, int]], session_timeout: float, ping_interval: float | None
) -> ClientSession:
    """The session a client of ``servers`` drives (times in seconds, as the drivers take them)."""
    return ClientSession(
        [format_server(s) for s in servers],
        rng=random.Random(),
        new_secret=new_secret,
        session_timeout_ms=session_timeout * 1000,
        ping_interval_ms=None if ping_interval is None else ping_interval * 1000,
        attempt_timeout_ms=ATTEMPT_TIMEOUT * 1000,
        hello_timeout_ms=ATTEMPT_TIMEOUT * 1000,
    )


def read(
    session: ClientSession, kind: str, path: str, local: bool, /, **extra: Any
) -> Callable[[float, float], int]:
    """A read of ``kind`` as a call to start: ``make(now, timeout_ms)`` returns its id.
    Positional-only: ``extra`` may hold a ``session`` of its own (whose ephemerals to list)."""
    what = ReadKind(kind)

    def make(now: float, timeout_ms: float) -> int:
        return session.read(now, what, path, timeout_ms, local=local, **extra)

    return make


def get_result(value: Any) -> tuple[bytes, dict[str, Any]]:
    return bytes(value["data"]), dict(value["stat"])


def exists_result(value: Any) -> dict[str, Any] | None:
    return dict(value) if value is not None else None


def children_result(value: Any, stats: bool) -> Any:
    return value if stats else list(value["children"])
