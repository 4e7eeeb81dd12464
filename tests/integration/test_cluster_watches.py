"""Watches on a real 3-node cluster: one-shot and persistent kinds, ordering against replies,
replay and resync from an old zxid, and a recursive watcher that fails over mid-stream.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest
from local_cluster import LocalCluster
from paxctl_procs import until

from paxctl.client import Client, Indeterminate, SessionState
from paxctl.statemachine.errors import NoNode

pytestmark = pytest.mark.integration

NODES = (1, 2, 3)
HISTORY = 20
EVENT_TIMEOUT = 10


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(
        str(tmp_path_factory.mktemp("watches") / "cluster"),
        node_args=("--min-session-ms", "500", "--watch-history", str(HISTORY)),
    )
    try:
        yield c
    finally:
        c.down()


def run(scenario):
    return asyncio.run(scenario())


async def no_more(watch, wait=0.3):
    """The watch has nothing queued (after giving stray events a moment to arrive)."""
    with pytest.raises(TimeoutError):
        await watch.get(timeout=wait)


# ------------------------------------------------------------------ one-shot watches


def test_get_watch_fires_once_on_the_next_change(cluster):
    async def scenario():
        async with Client([cluster.address(2)]) as watcher, Client([cluster.address(1)]) as w:
            await w.create("/once", b"a")
            data, stat, watch = await watcher.get_watch("/once")
            assert data == b"a" and stat["version"] == 0
            changed = await w.set("/once", b"b")
            await w.set("/once", b"c")
            event = await watch.get(timeout=EVENT_TIMEOUT)
            assert (event.type, event.path, event.zxid) == ("changed", "/once", changed["mzxid"])
            assert watch.done
            with pytest.raises(StopAsyncIteration):  # used up: the second set is not seen
                await watch.get(timeout=EVENT_TIMEOUT)

            _, _, watch = await watcher.get_watch("/once")  # a deletion fires a data watch too
            await w.delete("/once")
            assert (await watch.get(timeout=EVENT_TIMEOUT)).type == "deleted"

    run(scenario)


def test_exists_watch_fires_when_a_missing_node_is_created(cluster):
    async def scenario():
        async with Client([cluster.address(3)]) as watcher, Client([cluster.address(1)]) as w:
            stat, watch = await watcher.exists_watch("/appears")
            assert stat is None
            await w.create("/appears", b"x")
            await w.set("/appears", b"y")
            event = await watch.get(timeout=EVENT_TIMEOUT)
            assert (event.type, event.path) == ("created", "/appears")
            with pytest.raises(StopAsyncIteration):
                await watch.get(timeout=EVENT_TIMEOUT)

            stat, watch = await watcher.exists_watch("/appears")  # and when it goes
            assert stat is not None
            await w.delete("/appears")
            assert (await watch.get(timeout=EVENT_TIMEOUT)).type == "deleted"

    run(scenario)


def test_children_watch_fires_once_on_a_child_create(cluster):
    async def scenario():
        async with Client([cluster.address(2)]) as watcher, Client([cluster.address(3)]) as w:
            await w.create("/kids")
            names, watch = await watcher.children_watch("/kids")
            assert names == []
            await w.set("/kids", b"data changes are not child changes")
            await w.create("/kids/a")
            await w.create("/kids/b")
            event = await watch.get(timeout=EVENT_TIMEOUT)
            assert (event.type, event.path) == ("children", "/kids")
            with pytest.raises(StopAsyncIteration):
                await watch.get(timeout=EVENT_TIMEOUT)
            assert await watcher.children("/kids") == ["a", "b"]

    run(scenario)


def test_an_event_is_delivered_before_the_reply_of_a_read_that_reflects_it(cluster):
    """The watcher's node differs from the writer's; the linearizable read that returns the
    new value must find the event already delivered (no await in between)."""

    async def scenario():
        async with Client([cluster.address(3)]) as watcher, Client([cluster.address(1)]) as w:
            await w.create("/order", b"0")
            await watcher.sync()  # a plain watch starts from its node's state: make it current
            persistent = await watcher.watch("/order")
            for n in range(1, 21):
                _, _, one_shot = await watcher.get_watch("/order")
                stat = await w.set("/order", str(n).encode())
                data, read_stat = await watcher.get("/order")
                assert data == str(n).encode()
                assert one_shot.done, f"set {n}: the read's reply came before the event"
                assert persistent.last_zxid >= read_stat["mzxid"] == stat["mzxid"], f"set {n}"
                assert (await one_shot.get(timeout=0.5)).zxid == stat["mzxid"]
                assert (await persistent.get(timeout=0.5)).zxid == stat["mzxid"]
            await no_more(persistent)

    run(scenario)


# ------------------------------------------------------------------ persistent watches


def test_a_persistent_watch_sees_all_four_kinds_for_its_own_path_only(cluster):
    async def scenario():
        async with Client([cluster.address(1)]) as watcher, Client([cluster.address(2)]) as w:
            watch = await watcher.watch("/p4")
            await w.create("/p4", b"")
            await w.set("/p4", b"1")
            await w.create("/p4/child")
            await w.set("/p4/child", b"not ours")  # a child's data: no event on /p4
            await w.delete("/p4/child")
            await w.delete("/p4")
            await w.create("/p4", b"again")
            got = [await watch.get(timeout=EVENT_TIMEOUT) for _ in range(6)]
            assert [(e.type, e.path) for e in got] == [
                ("created", "/p4"),
                ("changed", "/p4"),
                ("children", "/p4"),
                ("children", "/p4"),
                ("deleted", "/p4"),
                ("created", "/p4"),
            ]
            assert [e.zxid for e in got] == sorted({e.zxid for e in got})
            await no_more(watch)
            await watch.cancel()
            await w.set("/p4", b"after cancel")
            with pytest.raises(StopAsyncIteration):
                await watch.get(timeout=EVENT_TIMEOUT)

    run(scenario)


def test_a_recursive_watch_sees_its_subtree_without_children_events(cluster):
    async def scenario():
        async with Client([cluster.address(2)]) as watcher, Client([cluster.address(3)]) as w:
            watch = await watcher.watch("/tree", recursive=True)
            await w.create("/tree", b"")
            await w.create("/tree/a/b", parents=True)
            await w.set("/tree/a/b", b"1")
            await w.create("/treehouse", b"")  # a sibling sharing the prefix: not ours
            await w.delete("/tree/a/b")
            got = [await watch.get(timeout=EVENT_TIMEOUT) for _ in range(5)]
            assert [(e.type, e.path) for e in got] == [
                ("created", "/tree"),
                ("created", "/tree/a"),
                ("created", "/tree/a/b"),
                ("changed", "/tree/a/b"),
                ("deleted", "/tree/a/b"),
            ]
            assert [e.zxid for e in got] == sorted(e.zxid for e in got)
            assert got[1].zxid == got[2].zxid  # one create with parents: one transaction
            await no_more(watch)

    run(scenario)


def test_a_watch_from_an_old_zxid_replays_the_history_or_says_resync(cluster):
    async def scenario():
        async with Client([cluster.address(1)]) as w, Client([cluster.address(2)]) as watcher:
            await w.create("/hist", b"")
            start = (await w.set("/hist", b"start"))["mzxid"]
            sets = [(await w.set("/hist", str(n).encode()))["mzxid"] for n in range(3)]
            replay = await watcher.watch("/hist", after=start)
            got = [await replay.get(timeout=EVENT_TIMEOUT) for _ in range(3)]
            assert [(e.type, e.zxid) for e in got] == [("changed", z) for z in sets]
            await no_more(replay)

            # The history (20 events per node) forgets what came after ``start``.
            sets += [(await w.set("/hist", str(n).encode()))["mzxid"] for n in range(HISTORY + 5)]
            old = await watcher.watch("/hist", after=start)
            first = await old.get(timeout=EVENT_TIMEOUT)
            assert (first.type, first.path) == ("resync", "/hist")
            # It goes on watching from the resync point (node 2 may still be applying the last
            # sets: those come as events, the resync covering only what it had applied).
            sets.append((await w.set("/hist", b"after the resync"))["mzxid"])
            rest = []
            while not rest or rest[-1].zxid != sets[-1]:
                rest.append(await old.get(timeout=EVENT_TIMEOUT))
            assert all(e.type == "changed" and e.path == "/hist" for e in rest), rest
            assert [e.zxid for e in rest] == [z for z in sets if z > first.zxid]
            await no_more(old)
            assert (await replay.get(timeout=EVENT_TIMEOUT)).type == "changed"  # not a resync

    run(scenario)


# ------------------------------------------------------------------ failover


def test_a_recursive_watcher_sees_every_write_once_in_order_across_a_leader_kill(tmp_path):
    """1,000 writes under /stream, the leader (the watcher's node) killed after ~300."""
    cluster = LocalCluster(str(tmp_path / "cluster"), node_args=("--min-session-ms", "500"))
    try:
        leader = cluster.leader()["id"]
        followers = [i for i in NODES if i != leader]
        run(lambda: stream_across_leader_kill(cluster, leader, followers))
    finally:
        cluster.down()


async def stream_across_leader_kill(cluster, leader, followers):
    total, kill_at = 1000, 300
    watcher = Client([cluster.address(i) for i in (leader, *followers)], session_timeout=1.5)
    watcher._session.server = 0  # on the leader, so it must fail over
    writer = Client([cluster.address(i) for i in (*followers, leader)], timeout=20)
    writer._session.server = 0
    try:
        await writer.create("/stream")
        await writer.create("/stream/quiet")
        await watcher.sync()  # a plain watch starts from its node's state: make it current
        watch = await watcher.watch("/stream", recursive=True)
        # One-shot watches registered on the dying node must be re-armed on the next one.
        _, _, data_watch = await watcher.get_watch("/stream/quiet")
        _, kids_watch = await watcher.children_watch("/stream/quiet")
        assert watcher.connected_to == cluster.address(leader)

        # Write i: even ones create /stream/nK, odd ones set it (K = i // 2): each write has
        # its own (type, path), so an event names the write that caused it.
        write_of = {}
        acked, unknown, refused = [], [], []
        for i in range(total):
            if i == kill_at:
                await asyncio.to_thread(cluster.kill, leader)
            path = f"/stream/n{i // 2:04d}"
            write_of["created" if i % 2 == 0 else "changed", path] = i
            try:
                if i % 2 == 0:
                    await writer.create(path, str(i).encode())
                else:
                    await writer.set(path, str(i).encode())
            except Indeterminate:
                unknown.append(i)
            except NoNode:  # a set after a create whose outcome was unknown and did not happen
                refused.append(i)
            else:
                acked.append(i)
        await writer.create("/stream/end")

        events = []
        while not events or events[-1].path != "/stream/end":
            events.append(await watch.get(timeout=20))
    finally:
        await writer.close()

    try:
        assert watcher.connected_to != cluster.address(leader)
        assert watcher.state is SessionState.NONE  # a watcher needs no session
        assert all(e.type != "resync" for e in events), "the history should cover the gap"
        zxids = [e.zxid for e in events]
        assert all(a < b for a, b in itertools.pairwise(zxids)), "zxids not increasing"
        unexpected = [e for e in events[:-1] if (e.type, e.path) not in write_of]
        assert not unexpected, unexpected[:5]
        order = [write_of[e.type, e.path] for e in events[:-1]]
        twice = [i for i, n in Counter(order).items() if n > 1]
        assert not twice, f"writes seen more than once: {twice[:10]}"
        assert order == sorted(order), "events out of write order"
        missing = sorted(set(acked) - set(order))
        assert not missing, f"{len(missing)} acknowledged writes never seen, e.g. {missing[:10]}"
        assert not set(refused) & set(order)
        assert set(order) <= set(acked) | set(unknown)
        assert any(i < kill_at for i in order) and any(i > kill_at + 100 for i in order)

        async with Client([cluster.address(followers[0])]) as w:
            assert not data_watch.done and not kids_watch.done
            await w.create("/stream/quiet/kid")
            kid = await kids_watch.get(timeout=EVENT_TIMEOUT)
            assert (kid.type, kid.path) == ("children", "/stream/quiet")
            await w.set("/stream/quiet", b"now")
            data = await data_watch.get(timeout=EVENT_TIMEOUT)
            assert (data.type, data.path) == ("changed", "/stream/quiet")
            tail = [await watch.get(timeout=EVENT_TIMEOUT) for _ in range(2)]
            assert [(e.type, e.path) for e in tail] == [
                ("created", "/stream/quiet/kid"),
                ("changed", "/stream/quiet"),
            ]
    finally:
        await watcher.close()


def test_watches_resume_on_another_node_with_the_changes_made_while_away(tmp_path):
    """Every kind of watch on node A; A is killed; changes are made while the watcher cannot
    reach any node; once it may, each watch gets exactly the events it missed, once."""
    cluster = LocalCluster(str(tmp_path / "cluster"), node_args=("--min-session-ms", "500"))
    try:
        leader = cluster.leader()["id"]
        victim = next(i for i in NODES if i != leader)
        run(lambda: resume_after_node_kill(cluster, victim))
    finally:
        cluster.down()


async def resume_after_node_kill(cluster, victim):
    others = [cluster.address(i) for i in NODES if i != victim]
    watcher = Client([cluster.address(victim)], session_timeout=1.5)
    try:
        async with Client(others) as w:
            await w.create("/r")
            await w.create("/r/x", b"0")
            await watcher.sync()  # a plain watch starts from its node's state: make it current
            recursive = await watcher.watch("/r", recursive=True)
            persistent = await watcher.watch("/r/x")
            _, _, data_watch = await watcher.get_watch("/r/x")
            _, kids_watch = await watcher.children_watch("/r")
            _, exists_watch = await watcher.exists_watch("/r/new")
            before = await w.set("/r/x", b"before")
            for watch in (recursive, persistent, data_watch):
                assert (await watch.get(timeout=EVENT_TIMEOUT)).zxid == before["mzxid"]

            await asyncio.to_thread(cluster.kill, victim)
            await until(lambda: watcher._conn is None or watcher._conn.closed, 10, "the drop")
            during = [
                (await w.set("/r/x", b"d1"))["mzxid"],
                await w.create("/r/new"),
                (await w.set("/r/x", b"d2"))["mzxid"],
                await w.delete("/r/new"),
            ]
            assert during[1] == "/r/new"
            watcher.servers = [cluster.address(victim), *others]  # now it may fail over
            after = await w.set("/r/x", b"after")

            got = []
            while not got or got[-1].zxid != after["mzxid"]:
                got.append(await recursive.get(timeout=EVENT_TIMEOUT))
            assert [(e.type, e.path) for e in got] == [
                ("changed", "/r/x"),
                ("created", "/r/new"),
                ("changed", "/r/x"),
                ("deleted", "/r/new"),
                ("changed", "/r/x"),
            ]
            assert got[0].zxid == during[0] and got[2].zxid == during[2]
            persistent_got = [await persistent.get(timeout=EVENT_TIMEOUT) for _ in range(3)]
            assert [e.zxid for e in persistent_got] == [during[0], during[2], after["mzxid"]]
            assert (await kids_watch.get(timeout=EVENT_TIMEOUT)).type == "children"
            created = await exists_watch.get(timeout=EVENT_TIMEOUT)
            assert (created.type, created.path) == ("created", "/r/new")
            assert kids_watch.done and exists_watch.done
            assert watcher.connected_to != cluster.address(victim)
            await no_more(recursive)
            await no_more(persistent)
    finally:
        await watcher.close()
