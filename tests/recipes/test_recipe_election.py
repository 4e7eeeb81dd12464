"""Leader election on a real cluster: leader(), campaign and resign, tokens across leaders,
proclaim, observe() seeing every change, and a leader whose session expires."""

from __future__ import annotations

import asyncio
import time

import pytest
from recipe_support import armed_watches, children, clients, fresh, run, until

from paxctl.recipes import ContenderLost, Election, Leader

pytestmark = pytest.mark.integration


def test_campaign_resign_leader_and_observe(cluster):
    path = fresh("elect")

    async def scenario():
        async with clients(cluster.servers, 3) as (a, b, watcher):
            seen: asyncio.Queue[Leader | None] = asyncio.Queue()
            observer = Election(watcher, path)
            assert await observer.leader() is None

            async def observe():
                async for leader in observer.observe():
                    await seen.put(leader)

            task = asyncio.create_task(observe())
            assert await asyncio.wait_for(seen.get(), 10) is None

            one, two = Election(a, path, b"one"), Election(b, path, b"two")
            assert await one.campaign(timeout=0)
            assert one.is_leader and await one.still_leader()
            first = await asyncio.wait_for(seen.get(), 10)
            assert first == Leader(b"one", one.token, one.node)
            assert await two.leader() == first

            assert not await two.campaign(timeout=0)
            assert await children(a, path) == [one.node.rsplit("/", 1)[1]]
            campaign = asyncio.create_task(two.campaign())
            await until(lambda: armed_watches(b) == 2, what="the second candidate to queue")
            assert seen.empty()  # a candidate queueing behind the leader changes nothing

            await one.proclaim(b"uno")
            assert await asyncio.wait_for(seen.get(), 10) == Leader(b"uno", one.token, one.node)

            await one.resign()
            assert one.token is None and one.node is None
            assert await campaign
            change = await asyncio.wait_for(seen.get(), 10)
            assert change == Leader(b"two", two.token, two.node)
            assert change.token > first.token
            assert not one.is_leader
            with pytest.raises(ContenderLost):
                await one.proclaim(b"not mine")

            await two.resign()
            assert await asyncio.wait_for(seen.get(), 10) is None
            assert await observer.leader() is None
            task.cancel()

    run(scenario)


def test_context_manager_and_failover_on_session_expiry(cluster):
    path = fresh("elect")

    async def scenario():
        async with (
            clients(cluster.servers, 1, session_timeout=1.0) as (a,),
            clients(cluster.servers, 1) as (b,),
        ):
            old = Election(a, path, b"old")
            assert await old.campaign()
            new = Election(b, path, b"new")
            task = asyncio.create_task(new.campaign(timeout=20))
            await until(lambda: armed_watches(b) == 2, what="the candidate to queue")
            a._freeze()  # the leader goes silent
            t0 = time.monotonic()
            assert await task
            assert time.monotonic() - t0 < 10
            assert new.token > old.token
            assert await new.leader() == Leader(b"new", new.token, new.node)
            a._thaw()
            await asyncio.wait_for(old.lost.wait(), 10)
            assert not old.is_leader
            await new.resign()

            async with Election(b, path, b"ctx") as ctx:
                assert (await ctx.leader()).value == b"ctx"
            assert await ctx.leader() is None

    run(scenario)
