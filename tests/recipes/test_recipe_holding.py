"""The library's front door to running a command under a lock, used from Python directly:
``Lock.holding(argv)`` and ``Election.leading(argv)`` on a real cluster (what ``paxctl lock``
and ``paxctl elect`` do, without the command line)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from recipe_support import children, clients, fresh, run, until

from paxctl.client import Client
from paxctl.recipes import Election, HoldLost, Lock, TimingError

pytestmark = pytest.mark.integration

#: Short sessions, pinged often: the timing rule needs grace + margin + ping < TTL.
SESSION = {"session_timeout": 3.0, "ping_interval": 0.5}


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_holding_runs_the_command_under_the_lock_and_returns_its_status(cluster):
    path = fresh("hold")

    async def scenario():
        async with clients(cluster.servers, 2, **SESSION) as (mine, other):
            lock = Lock(mine, path, owner="python")
            code = (
                "import os, sys; "
                "assert os.environ['WHO'] == 'me' and 'GONE' not in os.environ; "
                "sys.exit(7)"
            )
            status = await lock.holding(py(code), env={"WHO": "me", "GONE": None}, grace=0.5)
            assert status == 7
            assert not lock.held and await children(other, path) == []  # released after

            # While the command runs, the lock is held: another contender cannot get it.
            runner = Lock(mine, path)
            task = asyncio.ensure_future(
                runner.holding(py("import time; time.sleep(1.0)"), grace=0.5)
            )
            await until(lambda: runner.held, what="the command's lock held")
            assert not await Lock(other, path).acquire(timeout=0)
            assert await task == 0
            assert await children(other, path) == []

    run(scenario)


def test_a_lock_acquired_by_the_caller_stays_held(cluster):
    path = fresh("hold")

    async def scenario():
        async with clients(cluster.servers, 1, **SESSION) as (c,):
            lock = Lock(c, path)
            assert await lock.acquire()
            assert await lock.holding(py("pass"), grace=0.5, forward_signals=False) == 0
            assert lock.held and len(await children(c, path)) == 1
            await lock.release()

    run(scenario)


def test_a_lost_lock_kills_the_command_and_raises_hold_lost(cluster, tmp_path):
    """An operator deletes the holder's node (breaking the lock): the command gets SIGTERM
    at once, and ``HoldLost`` carries why and the command's status."""
    path, started = fresh("hold"), str(tmp_path / "started")

    async def scenario():
        async with clients(cluster.servers, 2, **SESSION) as (mine, other):
            lock = Lock(mine, path)
            task = asyncio.ensure_future(
                lock.holding(py(f"import time; open({started!r}, 'w'); time.sleep(30)"), grace=0.5)
            )
            await until(lambda: os.path.exists(started), what="the command started")
            assert lock.node is not None
            await other.delete(lock.node)
            with pytest.raises(HoldLost) as caught:
                await task
            assert caught.value.status == 128 + signal.SIGTERM
            assert "node was deleted" in caught.value.reason

    run(scenario)


def test_timing_that_cannot_work_is_refused_before_anything_is_taken(cluster):
    path = fresh("hold")

    async def scenario():
        async with clients(cluster.servers, 1, **SESSION) as (c,):
            with pytest.raises(TimingError) as caught:
                await Lock(c, path).holding(py("pass"), grace=5.0)
            assert caught.value.ttl == 3.0 and caught.value.total >= 3.0
            assert await children(c, path) == []

    run(scenario)


def test_not_acquired_in_time_is_a_timeout_and_leaves_nothing_behind(cluster):
    path = fresh("hold")

    async def scenario():
        async with clients(cluster.servers, 2, **SESSION) as (mine, other):
            blocker = Lock(other, path)
            assert await blocker.acquire()
            with pytest.raises(TimeoutError):
                await Lock(mine, path).holding(py("raise SystemExit(1)"), grace=0.5, timeout=0.2)
            assert len(await children(other, path)) == 1  # only the blocker's node
            await blocker.release()

    run(scenario)


def test_leading_runs_the_command_while_leader_then_resigns(cluster):
    path = fresh("elect")

    async def scenario():
        async with clients(cluster.servers, 2, **SESSION) as (mine, other):
            election = Election(mine, path, b"me")
            code = "import sys; sys.exit(3)"
            assert await election.leading(py(code), grace=0.5) == 3
            assert not election.is_leader
            assert await Election(other, path).leader() is None

    run(scenario)


def test_the_client_need_not_be_started_first(cluster):
    async def scenario():
        c = Client(cluster.servers, **SESSION)
        try:
            assert await Lock(c, fresh("hold")).holding(py("pass"), grace=0.5) == 0
        finally:
            await c.close()

    run(scenario)
