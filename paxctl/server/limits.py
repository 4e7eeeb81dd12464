"""Resource limits of a node's client port and of the process, and who counts against them.

Everything here is pure (no sockets, no clock): the asyncio shell asks ``Connections.admit``
before it keeps an accepted client connection and tells ``release`` when it goes, and sizes the
descriptor budget from ``RLIMIT_NOFILE`` at start. A refused connection is closed at once; the
shell logs the reason through ``Throttle`` so a flood of refusals is a bounded number of lines.

Why descriptors are budgeted rather than left to ``accept()`` failing: once a process runs out,
the next WAL segment, snapshot or metadata file cannot be opened and the node must stop (exit
70). So client connections may use the descriptors left after a reserve kept for storage, peers
and the listening sockets, and no more.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from paxctl.protocol.framing import HEADER_SIZE, MAX_FRAME, MIN_HELLO_FRAME

#: The client listener's backlog, and the most connections accepted in one loop turn (each is
#: counted, or refused and closed, as it is accepted: one descriptor at a time).
ACCEPT_BURST = 128
#: Descriptors kept free for storage (WAL segments, snapshot writes, metadata, directory fsyncs),
#: peer links and whatever the runtime opens (e.g. a DNS lookup).
FD_RESERVE = 64


@dataclass(frozen=True)
class Limits:
    """The client port's limits (flags of ``paxctl node start``; README "Limits")."""

    #: Client connections this node keeps at once (further ones are closed at accept).
    max_connections: int = 4096
    #: Client connections from one source address (ZooKeeper's ``maxClientCnxns`` is 60).
    max_connections_per_address: int = 256
    #: Largest frame a client may send before its hello (a hello without watches is ~100 B;
    #: a client with many watches says hello without them first: ``HELLO_WATCH_BYTES``).
    max_hello_bytes: int = 8 * 1024
    #: A connection that has not said hello by then is closed.
    hello_timeout_ms: int = 10_000
    #: A connection without a session that sends nothing for this long is closed (a watcher
    #: pings far more often). One with a session is left to its session timeout, plus slack.
    idle_timeout_ms: int = 300_000
    #: Bytes queued to a client that does not read its replies before it is dropped (at least
    #: one largest reply frame, so a slow reader of one big answer is not cut off).
    max_queued_bytes: int = MAX_FRAME + HEADER_SIZE + 64 * 1024
    #: How long a client may leave its queue full (writing paused) before it is dropped.
    write_stall_ms: int = 30_000
    #: Watches one connection may hold (a hello re-registers at most this many).
    max_watches_per_connection: int = 100_000

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_connections_per_address < 1:
            raise ValueError("connection limits must be at least 1")
        if self.max_hello_bytes < MIN_HELLO_FRAME:
            raise ValueError(f"the hello frame limit must be at least {MIN_HELLO_FRAME} bytes")
        if self.max_queued_bytes < MAX_FRAME + HEADER_SIZE:
            raise ValueError(f"the queue limit must hold one whole frame ({MAX_FRAME} bytes)")
        if min(self.hello_timeout_ms, self.idle_timeout_ms, self.write_stall_ms) < 1:
            raise ValueError("timeouts must be at least 1 ms")
        if self.max_watches_per_connection < 1:
            raise ValueError("the watch limit must be at least 1")


#: The ``Limits`` fields: each is also a ``paxctl node start`` flag (``--max-connections``) and
#: a TOML key of the same name.
LIMIT_KEYS = tuple(f.name for f in fields(Limits))


def fd_budget(soft_limit: int, in_use: int, reserve: int = FD_RESERVE) -> int:
    """Client connections the descriptor limit leaves room for: what is not open yet
    (``in_use`` at start: stdio, listeners, storage) less the reserve; never below zero."""
    return max(0, soft_limit - in_use - reserve)


class Connections:
    """Counts open client connections, in all and per source address, against the limits."""

    def __init__(
        self, limits: Limits, fd_room: int | None = None, fd_ceiling: int | None = None
    ) -> None:
        self.limits = limits
        #: Connections the descriptor budget allows (None: not limited by descriptors).
        self.fd_room = fd_room
        #: A connection whose descriptor number reaches this is refused (the table is full).
        self.fd_ceiling = fd_ceiling
        self.total = 0
        self._by_address: dict[str, int] = {}
        self.refused = 0

    def admit(self, address: str, fd: int = -1) -> str | None:
        """Count a new connection from ``address`` (on descriptor ``fd``), or say why it is
        refused (then it is not counted)."""
        limits = self.limits
        reason: str | None = None
        near = self.fd_ceiling is not None and fd >= self.fd_ceiling
        if near or (self.fd_room is not None and self.total >= self.fd_room):
            reason = "near the open-file limit (descriptors are kept for storage and peers)"
        elif self.total >= limits.max_connections:
            reason = f"{self.total} client connections open (--max-connections)"
        elif self._by_address.get(address, 0) >= limits.max_connections_per_address:
            reason = (
                f"{limits.max_connections_per_address} connections from {address} "
                "(--max-connections-per-address)"
            )
        if reason is not None:
            self.refused += 1
            return reason
        self.total += 1
        self._by_address[address] = self._by_address.get(address, 0) + 1
        return None

    def release(self, address: str) -> None:
        """A connection ``admit`` counted has closed."""
        left = self._by_address.get(address, 0) - 1
        if left < 0:
            raise ValueError(f"no connection from {address} was counted")
        self.total -= 1
        if left:
            self._by_address[address] = left
        else:
            del self._by_address[address]

    def from_address(self, address: str) -> int:
        return self._by_address.get(address, 0)
