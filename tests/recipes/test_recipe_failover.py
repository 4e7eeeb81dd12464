"""Locks across a failover: the cluster's leader is killed while clients contend for a lock,
and the lock still admits one holder at a time and loses no update."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from recipe_support import children, clients, fresh, run

from paxctl.client import Client
from paxctl.recipes import Lock

pytestmark = pytest.mark.integration


def test_mutual_exclusion_while_the_leader_is_killed(cluster):
    path, counter = fresh("lock"), fresh("count")
    leader = int(cluster.leader()["id"])

    async def scenario():
        async with clients(cluster.servers, 6) as cs:
            await cs[0].create(counter, b"0")
            intervals = []
            halfway = asyncio.Event()

            async def worker(c: Client):
                lock = Lock(c, path)
                for _ in range(4):
                    assert await lock.acquire(timeout=40)
                    start = time.monotonic()
                    data, _ = await c.get(counter)
                    await asyncio.sleep(0)
                    await c.set(counter, str(int(data) + 1).encode())
                    intervals.append((start, time.monotonic(), lock.token))
                    if len(intervals) == 8:
                        halfway.set()
                    await lock.release()

            async def kill_leader():
                await halfway.wait()
                await asyncio.to_thread(cluster.kill, leader)

            await asyncio.gather(kill_leader(), *(worker(c) for c in cs))
            assert (await cs[0].get(counter))[0] == b"24"
            intervals.sort()
            for (_, end, token), (start, _, next_token) in itertools.pairwise(intervals):
                assert start >= end and next_token > token
            assert await children(cs[0], path) == []

    try:
        run(scenario)
    finally:
        cluster.start(leader)
