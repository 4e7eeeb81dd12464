"""The process's file descriptors: raise the limit at start, budget what clients may use, and
keep ``accept()`` failures from flooding the log (the asyncio shell only; never the core).

A node needs descriptors for its storage at unpredictable moments (a new WAL segment, a
snapshot, metadata, directory fsyncs); if clients have taken them all, that open fails and the
node must stop (exit 70). So the soft ``RLIMIT_NOFILE`` is raised to the hard limit, and client
connections get what is left after what is open at start and a reserve (``limits.FD_RESERVE``
plus a few per peer, for peer links in and out and strangers on the peer port).
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
from typing import Any

from paxctl.server.limits import FD_RESERVE, Connections, Limits, fd_budget
from paxctl.server.logthrottle import Throttle

#: Descriptors reserved per peer: its outbound link, its inbound link, and room for strangers.
PER_PEER = 4
_OUT_OF_FDS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft open-file limit as far as the hard one allows; (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        for attempt in (target, 10_240):  # macOS refuses more than OPEN_MAX for the soft limit
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(attempt, target), hard))
                break
            except (ValueError, OSError):
                continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def open_descriptors() -> int | None:
    """How many descriptors this process has open (None where the system does not say)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # the listing's own descriptor
        except OSError:
            continue
    return None


def budget(limits: Limits, peers: int) -> Connections:
    """The client connection accountant, with room for what the descriptor limit leaves."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return Connections(limits)
    reserve = FD_RESERVE + PER_PEER * peers
    in_use = open_descriptors()
    room = fd_budget(soft, in_use if in_use is not None else 64, reserve)
    # A new socket's number is the lowest free one, so one at or above this means the table is
    # nearly full, whatever the count says (e.g. descriptors someone else opened).
    return Connections(limits, fd_room=room, fd_ceiling=soft - reserve // 2)


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, throttle: Throttle) -> None:
    """Route the event loop's "out of descriptors" accept errors through ``throttle``: asyncio
    logs each with a traceback and retries a second later, which under a flood of connections
    is thousands of lines."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_FDS:
            throttle.error(
                "accept",
                "cannot accept connections: %s (new connections wait; existing ones are served)",
                exc.strerror or exc,
            )
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
