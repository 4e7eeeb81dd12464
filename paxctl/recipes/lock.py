"""Exclusive and shared/exclusive locks (ZooKeeper's lock recipes, on ``Queued``).

A lock at ``path`` is the queue of ephemeral-sequential children of ``path``; the first one
holds it. Each waiter watches only the node just before it, so a release wakes exactly the next
waiter, and since sequence numbers only grow, waiters are served first come, first served.

The holder's ``token`` is its node's czxid. Every later holder's node was created later (it was
behind ours in the queue, or came after ours was deleted), so its czxid is strictly larger: a
resource that remembers the largest token it has seen can refuse a stale holder, and the
cluster itself checks it for writes carrying ``fence=lock.fence``.

Read/write lock: readers share, writers are exclusive, and the queue stays fair. A reader waits
only for the nearest writer before it (readers behind a writer do not overtake it); a writer
waits for the node just before it, reader or writer. A plain ``Lock`` on the same path behaves
as a writer, so ``paxctl lock -s`` and ``paxctl lock`` can meet on one name.
"""

from __future__ import annotations

from typing import NamedTuple

from paxctl.client import Client
from paxctl.recipes._common import Contender, Entry, parse_object
from paxctl.recipes._queue import HOLD, Queued
from paxctl.statemachine.errors import NoNode


class Lock(Queued):
    """An exclusive lock at ``path``; ``owner`` is free text shown by ``contenders()``.

    ``acquire(timeout)`` (None: wait for ever, 0: try once) -> bool, ``release()``, ``async
    with``; while held, ``node``, ``token`` and ``fence``; ``lost`` is set if the session is
    lost (SUSPENDED does not set it: we may still hold the lock, and cannot know). Not
    re-entrant: one object holds the lock at most once, and a second ``acquire`` on the same
    object raises ``RecipeError``; two objects on one client queue like two processes.
    """

    kind = "lock"


class WriteLock(Lock):
    """The exclusive side of a ``ReadWriteLock``."""

    kind = "write"


class ReadLock(Queued):
    """The shared side of a ``ReadWriteLock``: held together with other readers, never with a
    writer; it waits for the nearest exclusive contender queued before it, if any."""

    kind = "read"
    fenced = False  # readers share: the cluster's fence check names one holder only
    watch_prev = False  # a reader waits for the nearest writer, not its neighbour

    def blocker(self, entries: list[Entry], index: int) -> str | None:
        for entry in reversed(entries[:index]):
            if not entry.shared:
                return entry.name
        return HOLD


class ReadWriteLock:
    """A shared/exclusive lock at ``path``: ``rw.read`` and ``rw.write`` are lock objects with
    the ``Lock`` interface (each its own contender; use one object per concurrent holder)."""

    def __init__(self, client: Client, path: str, owner: str = "") -> None:
        self.path = path
        self.read = ReadLock(client, path, owner)
        self.write = WriteLock(client, path, owner)


class LockStatus(NamedTuple):
    """Who holds a lock (or read/write lock, or semaphore) and who waits, in queue order."""

    limit: int | None  # a semaphore's, else None
    holders: list[Contender]
    waiting: list[Contender]


def stored_limit(data: bytes) -> int | None:
    """The limit a semaphore's node records, or None for a plain lock's (empty) node."""
    limit = parse_object(data).get("limit")
    return limit if type(limit) is int and limit >= 1 else None


def holds(queue: list[Contender], index: int, limit: int | None) -> bool:
    """Whether the contender at ``index`` holds, by the rules of the recipes: a semaphore's
    first ``limit``; a reader with no exclusive contender before it; else only the first."""
    me = queue[index]
    if me.kind == "sem" and limit is not None:
        return index < limit
    if me.kind == "read":
        return all(c.kind == "read" for c in queue[:index])
    return index == 0


async def lock_status(client: Client, path: str) -> LockStatus:
    """The holders and waiters of the lock at ``path``, by the rules of the recipes; any
    client may ask, without contending."""
    try:
        data, _ = await client.get(path)
    except NoNode:
        data = b""
    limit = stored_limit(data)
    queue = await Lock(client, path).contenders()
    holders: list[Contender] = []
    waiting: list[Contender] = []
    for index, c in enumerate(queue):
        (holders if holds(queue, index, limit) else waiting).append(c)
    return LockStatus(limit, holders, waiting)
