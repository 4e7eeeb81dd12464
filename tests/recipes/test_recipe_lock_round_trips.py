"""How many requests a lock costs, counted at the client session (never by timing), and FIFO
fairness under 16 contending clients: holders follow the order of their creates exactly.

Uncontended, an acquire is one request (a create that answers with the queue and sets the
watches) and a release one (the delete, which fires the holder's own watch: no unwatch). A
waiter costs one listing more, after the one wake-up its predecessor's release causes."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from recipe_support import clients, fresh, run, until

from paxctl.client import Client
from paxctl.client.session_types import Send
from paxctl.protocol.messages import Hello, Ping, ReadRequest, WriteRequest
from paxctl.recipes import Lock
from paxctl.statemachine.ops import Create

pytestmark = pytest.mark.integration


class Requests:
    """Every request the client's session sends, but hellos and pings (connection upkeep)."""

    def __init__(self, client: Client) -> None:
        self.sent: list[object] = []
        session = client._session
        take = session.take

        def counting_take():  # type: ignore[no-untyped-def]
            outs = take()
            self.sent += [
                o.request
                for o in outs
                if isinstance(o, Send) and not isinstance(o.request, Hello | Ping)
            ]
            return outs

        session.take = counting_take  # type: ignore[method-assign]

    def kinds(self) -> Counter[str]:
        return Counter(kind(r) for r in self.sent)


def kind(req: object) -> str:
    if isinstance(req, WriteRequest):
        op = req.op
        if isinstance(op, Create) and req.queue is not None:
            return "create+queue"
        return type(op).__name__.lower()
    if isinstance(req, ReadRequest):
        return f"read {req.kind}" + (" +watch" if req.watch is not None else "")
    return type(req).__name__


def test_an_uncontended_acquire_and_release_are_two_requests(cluster):
    path = fresh("lock")

    async def scenario():
        async with clients(cluster.servers, 1) as (c,):
            await c.create(path)  # the lock's node exists (else the first acquire makes it)
            lock = Lock(c, path)
            assert await lock.acquire(timeout=10)  # warm: the session is open after this
            await lock.release()
            counted = Requests(c)
            for _ in range(5):
                assert await lock.acquire(timeout=0)
                assert lock.held and lock.token is not None and lock.fence == (path, lock.token)
                await lock.release()
            await c.exists(path)  # anything spawned by the releases is sent before this
            sent = counted.sent[:-1]
            assert [kind(r) for r in sent] == ["create+queue", "delete"] * 5, counted.kinds()
            assert not [w for w in c._watches.values() if not w.done], "a watch was left"

    run(scenario)


def test_sixteen_clients_acquire_in_the_order_of_their_creates(cluster):
    """16 clients x 3 rounds, all contending at once: every acquisition is of the lowest node
    queued, so holders' sequence numbers (the order the cluster applied the creates) only
    grow; each waiter is woken once and lists once; nobody unwatches or re-arms."""
    path = fresh("lock")
    rounds = 3

    async def scenario():
        async with clients(cluster.servers, 16) as cs:
            await cs[0].create(path)
            locks = [Lock(c, path, owner=f"c{i}") for i, c in enumerate(cs)]
            for lock in locks:  # open every session first: only the locking is counted
                assert await lock.acquire(timeout=30)
                await lock.release()
            counted = [Requests(c) for c in cs]
            wakeups = sum(lock.wakeups for lock in locks)
            held: list[str] = []

            async def worker(lock: Lock) -> None:
                for _ in range(rounds):
                    assert await lock.acquire(timeout=45)
                    held.append(lock.node or "")
                    await asyncio.sleep(0)  # let the others queue behind us
                    await lock.release()

            await asyncio.gather(*(worker(lock) for lock in locks))
            seqs = [int(node[-10:]) for node in held]
            assert len(held) == 16 * rounds and len(set(seqs)) == len(seqs)
            assert seqs == sorted(seqs), "a lock was acquired out of the order of the creates"
            total = Counter[str]()
            for c in counted:
                total += c.kinds()
            woken = sum(lock.wakeups for lock in locks) - wakeups
            assert woken <= 16 * rounds, "a release woke more than one waiter"
            assert total["create+queue"] == total["delete"] == 16 * rounds, total
            assert total["read children"] == woken, total  # one listing per wake-up
            assert set(total) <= {"create+queue", "delete", "read children"}, total

    run(scenario)


def test_a_create_answered_without_its_listing_lists_and_still_waits_on_its_predecessor(cluster):
    """A queue too long for the create's answer (server/queued.py: MAX_QUEUE_LISTING) comes
    without its listing: the contender lists it itself and keeps the create's watch."""
    path = fresh("lock")

    async def scenario():
        async with clients(cluster.servers, 2) as (a, b):
            await a.create(path)
            holder, waiter = Lock(a, path), Lock(b, path)
            assert await holder.acquire(timeout=10)
            real = b.enqueue

            async def unlisted(*args, **kwargs):  # type: ignore[no-untyped-def]
                return (await real(*args, **kwargs))._replace(listing=None)

            b.enqueue = unlisted  # type: ignore[method-assign]
            await b.create(f"{path}-other")  # b's session is open: only the lock is counted
            counted = Requests(b)
            task = asyncio.create_task(waiter.acquire(timeout=30))
            await until(lambda: "read children" in counted.kinds(), what="the waiter to list")
            await holder.release()
            assert await task
            await waiter.release()
            kinds = counted.kinds()
            # The listing may come before or after the release: either way the create's
            # watch is what it waits on (no exists, no unwatch), and it lists once per look.
            assert set(kinds) == {"create+queue", "read children", "delete"}, kinds
            assert kinds["read children"] == 1 + waiter.wakeups, kinds

    run(scenario)
