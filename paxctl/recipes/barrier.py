"""Barriers: hold everyone until a node goes, or until N parties have arrived (and left).

``Barrier`` is ZooKeeper's simple barrier: the node's existence is the barrier; ``wait`` blocks
while it exists (an exists-watch, re-armed until the node is gone).

``DoubleBarrier`` is ZooKeeper's double barrier: ``enter`` waits until ``count`` participants
have entered, ``leave`` until all of them have left. Each participant is an ephemeral child
named by a fresh uid (a create retried after a lost reply answers NodeExists and is recognised
as ours). The last to arrive creates ``ready``, which wakes everyone waiting in ``enter``. In
``leave`` the lowest-named participant waits for the highest one, every other participant
deletes its node and waits for the lowest, so each departure wakes at most two processes
rather than all of them; the last one out removes ``ready``.

A double barrier's path serves one round at a time: a participant of the next round may enter
only once everyone has left the previous one (use a new path per round to avoid the question).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from paxctl.client import Client, Indeterminate, SessionState
from paxctl.recipes._common import (
    check_path,
    child,
    drop,
    owner_info,
    track,
    untrack,
    wait_watch,
)
from paxctl.recipes.errors import ContenderLost, RecipeError
from paxctl.statemachine.errors import NodeExists, NoNode

READY = "ready"


class Barrier:
    """A barrier that holds while ``path`` exists: ``create()``, ``remove()``, ``wait()``."""

    def __init__(self, client: Client, path: str) -> None:
        self.client = client
        self.path = check_path(path)
        self._never = asyncio.Event()  # a barrier holds nothing a session could lose

    async def create(self) -> bool:
        """Put the barrier up: True if this call created it, False if it already stood."""
        try:
            await self.client.create(self.path, parents=True)
        except NodeExists:
            return False
        return True

    async def remove(self) -> bool:
        """Take the barrier down (waking every waiter): True if this call removed it."""
        try:
            await self.client.delete(self.path)
        except NoNode:
            return False
        return True

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until the barrier is down: True, or False at the timeout (None: for ever)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            stat, watch = await self.client.exists_watch(self.path)
            try:
                if stat is None:
                    return True
                if not await wait_watch(watch, deadline, self._never):
                    return False
            finally:
                drop(watch)


class DoubleBarrier:
    """``count`` participants ``enter`` together and ``leave`` together (see the module)."""

    def __init__(self, client: Client, path: str, count: int, owner: str = "") -> None:
        if count < 1:
            raise ValueError(f"a double barrier needs a count of at least 1, not {count}")
        self.client = client
        self.path = check_path(path)
        self.count = count
        self.owner = owner
        #: Our participant node between ``enter`` and ``leave``.
        self.node: str | None = None
        #: Set if the session is lost while we participate (our node is gone with it).
        self.lost = asyncio.Event()
        self._ready = child(self.path, READY)

    def session_ended(self, state: SessionState) -> None:
        if self.node is not None:
            self.lost.set()

    async def enter(self, timeout: float | None = None) -> bool:
        """Join and wait until ``count`` participants have: True; on timeout False, and our
        participant node is removed again."""
        if self.node is not None:
            raise RecipeError(f"{self.path}: already entered")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self.lost.clear()
        self.node = await self._join()
        track(self.client, self)
        try:
            while True:
                stat, watch = await self.client.exists_watch(self._ready)
                try:
                    if stat is not None:
                        return True
                    names = [n for n in await self.client.children(self.path) if n != READY]
                    if self.node.rsplit("/", 1)[-1] not in names:
                        raise ContenderLost(f"{self.node} vanished while entering")
                    if len(names) >= self.count:
                        with contextlib.suppress(NodeExists):
                            await self.client.create(self._ready)
                        return True
                    if not await wait_watch(watch, deadline, self.lost):
                        break
                finally:
                    drop(watch)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._withdraw()
            raise
        await self._withdraw()
        return False

    async def leave(self, timeout: float | None = None) -> bool:
        """Leave, and wait until every participant has left: True; False at the timeout (call
        ``leave`` again to keep waiting)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        mine = self.node.rsplit("/", 1)[-1] if self.node else None
        while True:
            try:
                names = sorted(n for n in await self.client.children(self.path) if n != READY)
            except NoNode:
                names = []
            if mine not in names:
                mine = None
            if not names:
                break
            if names == [mine]:
                await self._delete_own()
                break
            if mine == names[0]:
                target = names[-1]  # the lowest leaves last: wait for the highest
            else:
                if mine is not None:
                    await self._delete_own()
                    mine = None
                target = names[0]
            stat, watch = await self.client.exists_watch(child(self.path, target))
            try:
                if stat is not None and not await wait_watch(watch, deadline, self.lost):
                    return False
            finally:
                drop(watch)
        self._detach()
        with contextlib.suppress(NoNode):
            await self.client.delete(self._ready)
        return True

    async def _join(self) -> str:
        node = child(self.path, uuid.uuid4().hex)
        data = owner_info(self.owner)
        while True:
            try:
                return await self.client.create(node, data, ephemeral=True)
            except NoNode:
                with contextlib.suppress(NodeExists):
                    await self.client.create(self.path, container=True, parents=True)
            except (NodeExists, Indeterminate):
                stat = await self.client.exists(node)  # the name is ours alone
                if stat is not None and stat["ephemeralOwner"] == self.client.session_id:
                    return node

    async def _delete_own(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            with contextlib.suppress(NoNode):
                await self.client.delete(node)

    def _detach(self) -> None:
        self.node = None
        untrack(self.client, self)

    async def _withdraw(self) -> None:
        node = self.node
        self._detach()
        if node is not None:
            with contextlib.suppress(NoNode):
                await asyncio.shield(self.client.delete(node))
