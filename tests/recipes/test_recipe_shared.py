"""Read/write locks and semaphores on a real cluster: readers share and never overtake a queued
writer, a plain Lock counts as a writer, a semaphore admits exactly ``limit`` holders however
they leave, and parties that disagree on the limit get a clear error."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from recipe_support import armed_watches, children, clients, fresh, run, until

from paxctl.recipes import LimitMismatch, Lock, ReadWriteLock, RecipeError, Semaphore

pytestmark = pytest.mark.integration


def test_readers_share_writers_exclude_fifo(cluster):
    path = fresh("rw")

    async def scenario():
        async with clients(cluster.servers, 4) as (a, b, c, d):
            r1, r2 = ReadWriteLock(a, path).read, ReadWriteLock(b, path).read
            assert await r1.acquire(timeout=0)
            assert await r2.acquire(timeout=0)  # readers share
            assert r1.held and r2.held and r1.token < r2.token
            assert r1.fence is None  # readers share: nothing to fence

            w = ReadWriteLock(c, path).write
            assert not await w.acquire(timeout=0)  # a writer waits for the readers
            assert not await Lock(c, path).acquire(timeout=0)  # so does a plain lock
            writer = asyncio.create_task(w.acquire())
            await until(lambda: armed_watches(c) == 2, what="the writer to queue")

            r3 = ReadWriteLock(d, path).read
            assert not await r3.acquire(timeout=0)  # no overtaking the queued writer
            reader = asyncio.create_task(r3.acquire())
            await until(lambda: armed_watches(d) == 2, what="the late reader to queue")
            kinds = [q.kind for q in await r1.contenders()]
            assert kinds == ["read", "read", "write", "read"]

            reader_token = r2.token
            await r2.release()  # the writer watched r2, the node just before it
            assert await r1.is_held()
            assert not writer.done()
            await r1.release()
            assert await writer
            assert w.token > reader_token
            assert not reader.done() and r3.wakeups == 0
            await w.release()
            assert await reader
            assert r3.wakeups == 1
            await r3.release()
            assert await children(a, path) == []

    run(scenario)


def test_writers_and_locks_interleave_with_readers_safely(cluster):
    """Random readers and writers: a writer never overlaps anyone, readers do overlap."""
    path = fresh("rw")

    async def scenario():
        async with clients(cluster.servers, 6) as cs:
            active = {"read": 0, "write": 0}
            most_readers = 0
            violations = []

            async def worker(i: int):
                nonlocal most_readers
                rng = random.Random(i)
                for _ in range(4):
                    rw = ReadWriteLock(cs[i], path, owner=f"w{i}")
                    side = "write" if rng.random() < 0.3 else "read"
                    lock = rw.write if side == "write" else rw.read
                    assert await lock.acquire(timeout=30)
                    active[side] += 1
                    if active["write"] > 1 or (active["write"] and active["read"]):
                        violations.append(dict(active))
                    most_readers = max(most_readers, active["read"])
                    await asyncio.sleep(rng.random() * 0.02)
                    active[side] -= 1
                    await lock.release()

            await asyncio.gather(*(worker(i) for i in range(6)))
            assert not violations
            assert most_readers >= 2

    run(scenario)


def test_semaphore_admits_exactly_limit(cluster):
    """9 parties, limit 3, holders leaving in random order: never more than 3 at once, and
    3 at once is reached; the queue is empty at the end."""
    path = fresh("sem")

    async def scenario():
        async with clients(cluster.servers, 9) as cs:
            active, most, order = 0, 0, []

            async def worker(i: int):
                nonlocal active, most
                rng = random.Random(i)
                sem = Semaphore(cs[i], path, 3, owner=f"p{i}")
                for _ in range(2):
                    assert await sem.acquire(timeout=30)
                    active += 1
                    most = max(most, active)
                    assert active <= 3
                    order.append(sem.token)
                    await asyncio.sleep(0.01 + rng.random() * 0.03)
                    active -= 1
                    await sem.release()

            await asyncio.gather(*(worker(i) for i in range(9)))
            assert most == 3 and len(order) == 18 and len(set(order)) == 18
            assert await children(cs[0], path) == []

    run(scenario)


def test_semaphore_wakes_the_first_waiter_when_any_holder_leaves(cluster):
    """Holders A, B (limit 2), waiters C, D: B (not the first) leaving admits C; C's promotion
    makes D the first waiter, and A leaving then admits D."""
    path = fresh("sem")

    async def scenario():
        async with clients(cluster.servers, 4) as cs:
            sems = [Semaphore(c, path, 2, owner=n) for c, n in zip(cs, "ABCD", strict=True)]
            assert await sems[0].acquire(timeout=0)
            assert await sems[1].acquire(timeout=0)
            waiting = []
            for i in (2, 3):
                waiting.append(asyncio.create_task(sems[i].acquire()))
                await until(lambda i=i: armed_watches(cs[i]) == 2, what="a waiter to queue")
            assert await sems[0].stored_limit() == 2
            await sems[1].release()
            assert await waiting[0]
            data, _ = await cs[0].get(sems[2].node)
            assert "acquired" in json.loads(data)  # the touch that wakes its successor
            assert not waiting[1].done()
            await sems[0].release()
            assert await waiting[1]
            for s in sems[2:]:
                await s.release()

    run(scenario)


def test_semaphore_limit_mismatch(cluster):
    path = fresh("sem")

    async def scenario():
        async with clients(cluster.servers, 2) as (a, b):
            first = Semaphore(a, path, 3)
            assert await first.acquire(timeout=0)
            with pytest.raises(LimitMismatch) as info:
                await Semaphore(b, path, 2).acquire(timeout=0)
            assert isinstance(info.value, RecipeError)
            assert (info.value.expected, info.value.actual) == (2, 3)
            assert "limit 3" in str(info.value) and path in str(info.value)
            assert await children(a, path) == [first.node.rsplit("/", 1)[1]]
            assert json.loads((await a.get(path))[0]) == {"limit": 3}
            with pytest.raises(ValueError):
                Semaphore(a, path, 0)
            await first.release()

            plain = fresh("notsem")
            await a.create(plain, b"hello")
            with pytest.raises(RecipeError, match="not a semaphore"):
                await Semaphore(b, plain, 2).acquire(timeout=0)
            assert await children(a, plain) == []

    run(scenario)
