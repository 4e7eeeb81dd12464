"""Barriers, double barriers and counters on a real cluster."""

from __future__ import annotations

import asyncio

import pytest
from recipe_support import children, clients, fresh, run, until

from paxctl.recipes import Barrier, Counter, DoubleBarrier, RecipeError

pytestmark = pytest.mark.integration


def test_barrier(cluster):
    path = fresh("barrier") + "/deep"

    async def scenario():
        async with clients(cluster.servers, 3) as (a, b, c):
            assert await Barrier(a, path).wait(timeout=0)  # no barrier: nothing to wait for
            assert await Barrier(a, path).create()
            assert not await Barrier(a, path).create()
            assert not await Barrier(b, path).wait(timeout=0.2)
            waiters = [asyncio.create_task(Barrier(x, path).wait()) for x in (b, c)]
            await a.set(path, b"still up")  # a change is not the end of the barrier
            await asyncio.sleep(0)
            assert not any(w.done() for w in waiters)
            assert await Barrier(a, path).remove()
            assert await asyncio.wait_for(asyncio.gather(*waiters), 10) == [True, True]
            assert not await Barrier(a, path).remove()

    run(scenario)


def test_double_barrier(cluster):
    path = fresh("double")

    async def scenario():
        async with clients(cluster.servers, 3) as cs:
            parts = [DoubleBarrier(c, path, 3, owner=f"p{i}") for i, c in enumerate(cs)]
            entering = [asyncio.create_task(p.enter(timeout=20)) for p in parts[:2]]
            await until(lambda: all(p.node for p in parts[:2]), what="two to join")
            assert not any(t.done() for t in entering)
            assert await parts[2].enter(timeout=20)
            assert await asyncio.gather(*entering) == [True, True]
            assert "ready" in await children(cs[0], path)

            leaving = [asyncio.create_task(p.leave(timeout=20)) for p in parts[:2]]
            await until(lambda: sum(p.node is None for p in parts) >= 1, what="one to leave")
            assert not any(t.done() for t in leaving)  # the third is still inside
            assert await parts[2].leave(timeout=20)
            assert await asyncio.gather(*leaving) == [True, True]
            assert await children(cs[0], path) == []

            alone = DoubleBarrier(cs[0], path, 2)
            assert not await alone.enter(timeout=0.2)
            assert alone.node is None and await children(cs[0], path) == []
            with pytest.raises(ValueError):
                DoubleBarrier(cs[0], path, 0)

    run(scenario)


def test_counter_under_concurrency(cluster):
    path = fresh("counter")

    async def scenario():
        async with clients(cluster.servers, 8) as cs:
            assert await Counter(cs[0], path, default=5).value() == 5
            results = await asyncio.gather(
                *(Counter(c, path, default=5).add() for c in cs for _ in range(6))
            )
            assert sorted(results) == list(range(6, 54))  # every add saw a distinct value
            assert await Counter(cs[1], path).value() == 53
            assert await Counter(cs[1], path).add(-3) == 50
            await cs[0].set(path, b"forty")
            with pytest.raises(RecipeError):
                await Counter(cs[0], path).value()

    run(scenario)
