"""A counting semaphore: up to ``limit`` holders at once, first come, first served.

The holders are the first ``limit`` contenders in the queue. Waking the right waiter without a
herd needs more care than for a lock, because a holder anywhere in front may leave:

* the *first waiter* (position ``limit``) is the only contender that watches the children
  list: any holder leaving makes it a holder;
* every later waiter watches the node just before it, and a contender that becomes a holder
  *touches* its node (rewrites its owner info with ``acquired``), which wakes its successor:
  that successor has just become the first waiter, or a holder itself.

So a release wakes one process (the first waiter), and each promotion wakes one more. A waiter
compares the watched node's version with the one its listing saw, so a touch that happens
between the two is not missed.

The limit lives in the data of the semaphore's node (``{"limit": N}``), written by whoever
creates it. A party checks it *after* its own contender node exists, because only then can the
node (a container) not be removed and recreated with another limit under it; a party whose
limit differs withdraws and gets ``LimitMismatch``.
"""

from __future__ import annotations

import json
import time

from paxctl.client import Client, Indeterminate
from paxctl.recipes._common import Entry, parse_object
from paxctl.recipes._queue import CHILDREN, HOLD, Queued
from paxctl.recipes.errors import ContenderLost, LimitMismatch, RecipeError
from paxctl.statemachine.errors import BadVersion, NoNode


class Semaphore(Queued):
    """Up to ``limit`` concurrent holders of ``path``; the interface of ``Lock``.

    ``token`` is our node's czxid, unique to this grant and larger than any grant's before ours
    in the queue, but there is no fence: ``fence`` is None (the cluster's fence check is for
    exclusive holders).
    """

    kind = "sem"
    fenced = False
    watch_prev = False  # the first waiter watches the children, the others their neighbour

    def __init__(self, client: Client, path: str, limit: int, owner: str = "") -> None:
        if limit < 1:
            raise ValueError(f"a semaphore needs a limit of at least 1, not {limit}")
        super().__init__(client, path, owner)
        self.limit = limit

    def blocker(self, entries: list[Entry], index: int) -> str | None:
        if index < self.limit:
            return HOLD
        if index == self.limit:
            return CHILDREN if self.limit > 1 else entries[0].name
        return entries[index - 1].name

    def parent_data(self) -> bytes:
        return json.dumps({"limit": self.limit}).encode()

    async def stored_limit(self) -> int | None:
        """The limit the semaphore's node records, or None if there is no node yet."""
        while True:
            try:
                data, stat = await self.client.get(self.path)
            except NoNode:
                return None
            if data.strip():
                return _parse_limit(self.path, data)
            # A node someone else made (a ``parents`` create, a person): claim it, atomically.
            try:
                await self.client.set(self.path, self.parent_data(), stat["version"])
            except (BadVersion, NoNode, Indeterminate):
                pass  # someone else wrote it, or ours landed: read it again
            else:
                return self.limit

    async def on_created(self) -> None:
        actual = await self.stored_limit()
        if actual is not None and actual != self.limit:
            raise LimitMismatch(self.path, self.limit, actual)

    async def on_acquired(self) -> None:
        # Wake our successor (see the module docstring); retried while its fate is unknown.
        assert self.node is not None
        doc = parse_object(self.created_data)
        doc["acquired"] = int(time.time() * 1000)
        data = json.dumps(doc, sort_keys=True).encode()
        for _ in range(3):
            try:
                await self.client.set(self.node, data)
                return
            except Indeterminate:
                continue
            except NoNode as exc:
                raise ContenderLost(f"{self.node} vanished as it acquired") from exc
        raise Indeterminate(f"could not mark {self.node} as holding")


def _parse_limit(path: str, data: bytes) -> int:
    try:
        limit = json.loads(data)["limit"]
    except (ValueError, KeyError, TypeError):
        limit = None
    if type(limit) is not int or limit < 1:
        raise RecipeError(f"{path} is not a semaphore (its data is {data[:60]!r})")
    return limit
