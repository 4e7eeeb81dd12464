"""The exclusive lock on a real cluster: mutual exclusion, FIFO order, fencing tokens, no herd,
non-blocking and timed acquires that leave nothing behind, a lost create reply recognised, and
a holder whose session expires (in process, and a real process frozen with SIGSTOP)."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from recipe_support import armed_watches, children, clients, fresh, run, until

from paxctl.client import Client, Indeterminate
from paxctl.recipes import ContenderLost, Lock, RecipeError

pytestmark = pytest.mark.integration


def test_mutual_exclusion_under_contention(cluster):
    """8 clients x 3 rounds of read-increment-write under the lock: no lost update, no two
    holders at once, and every holder's token larger than the one before."""
    path, counter = fresh("lock"), fresh("count")

    async def scenario():
        async with clients(cluster.servers, 8) as cs:
            await cs[0].create(counter, b"0")
            intervals = []

            async def worker(c: Client, i: int):
                lock = Lock(c, path, owner=f"worker {i}")
                for _ in range(3):
                    assert await lock.acquire(timeout=30)
                    start = time.monotonic()
                    data, _ = await c.get(counter)
                    await asyncio.sleep(0)  # let the others run: they must still wait
                    await c.set(counter, str(int(data) + 1).encode())
                    intervals.append((start, time.monotonic(), lock.token))
                    await lock.release()

            await asyncio.gather(*(worker(c, i) for i, c in enumerate(cs)))
            assert (await cs[0].get(counter))[0] == b"24"
            intervals.sort()
            for (_, end, token), (start, _, next_token) in itertools.pairwise(intervals):
                assert start >= end, "two holders at once"
                assert next_token > token, "fencing tokens must increase across holders"
            assert await children(cs[0], path) == []

    run(scenario)


def test_fifo_order_no_herd_and_contenders(cluster):
    """10 waiters queued one after another acquire in that order; each is woken exactly once
    (by its predecessor's release), never by a release further ahead."""
    path = fresh("lock")

    async def scenario():
        async with clients(cluster.servers, 11) as cs:
            holder = Lock(cs[0], path, owner="holder")
            assert await holder.acquire(timeout=0)
            waiters = [Lock(c, path, owner=f"w{i}") for i, c in enumerate(cs[1:])]
            order = []

            async def wait_then_release(lock: Lock):
                assert await lock.acquire()
                order.append((lock.owner, lock.token))
                await lock.release()

            tasks = []
            for w, c in zip(waiters, cs[1:], strict=True):
                tasks.append(asyncio.create_task(wait_then_release(w)))
                await until(lambda c=c: armed_watches(c) == 2, what="waiter armed")

            queue = await holder.contenders()
            assert [q.owner["owner"] for q in queue] == ["holder"] + [w.owner for w in waiters]
            assert queue[0].node == holder.node and queue[0].token == holder.token
            assert {q.kind for q in queue} == {"lock"}
            assert queue[0].owner["pid"] == os.getpid() and "host" in queue[0].owner
            assert all(w.wakeups == 0 for w in waiters)

            await holder.release()
            await asyncio.gather(*tasks)
            assert [o for o, _ in order] == [w.owner for w in waiters]
            tokens = [holder.token or 0] + [t for _, t in order]
            assert tokens == sorted(set(tokens))
            assert [w.wakeups for w in waiters] == [1] * 10, "a release woke more than one"

    run(scenario)


def test_try_once_and_timeout_leave_no_node(cluster):
    path = fresh("lock")

    async def scenario():
        async with clients(cluster.servers, 2) as (a, b):
            holder = Lock(a, path)
            async with holder:
                assert holder.held and await holder.is_held()
                assert holder.fence == (path, holder.token)
                other = Lock(b, path)
                t0 = time.monotonic()
                assert not await other.acquire(timeout=0)
                assert time.monotonic() - t0 < 2
                assert other.node is None and other.token is None and not other.held
                assert await children(a, path) == [holder.node.rsplit("/", 1)[1]]

                t0 = time.monotonic()
                assert not await other.acquire(timeout=0.3)
                assert 0.29 <= time.monotonic() - t0 < 5
                assert await children(a, path) == [holder.node.rsplit("/", 1)[1]]

                with pytest.raises(RecipeError):
                    await holder.acquire()  # not re-entrant
            assert not holder.held and holder.node is None
            await holder.release()  # a second release is harmless
            assert await other.acquire(timeout=0)
            await other.release()

    run(scenario)


def test_cancelled_acquire_deletes_its_node(cluster):
    path = fresh("lock")

    async def scenario():
        async with clients(cluster.servers, 2) as (a, b):
            holder = Lock(a, path)
            assert await holder.acquire()
            waiter = Lock(b, path)
            task = asyncio.create_task(waiter.acquire())
            await until(lambda: armed_watches(b) == 2, what="the waiter to queue")
            assert len(await children(a, path)) == 2
            with pytest.raises(RecipeError):
                await waiter.release()  # a pending acquire is withdrawn by cancelling it
            assert waiter.valid_until() is None and holder.valid_until() <= latest_valid_until(a)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await children(a, path) == [holder.node.rsplit("/", 1)[1]]
            await holder.release()

    run(scenario)


def latest_valid_until(client):
    """The latest a session can be certainly alive: now plus its granted timeout."""
    return asyncio.get_running_loop().time() + client.granted_timeout


def test_a_lost_create_reply_is_recognised(cluster):
    """The create took effect but its reply was lost (Indeterminate): the contender finds its
    own node by the uid in its name instead of queueing a second one."""
    path = fresh("lock")

    async def scenario():
        async with clients(cluster.servers, 1) as (c,):
            lock = Lock(c, path)
            prefix = f"{uuid.uuid4().hex}-lock-"
            made = await c.create(
                f"{path}/{prefix}", b"", sequential=True, ephemeral=True, parents=True
            )
            assert await lock.recover(prefix) == made
            assert await lock.recover(f"{uuid.uuid4().hex}-lock-") is None
            await c.delete(made)

            # The recipe creates with ``enqueue`` (a create that answers with the queue).
            real_enqueue, lost = c.enqueue, []

            async def enqueue_losing_the_reply(*args, **kwargs):
                queued = await real_enqueue(*args, **kwargs)
                if not lost:
                    lost.append(queued.path)
                    raise Indeterminate("reply lost (simulated)")
                return queued

            c.enqueue = enqueue_losing_the_reply
            assert await lock.acquire(timeout=5)
            assert lock.node == lost[0]
            assert await children(c, path) == [lost[0].rsplit("/", 1)[1]]
            await lock.release()
            assert await children(c, path) == []

            # Cancelled while the create's reply is outstanding (it did take effect): the
            # withdrawal finds the node by its uid and deletes it.
            applied, never = asyncio.Event(), asyncio.Event()

            async def enqueue_never_answering(*args, **kwargs):
                await real_enqueue(*args, **kwargs)
                applied.set()
                await never.wait()

            c.enqueue = enqueue_never_answering
            task = asyncio.create_task(Lock(c, path).acquire())
            await applied.wait()
            assert len(await children(c, path)) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await children(c, path) == []

    run(scenario)


def test_fenced_write(cluster):
    if "fence" not in inspect.signature(Client.set).parameters:
        pytest.skip("the client has no fenced writes yet")
    from paxctl.statemachine.errors import FenceRejected

    path, data = fresh("lock"), fresh("data")

    async def scenario():
        async with clients(cluster.servers, 2) as (a, b):
            await a.create(data, b"0")
            first, second = Lock(a, path), Lock(b, path)
            assert await first.acquire()
            fence = first.fence
            await a.set(data, b"1", fence=fence)
            await first.release()
            assert await second.acquire()
            with pytest.raises(FenceRejected):
                await a.set(data, b"stale", fence=fence)
            await b.set(data, b"2", fence=second.fence)
            await second.release()

    run(scenario)


def test_holder_session_expiry_passes_the_lock_on(cluster):
    """A holder that stops pinging (as if frozen) loses its session: the waiter gets the lock
    with a larger token, and the old holder's ``lost`` is set once it hears of the expiry."""
    path = fresh("lock")

    async def scenario():
        async with (
            clients(cluster.servers, 1, session_timeout=1.0) as (a,),
            clients(cluster.servers, 1) as (b,),
        ):
            holder = Lock(a, path)
            assert await holder.acquire()
            old_token = holder.token
            waiter = Lock(b, path)
            task = asyncio.create_task(waiter.acquire(timeout=20))
            await until(lambda: armed_watches(b) == 2, what="the waiter to queue")

            a._freeze()  # cut the holder off: no pings, no connection
            t0 = time.monotonic()
            assert await task
            assert time.monotonic() - t0 >= 0.5
            assert waiter.token > old_token
            assert not holder.lost.is_set()  # not told yet: for all it knows, it still holds

            a._thaw()  # contact again: told the session expired
            await asyncio.wait_for(holder.lost.wait(), 10)
            assert not holder.held and not await holder.is_held()
            await holder.release()  # harmless: the node is gone already
            assert await children(b, path) == [waiter.node.rsplit("/", 1)[1]]
            await waiter.release()

    run(scenario)


HOLDER = """
import asyncio, sys
from paxctl.client import Client
from paxctl.recipes import Lock

async def main():
    client = Client(sys.argv[1], session_timeout=1.0)
    lock = Lock(client, sys.argv[2], owner="frozen")
    assert await lock.acquire()
    print(lock.token, flush=True)
    await lock.lost.wait()
    print("lost", flush=True)

asyncio.run(main())
"""


def test_frozen_holder_process_loses_the_lock(cluster):
    """A real holder process SIGSTOPped past its session timeout: another client acquires with
    a larger token; thawed, the old holder learns it lost the lock."""
    path = fresh("lock")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, cluster.servers, path],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:

        async def scenario():
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
            old_token = int(line)
            async with clients(cluster.servers, 1) as (c,):
                queue = await Lock(c, path).contenders()
                assert queue[0].owner["owner"] == "frozen" and queue[0].token == old_token
                os.kill(proc.pid, signal.SIGSTOP)
                lock = Lock(c, path)
                assert await lock.acquire(timeout=20)
                assert lock.token > old_token
                os.kill(proc.pid, signal.SIGCONT)
                line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
                assert line.strip() == "lost"
                assert await lock.is_held()
                await lock.release()

        run(scenario)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_waiter_session_expiry_raises_contender_lost(cluster):
    path = fresh("lock")

    async def scenario():
        async with (
            clients(cluster.servers, 1) as (a,),
            clients(cluster.servers, 1, session_timeout=1.0) as (b,),
        ):
            holder = Lock(a, path)
            assert await holder.acquire()
            waiter = Lock(b, path)
            task = asyncio.create_task(waiter.acquire())
            await until(lambda: armed_watches(b) == 2, what="the waiter to queue")
            stat, gone = await a.exists_watch(waiter.node)
            assert stat is not None
            b._freeze()  # cut the waiter off until its session expires
            assert (await gone.get(10)).type == "deleted"
            assert await children(a, path) == [holder.node.rsplit("/", 1)[1]]
            b._thaw()
            with pytest.raises(ContenderLost):
                await task
            assert waiter.lost.is_set() and waiter.node is None
            await holder.release()

    run(scenario)


def test_node_data_is_owner_json(cluster):
    path = fresh("lock")

    async def scenario():
        async with clients(cluster.servers, 1) as (c,):
            lock = Lock(c, path, owner="nightly backup")
            async with lock:
                data, stat = await c.get(lock.node)
                doc = json.loads(data)
                assert doc["owner"] == "nightly backup" and doc["pid"] == os.getpid()
                assert abs(doc["since"] / 1000 - time.time()) < 60
                assert stat["czxid"] == lock.token and stat["ephemeralOwner"] == c.session_id

    run(scenario)
