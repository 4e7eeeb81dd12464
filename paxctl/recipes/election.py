"""Leader election: the lock recipe, with each candidate's proclaimed value in its node.

A candidate's node is an ephemeral-sequential child of the election's path whose data is the
candidate's value (raw bytes, as given: ``paxctl get`` on the leader's node shows it). The
leader is the candidate with the lowest sequence number, so candidates are served in order and
each watches only the one before it; its ``token`` (the node's czxid) strictly increases from one
leader to the next, and the cluster's fence check accepts it for the current leader only.

``observe`` watches only the current leader's node (its data for ``proclaim``, its deletion
for a change of leader) and the children list only while there is no leader, so observers are
not woken by candidates joining or leaving the queue behind the leader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import NamedTuple, Self

from paxctl.client import Client, Watch
from paxctl.recipes._common import check_path, child, drop, entries_from, order_names
from paxctl.recipes.errors import ContenderLost
from paxctl.recipes.held import DEFAULT_KILL_GRACE, holding
from paxctl.recipes.lock import Lock
from paxctl.statemachine.errors import NoNode


class Leader(NamedTuple):
    """The current leader: its proclaimed value, fencing token and node."""

    value: bytes
    token: int
    node: str


class _Candidate(Lock):
    kind = "elect"


class Election:
    """Campaign for, hold and resign the leadership of ``path``, proclaiming ``value``.

    ``campaign(timeout)`` -> bool (None: wait for ever, 0: try once), ``resign()``, ``async
    with`` (campaign for ever, then resign), ``proclaim(value)`` while leader. ``leader()``
    and ``observe()`` need no candidacy: any client may ask. ``lost`` is set when the session
    is lost while campaigning or leading (SUSPENDED: we may still lead, and cannot know).
    """

    def __init__(self, client: Client, path: str, value: bytes = b"") -> None:
        self.client = client
        self.path = check_path(path)
        self.value = value
        self._candidate = _Candidate(client, path, data=value)

    @property
    def lost(self) -> asyncio.Event:
        """Set when the session is lost while campaigning or leading (see the class)."""
        return self._candidate.lost

    @property
    def token(self) -> int | None:
        """Our fencing token while we lead."""
        return self._candidate.token

    @property
    def node(self) -> str | None:
        return self._candidate.node

    @property
    def fence(self) -> tuple[str, int] | None:
        return self._candidate.fence

    @property
    def is_leader(self) -> bool:
        """Our belief (see ``Lock.held``); ``await still_leader()`` asks the cluster."""
        return self._candidate.held

    @property
    def wakeups(self) -> int:
        return self._candidate.wakeups

    async def campaign(self, timeout: float | None = None) -> bool:
        """Stand as a candidate and wait to lead: True once leader, False on timeout (and our
        candidacy withdrawn); ``ContenderLost`` if the session expired meanwhile."""
        self._candidate._data = self.value
        return await self._candidate.acquire(timeout)

    async def resign(self) -> None:
        """Step down (or withdraw a candidacy); the next candidate, if any, leads."""
        await self._candidate.release()

    async def still_leader(self) -> bool:
        return await self._candidate.is_held()

    async def proclaim(self, value: bytes) -> None:
        """Change the value we proclaim while leading (observers see it)."""
        node = self._candidate.node
        if not self.is_leader or node is None:
            raise ContenderLost(f"{self.path}: not the leader")
        try:
            await self.client.set(node, value)
        except NoNode as exc:
            self._candidate.lost.set()
            raise ContenderLost(f"{node} vanished: no longer the leader") from exc
        self.value = value

    async def __aenter__(self) -> Self:
        await self.campaign()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.resign()

    async def leading(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        grace: float = DEFAULT_KILL_GRACE,
        timeout: float | None = None,
        forward_signals: bool = True,
    ) -> int:
        """Run the command ``argv`` only while we certainly lead; its exit status. Campaigns
        first unless leading already, and resigns afterwards if it campaigned: the rules of
        ``Lock.holding`` (``HoldLost``, ``TimeoutError``, ``TimingError``, ``OSError``)."""
        take = None if self.is_leader else self.campaign
        return await holding(
            self.client, self.lost, take, self.resign, argv, env=env, grace=grace,
            timeout=timeout, forward_signals=forward_signals,
        )  # fmt: skip

    async def leader(self) -> Leader | None:
        """The current leader, or None if there are no candidates."""
        current, _watch = await self._current(with_watch=False)
        return current

    async def observe(self) -> AsyncIterator[Leader | None]:
        """The leader now, then again every time it changes (another leader, a new value, or
        None when there is none). Consecutive equal values are not repeated. Ends if the
        client is closed."""
        last: object = object()
        while True:
            current, watch = await self._current(with_watch=True)
            assert watch is not None
            try:
                if current != last:
                    last = current
                    yield current
                try:
                    await watch.get()
                except StopAsyncIteration:
                    return
            finally:
                drop(watch)

    async def _current(self, *, with_watch: bool) -> tuple[Leader | None, Watch | None]:
        """The leader and, if asked, a one-shot watch that fires when it may have changed."""
        client = self.client
        while True:
            try:
                listing = await client.children(self.path, stats=True)
            except NoNode:
                if not with_watch:
                    return None, None
                stat, watch = await client.exists_watch(self.path)
                if stat is None:
                    return None, watch
                drop(watch)
                continue
            entries = entries_from(listing)
            if not entries:
                if not with_watch:
                    return None, None
                try:
                    names, watch = await client.children_watch(self.path)
                except NoNode:
                    continue
                if order_names(names):
                    drop(watch)
                    continue
                return None, watch
            node = child(self.path, entries[0].name)
            try:
                if with_watch:
                    data, stat, watch = await client.get_watch(node)
                    return Leader(data, stat["czxid"], node), watch
                data, stat = await client.get(node)
                return Leader(data, stat["czxid"], node), None
            except NoNode:
                continue
