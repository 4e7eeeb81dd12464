"""The queue every lock-like recipe stands in: ephemeral-sequential children of one node.

A contender creates ``<path>/<uid>-<kind>-`` (ephemeral, sequential), lists the children with
their stats, and asks its subclass's ``blocker`` whether it holds or what to wait for: one other
node (an exists-watch: it wakes when that node goes or changes, and no one else wakes with it)
or, for a semaphore's first waiter only, the children list. Then it waits and looks again. The
listing is never watched by more than one contender, so a release wakes one process, not the
herd (ZooKeeper's lock recipe; kazoo, Curator and etcd's mutex do the same).

Round trips. The create is a queued one (``Client.enqueue``): its answer carries the first
listing, and the node that applied it has already set a watch on our own node and, for the
exclusive kinds, one on the sibling just before ours. So an uncontended acquire is one request
and its release one more (the delete fires our own watch, which ends it: no unwatch); a waiter
costs one listing more per wake-up. The own-node watch is what tells a holder its node went.

Lost replies. The client retries a write for its whole timeout and then raises
``Indeterminate``: the node may exist. A blind second create would leave a ghost contender at
the front of the queue, blocking everyone until our session ends. So ``recover`` first sends a
harmless write (a ``Check`` in a ``Multi``): once the cluster has applied a later write of this
client, the lost create is either applied already or refused for ever (its sequence number is
stale), and listing the children for our uid answers the question for good.

Giving up. A contender that times out, fails or is cancelled deletes its node before
``acquire`` returns (shielded from the cancellation). If the cluster cannot be reached the
deletion carries on in the background until it succeeds or the session ends, because a
leftover node would block the queue for as long as this client keeps its session alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from paxctl.client import Client, Indeterminate, SessionState, Unavailable, Watch
from paxctl.client.errors import ConnectionLost
from paxctl.recipes._common import (
    Contender,
    Entry,
    check_path,
    child,
    drop,
    entries_from,
    log,
    order_names,
    owner_info,
    parse_object,
    spawn,
    track,
    untrack,
    wait_watch,
)
from paxctl.recipes.errors import ContenderLost, RecipeError
from paxctl.recipes.held import DEFAULT_KILL_GRACE, holding
from paxctl.statemachine.errors import NodeExists, NoNode, SessionExpired, ZnodeError
from paxctl.statemachine.ops import Check

#: ``blocker`` answers: hold now, or wait for the children list to change (else a node name).
HOLD = None
CHILDREN = "\0children"


class Queued:
    """Base of ``Lock``, ``ReadLock``, ``WriteLock`` and ``Semaphore``: one object is one
    contender, which may acquire and release many times (never twice at once).

    Our node holds ``data`` if given (the election's value), else the owner info as JSON.
    """

    kind: ClassVar[str] = "lock"
    #: Whether a holder's token is a fence the cluster checks (exclusive holders only: the
    #: cluster's check accepts the first node of the queue, and nobody else).
    fenced: ClassVar[bool] = True
    #: Whether the create should watch the node just before ours (what ``blocker`` waits for
    #: when everyone before us blocks us; others would leave that watch unused).
    watch_prev: ClassVar[bool] = True

    def __init__(
        self, client: Client, path: str, owner: str = "", *, data: bytes | None = None
    ) -> None:
        self.client = client
        self.path = check_path(path)
        self.owner = owner
        #: Our contender node while we contend or hold, else None.
        self.node: str | None = None
        #: czxid of our node once we hold: strictly larger for every later holder of an
        #: exclusive lock, so a resource can refuse a stale holder (see ``fence``).
        self.token: int | None = None
        #: Set when our session is lost (or the client closed, or our node was deleted) while
        #: we contend or hold. SUSPENDED does not set it: the node may well still exist.
        self.lost = asyncio.Event()
        #: How many times a watch woke this contender (each wake-up costs a listing): the
        #: measure of the herd effect, for tests and diagnostics.
        self.wakeups = 0
        self._data = data
        #: The data our node was created with (owner info, or the election's value).
        self.created_data = b""
        self._held = False
        self._busy = False
        self._releasing = False
        self._uncertain = False  # a create of ours may have taken effect unseen
        self._session: int | None = None  # the session that owns our node
        self._monitor: asyncio.Task[None] | None = None
        #: The one-shot watch on our node (the create's, then the monitor's), until it fires.
        self._own: Watch | None = None
        #: The create's answer: its listing and its watch on the node before ours, if any.
        self._first: tuple[dict[str, Any] | None, Watch | None] | None = None

    # ------------------------------------------------------------------ policy (subclasses)

    def blocker(self, entries: list[Entry], index: int) -> str | None:
        """``HOLD`` if the contender at ``index`` holds, else the name of the node to watch
        (or ``CHILDREN``). The default is exclusive: everyone before us blocks us."""
        return HOLD if index == 0 else entries[index - 1].name

    def parent_data(self) -> bytes:
        return b""

    async def on_created(self) -> None:
        """Called once our node exists, before we wait (the semaphore checks its limit)."""

    async def on_acquired(self) -> None:
        """Called once we hold, before ``acquire`` returns (the semaphore announces it)."""

    # ------------------------------------------------------------------ public surface

    @property
    def held(self) -> bool:
        """Whether we believe we hold it: acquired, not released, no loss seen. A belief:
        while the session is SUSPENDED we may hold it or not; see ``client.valid_until()``."""
        return self._held and not self.lost.is_set()

    @property
    def fence(self) -> tuple[str, int] | None:
        """``(path, token)`` for a fenced write (``client.set(..., fence=lock.fence)``), which
        the cluster applies only while our node is still the first in the queue."""
        if not self.fenced or not self.held or self.token is None:
            return None
        return (self.path, self.token)

    async def acquire(self, timeout: float | None = None) -> bool:
        """Queue and wait until we hold it: True. ``timeout`` None waits for ever, 0 tries once.

        False on timeout, with our node deleted. Raises ``ContenderLost`` if our node vanished
        while we waited (session expired), and the client's ``Unavailable`` when the cluster
        cannot be reached; the deadline covers the waiting, each call has the client's own.
        """
        if self._busy or self._held:
            raise RecipeError(f"{self.path}: this object already holds or is acquiring it")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(0.0, timeout)
        self._busy = True
        self.lost.clear()
        self.token = None
        track(self.client, self)
        prefix = f"{uuid.uuid4().hex}-{self.kind}-"
        ok = False
        try:
            try:
                self.node = await self._create(prefix)
                await self.on_created()
                ok = await self._wait_turn(deadline)
                if ok:
                    await self.on_acquired()
            except SessionExpired as exc:  # the session ended under a write of ours
                await self._abandon(prefix)
                self._mark_lost()
                raise ContenderLost(f"{self.path}: session expired while queueing") from exc
            except BaseException:
                await self._abandon(prefix)
                raise
            if not ok:
                await self._abandon(prefix)
                return False
        finally:
            self._busy = False
        self._held = True
        self._releasing = False
        self._monitor = spawn(self._watch_own_node(self.node))
        return True

    async def release(self) -> None:
        """Give it up: delete our node (a no-op if we hold nothing). If the cluster cannot be
        reached the deletion goes on in the background and this raises ``Unavailable``."""
        if self._busy:
            raise RecipeError(f"{self.path}: acquire is pending; cancel it to withdraw")
        node, own = self.node, self._own
        self._held = False
        self._releasing = True
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None
        self.node = None
        self.token = None
        self._own = None
        untrack(self.client, self)
        try:
            if node is not None:
                await self._delete(node)
        finally:
            drop(own)  # fired by the delete already (its event comes before its answer)

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    async def holding(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        grace: float = DEFAULT_KILL_GRACE,
        timeout: float | None = None,
        forward_signals: bool = True,
    ) -> int:
        """Run the command ``argv`` only while this is certainly held; its exit status (128+N
        if killed by signal N).

        Acquires first unless held already (for ever, or ``timeout`` seconds: ``TimeoutError``
        if not acquired, after withdrawing) and then releases once the command and every
        process of its group are gone; a hold taken by the caller stays held. The command
        runs in its own process group, with our environment plus ``env`` (None removes a
        variable), SIGINT/SIGTERM/SIGHUP forwarded to it (unless ``forward_signals`` is
        false). If the hold can no longer be trusted (``paxctl.recipes.held``: the session
        expired, or no ping acknowledged for too long) it gets SIGTERM, then SIGKILL
        ``grace`` seconds later and before the cluster can give the hold to anyone else (a
        watchdog process does it even if this one is stopped), and ``HoldLost`` is raised.
        ``TimingError`` if ``grace`` + margin + the client's ping interval do not fit in the
        session timeout; ``OSError`` if the command cannot be started.
        """
        take = None if self.held else self.acquire
        return await holding(
            self.client, self.lost, take, self.release, argv, env=env, grace=grace,
            timeout=timeout, forward_signals=forward_signals,
        )  # fmt: skip

    async def is_held(self) -> bool:
        """Ask the cluster: our node still exists, is our session's, and is in front."""
        if not self._held or self.node is None:
            return False
        entries = await self._entries()
        name = self.node.rsplit("/", 1)[-1]
        index = next((i for i, e in enumerate(entries) if e.name == name), None)
        if index is None or entries[index].owner_session != self.client.session_id:
            self._mark_lost()
            return False
        return self.blocker(entries, index) is HOLD

    def valid_until(self) -> float | None:
        """While we hold it: the monotonic time (``loop.time()``) until which our session,
        and so our hold, is certainly alive; past it, stop anything the lock protects."""
        return self.client.valid_until() if self.held else None

    async def contenders(self) -> list[Contender]:
        """Everyone queued, holders first: ``(node, owner info, token)`` (``lock status``)."""

        async def one(entry: Entry) -> Contender | None:
            node = child(self.path, entry.name)
            try:
                data, stat = await self.client.get(node)
            except NoNode:
                return None  # left while we looked
            return Contender(node, parse_object(data), stat["czxid"])

        found = await asyncio.gather(*(one(e) for e in await self._entries()))
        return [c for c in found if c is not None]

    def session_ended(self, state: SessionState) -> None:
        if self._busy or self._held:
            self._mark_lost()

    # ------------------------------------------------------------------ the steps

    def _mark_lost(self) -> None:
        self._held = False
        self.lost.set()

    def _node_data(self) -> bytes:
        return self._data if self._data is not None else owner_info(self.owner, kind=self.kind)

    async def _entries(self) -> list[Entry]:
        try:
            listing: dict[str, Any] = await self.client.children(self.path, stats=True)
        except NoNode:
            return []
        return entries_from(listing)

    async def _ensure_parent(self) -> None:
        """The queue's node, a container (the cluster removes it once the last contender
        leaves; a create racing that removal gets NoNode and comes back here)."""
        with contextlib.suppress(NodeExists):
            await self.client.create(self.path, self.parent_data(), container=True, parents=True)

    async def _create(self, prefix: str) -> str:
        self.created_data = self._node_data()
        while True:
            self._uncertain = True  # until we know: a cancellation now leaves it unknown
            node: str | None
            try:
                queued = await self.client.enqueue(
                    child(self.path, prefix), self.created_data, watch_prev=self.watch_prev
                )
                node, self._own = queued.path, queued.own
                self._first = (queued.listing, queued.prev_watch)
            except NoNode:
                self._uncertain = False
                await self._ensure_parent()
                continue
            except Indeterminate:
                node = await self.recover(prefix)
                if node is None:
                    self._uncertain = False
                    continue  # certainly not created, and never will be: create afresh
            except (ZnodeError, Unavailable):
                self._uncertain = False  # a definite refusal, or never sent
                raise
            self._uncertain = False
            assert node is not None
            self._session = self.client.session_id
            return node

    async def recover(self, prefix: str) -> str | None:
        """Our node of an attempt whose create ended ``Indeterminate``: its path, or None if
        that create did not and never will take effect (see the module docstring)."""
        while True:
            if self.client.session_id is None:
                return None  # no session: no ephemeral of ours can exist
            session = self.client.session_id
            try:
                await self.client.multi([Check(self.path, -1)])
            except Indeterminate:
                continue  # that one too; the next will settle both
            except SessionExpired:
                return None
            except ZnodeError:
                pass  # NoNode or the like: still a write applied after the lost create
            if self.client.session_id != session:
                return None  # the session ended meanwhile, and its ephemerals with it
            try:
                names: list[str] = await self.client.children(self.path)
            except NoNode:
                return None
            mine = [n for n in names if n.startswith(prefix)]
            return child(self.path, mine[0]) if mine else None

    async def _wait_turn(self, deadline: float | None) -> bool:
        loop = asyncio.get_running_loop()
        assert self.node is not None
        name = self.node.rsplit("/", 1)[-1]
        while True:
            first, self._first = self._first, None
            ready: Watch | None = None  # the create's watch on the node before ours
            if first is not None and first[0] is not None:
                entries, ready = entries_from(first[0]), first[1]
            else:
                ready = None if first is None else first[1]
                entries = await self._entries()  # (a queue too long for the create's answer)
            index = next((i for i, e in enumerate(entries) if e.name == name), None)
            target = None if index is None else self.blocker(entries, index)
            if ready is not None and (target is None or ready.path != child(self.path, target)):
                drop(ready)  # not what we wait for (our node went, or another blocks us)
                ready = None
            if index is None or self.lost.is_set():
                drop(ready)
                self._mark_lost()
                raise ContenderLost(f"{self.node} vanished while waiting (session lost?)")
            if target is HOLD:
                self.token = entries[index].czxid
                return True
            if deadline is not None and loop.time() >= deadline:
                drop(ready)
                return False
            # The create's watch covers every change since the create, which is no later than
            # the listing it came with; another target needs its own watch.
            watch = ready if ready is not None else await self._arm(target, entries, index)
            if watch is None:
                continue  # it changed before the watch was set: look again
            try:
                if not await wait_watch(watch, deadline, self.lost):
                    return False
                self.wakeups += 1
            finally:
                drop(watch)

    async def _arm(self, target: str, entries: list[Entry], index: int) -> Watch | None:
        """A watch on ``target`` as the listing saw it, or None if it has changed since (the
        children list: our place in it moved; a node: gone or its version moved)."""
        if target == CHILDREN:
            names, watch = await self.client.children_watch(self.path)
            ordered = order_names(names)
            if entries[index].name in ordered and ordered.index(entries[index].name) == index:
                return watch
        else:
            stat, watch = await self.client.exists_watch(child(self.path, target))
            seen = next(e for e in entries if e.name == target)
            if stat is not None and stat["version"] == seen.version:
                return watch
        drop(watch)
        return None

    async def _abandon(self, prefix: str) -> None:
        """Delete the node of a failed attempt (or find it first, if its create was lost).

        Awaited for up to the client's timeout, shielded from cancellation; after that it goes
        on in the background."""
        node, self.node, self.token = self.node, None, None
        own, self._own = self._own, None
        if self._first is not None:
            drop(self._first[1])
            self._first = None
        untrack(self.client, self)
        if node is None and not self._uncertain:
            drop(own)
            return  # no node was made
        task = spawn(self._cleanup(node, prefix, own))
        await asyncio.wait({task}, timeout=self.client.timeout)

    async def _cleanup(self, node: str | None, prefix: str | None, own: Watch | None) -> None:
        try:
            await self._delete_for_good(node, prefix)
        finally:
            drop(own)  # fired by the delete, if it went through: then no unwatch is sent

    async def _delete_for_good(self, node: str | None, prefix: str | None) -> None:
        session = self.client.session_id
        delay = 0.05
        while session is not None and self.client.session_id == session:
            try:
                if node is None:
                    node = await self.recover(prefix) if prefix else None
                    if node is None:
                        return
                await self.client.delete(node)
                return
            except (NoNode, SessionExpired):
                return
            except (Indeterminate, Unavailable) as exc:
                log.debug("cleanup of %s: %s; retrying", node or prefix, exc)
            except Exception:
                log.exception("cleanup of %s failed", node or prefix)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _delete(self, node: str) -> None:
        """Delete our node for ``release``: retried while its fate is unknown; when the cluster
        is unreachable, handed to the background and ``Unavailable`` raised."""
        if self.client.session_id != self._session:
            return  # its session is over, and the node went with it (a write now would
            # only open a new session for nothing)
        for _ in range(3):
            try:
                await self.client.delete(node)
                return
            except (NoNode, SessionExpired):
                return  # gone already, or with our session
            except Indeterminate:
                continue  # maybe deleted: the next try says NoNode if so
            except Unavailable:
                break
        spawn(self._cleanup(node, None, None))
        raise Unavailable(f"could not delete {node}; still trying in the background")

    async def _watch_own_node(self, node: str) -> None:
        """While we hold: notice our node going (session expiry, or an operator deleting it)
        as soon as the cluster tells us, and set ``lost``. The create's watch on it comes
        first; a new one is set (an exists-watch) only after a watch fired. Cancelled by
        ``release``, which leaves the pending watch to the delete."""
        while self._held and not self._releasing and not self.lost.is_set():
            watch = self._own
            if watch is None:
                try:
                    stat, watch = await self.client.exists_watch(node)
                except ConnectionLost:
                    return  # the client closed: its session (and our node) went with it
                except (Unavailable, ZnodeError) as exc:
                    # No contact: the session keeper decides (LOST sets ``lost``); try again.
                    log.debug("own-node watch of %s: %s", node, exc)
                    await asyncio.sleep(0.5)
                    continue
                if stat is None or stat["ephemeralOwner"] != self.client.session_id:
                    drop(watch)
                    if self._held and not self._releasing:
                        self._mark_lost()
                    return
                self._own = watch
            await wait_watch(watch, None, self.lost)
            if self._own is watch:
                self._own = None  # spent: look again, with a new watch
            drop(watch)
