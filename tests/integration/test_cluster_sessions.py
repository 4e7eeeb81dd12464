"""Sessions, ephemerals, containers and TTL nodes on a real 3-node cluster.

Expiry is observed the way an operator would: a holder of ephemerals is frozen with SIGSTOP and
every node, read locally after a sync, must drop its ephemerals and its session. Failover tests
kill -9 nodes of a cluster of their own.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import pytest
from local_cluster import LocalCluster, wait_until
from paxctl_procs import paxctl_proc, spawned, until

from paxctl.client import Client, SessionState

pytestmark = pytest.mark.integration

NODES = (1, 2, 3)
NODE_ARGS = ("--min-session-ms", "500")

#: Opens one session, creates each path given as an ephemeral, prints the session id, then
#: pings forever (until frozen or killed).
HOLDER = """
import asyncio, sys
from paxctl.client import Client

async def main():
    servers, timeout, *paths = sys.argv[1:]
    client = Client(servers, session_timeout=float(timeout))
    for path in paths:
        await client.create(path, ephemeral=True)
    print(client.session_id, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(str(tmp_path_factory.mktemp("sessions") / "cluster"), node_args=NODE_ARGS)
    try:
        yield c
    finally:
        c.down()


@pytest.fixture
def fresh_cluster(tmp_path):
    """A cluster of the test's own, for tests that kill nodes."""
    c = LocalCluster(str(tmp_path / "cluster"), node_args=NODE_ARGS)
    try:
        yield c
    finally:
        c.down()


def session_ids(cluster, node_id=None):
    with cluster.client(node_id) as c:
        return {entry["session"] for entry in c.sessions()}


def assert_on_every_node(cluster, parent, children, absent):
    """After a sync, each node's own state has exactly ``children`` under ``parent``."""
    for i in NODES:
        with cluster.client(i) as c:
            c.sync()
            assert sorted(c.children(parent, local=True)) == sorted(children), f"node {i}"
            for path in absent:
                assert c.exists(path, local=True) is None, f"node {i} still has {path}"


# ------------------------------------------------------------------ expiry and close


def test_an_expired_session_loses_its_ephemerals_on_every_node(cluster):
    with cluster.client() as c:
        c.create("/exp", b"")
    holder = (
        [sys.executable, "-c", HOLDER, cluster.servers, "1", "/exp/a", "/exp/b"],
        cluster.servers,
    )
    with spawned(
        holder,
        paxctl_proc(cluster.servers, "create", "-e", "--session-timeout", "1", "/exp/cli"),
        paxctl_proc(cluster.servers, "create", "-e", "--session-timeout", "2", "/exp/alive"),
    ) as (frozen, cli, alive):
        sid = int(frozen.line(15))
        assert cli.line(15) == "/exp/cli"
        assert alive.line(15) == "/exp/alive"
        with cluster.client() as c:
            table = {entry["session"]: entry for entry in c.sessions()}
            assert table[sid]["ephemerals"] == 2
            assert table[sid]["timeout_ms"] == 1000
            assert sorted(c.ephemerals(sid)) == ["/exp/a", "/exp/b"]
            cli_sid = c.stat("/exp/cli")["ephemeralOwner"]
            alive_sid = c.stat("/exp/alive")["ephemeralOwner"]
        assert cli_sid in table and alive_sid in table and len({sid, cli_sid, alive_sid}) == 3
        assert_on_every_node(cluster, "/exp", ["a", "b", "cli", "alive"], [])

        frozen.signal(signal.SIGSTOP)
        cli.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        wait_until(
            lambda: not {sid, cli_sid} & session_ids(cluster), 15, "the frozen sessions to expire"
        )
        # Pinged every third of its timeout, so it was heard of < 1 s before the freeze.
        assert time.monotonic() - stopped > 0.5, "expired while its holder was still pinging"

        assert_on_every_node(cluster, "/exp", ["alive"], ["/exp/a", "/exp/b", "/exp/cli"])
        for i in NODES:
            ids = session_ids(cluster, i)
            assert sid not in ids and cli_sid not in ids, f"node {i} still lists them"
            assert alive_sid in ids, f"node {i} lost the session that kept pinging"
        with cluster.client() as c:
            assert c.ephemerals(sid) == []
        assert alive.popen.poll() is None, alive.stderr()


def test_sigterm_closes_the_session_and_deletes_the_ephemeral_at_once(cluster):
    with spawned(paxctl_proc(cluster.servers, "create", "-e", "/closing")) as (proc,):
        assert proc.line(15) == "/closing"
        with cluster.client() as c:
            owner = c.stat("/closing")["ephemeralOwner"]
            assert owner in session_ids(cluster)
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.wait(10) == 0, proc.stderr()
        took = time.monotonic() - started
    # No waiting: the close was applied before the command exited.
    with cluster.client() as c:
        assert c.exists("/closing") is None
        assert owner not in {entry["session"] for entry in c.sessions()}
    assert took < 3, f"closing took {took:.1f}s"
    for i in NODES:
        with cluster.client(i) as c:
            c.sync()
            assert c.exists("/closing", local=True) is None, f"node {i}"


def test_client_close_ends_the_session_and_its_ephemerals(cluster):
    async def scenario():
        states = []
        client = Client(cluster.servers, session_timeout=2.0)
        client.add_listener(states.append)
        await client.start()
        sid = client.session_id
        assert client.granted_timeout == 2.0
        await client.create("/by-close", ephemeral=True)
        assert await client.ephemerals() == ["/by-close"]
        valid = client.valid_until()
        assert valid is not None and valid > asyncio.get_running_loop().time()
        await client.close()
        assert client.session_id is None and client.state is SessionState.CLOSED
        assert states == [SessionState.CONNECTED, SessionState.CLOSED]
        return sid

    sid = asyncio.run(scenario())
    with cluster.client() as c:
        assert c.exists("/by-close") is None
        assert sid not in {entry["session"] for entry in c.sessions()}


def test_session_timeouts_are_clamped_by_the_nodes(cluster):
    async def scenario():
        async with Client(cluster.servers, session_timeout=0.1) as short:
            await short.start()
            async with Client(cluster.servers, session_timeout=10_000) as long:
                await long.start()
                return short.granted_timeout, long.granted_timeout

    assert asyncio.run(scenario()) == (0.5, 120.0)


# ------------------------------------------------------------------ container and TTL nodes


def test_a_container_is_reaped_after_its_last_child_goes_but_not_before(cluster):
    with cluster.client() as c:
        c.create("/box", container=True)
        c.create("/never-filled", container=True)
        c.create("/box/a")
        c.create("/box/b")
        c.delete("/box/a")
        c.set("/box", b"still here")  # a leftover child keeps it
        c.delete("/box/b")
        wait_until(lambda: c.exists("/box") is None, 10, "the emptied container to be reaped")
        # Reaped in the same sweep if it were a candidate: a container never had a child.
        assert c.exists("/never-filled") is not None
    for i in NODES:
        with cluster.client(i) as c:
            c.sync()
            assert c.exists("/box", local=True) is None, f"node {i}"


def test_a_container_goes_when_its_last_ephemeral_child_goes_with_its_session(cluster):
    async def scenario():
        async with Client(cluster.servers) as member:
            await member.create("/group", container=True)
            await member.create("/group/member-", sequential=True, ephemeral=True)
            assert len(await member.children("/group")) == 1
        # The close deleted the ephemeral: the container, empty now, is reaped next.

    asyncio.run(scenario())
    with cluster.client() as c:
        wait_until(lambda: c.exists("/group") is None, 10, "the container to be reaped")


def test_a_ttl_node_is_reaped_after_its_ttl_unchanged(cluster):
    with cluster.client() as c:
        c.create("/ttl-plain", b"x", ttl=1.0)
        ctime = c.stat("/ttl-plain")["ctime"] / 1000
        wait_until(lambda: c.exists("/ttl-plain") is None, 10, "the TTL node to be reaped")
        assert time.time() >= ctime + 1.0, "reaped before its TTL"
        assert time.time() < ctime + 5.0, "reaped far too late"


def test_a_modified_ttl_node_lives_until_ttl_after_its_last_change(cluster):
    ttl = 1.5
    with cluster.client() as c:
        c.create("/ttl-touched", b"0", ttl=ttl)
        ctime = c.stat("/ttl-touched")["ctime"] / 1000
        time.sleep(max(0.0, ctime + 0.9 - time.time()))  # timing is the subject here
        mtime = c.set("/ttl-touched", b"1")["mtime"] / 1000
        assert mtime - ctime >= 0.8
        time.sleep(max(0.0, ctime + ttl + 0.15 - time.time()))  # past the first deadline
        assert c.get("/ttl-touched")[0] == b"1", "reaped by its creation time"
        wait_until(lambda: c.exists("/ttl-touched") is None, 10, "the TTL node to be reaped")
        assert time.time() >= mtime + ttl, "reaped before TTL after its last change"


# ------------------------------------------------------------------ failover


def test_a_client_whose_node_dies_keeps_its_session_and_ephemerals(fresh_cluster):
    cluster = fresh_cluster
    leader = cluster.leader()["id"]
    victim = next(i for i in NODES if i != leader)

    async def scenario():
        servers = [cluster.address(victim), *(cluster.address(i) for i in NODES if i != victim)]
        client = Client(servers, session_timeout=3.0)
        client._session.server = 0  # start on the node about to die
        states = []
        client.add_listener(states.append)
        try:
            await client.create("/kept")
            await client.create("/kept/a", ephemeral=True)
            await client.create("/kept/b", ephemeral=True)
            sid = client.session_id
            assert client.connected_to == cluster.address(victim)
            await asyncio.to_thread(cluster.kill, victim)
            # Seen through the listener: the client moves to the next node at once, so the
            # suspended state may last only a few milliseconds.
            await until(lambda: SessionState.SUSPENDED in states, 10, "the client to notice")
            await until(
                lambda: (
                    client.state is SessionState.CONNECTED
                    and client.connected_to != cluster.address(victim)
                ),
                15,
                "the client to reconnect elsewhere",
            )
            assert client.session_id == sid
            assert sorted(await client.ephemerals()) == ["/kept/a", "/kept/b"]
            await client.create("/kept/c", ephemeral=True)  # the session still writes
            # connected -> suspended -> connected (a slow ping may add a flip, never a loss)
            assert states[:2] == [SessionState.CONNECTED, SessionState.SUSPENDED], states
            assert states[-1] is SessionState.CONNECTED and SessionState.LOST not in states
            return sid
        finally:
            await client.close()

    sid = asyncio.run(scenario())
    with cluster.client() as c:
        assert c.exists("/kept/a") is None  # closed at the end
        assert sid not in {entry["session"] for entry in c.sessions()}


def test_a_leader_failover_expires_none_of_many_idle_sessions(fresh_cluster):
    cluster = fresh_cluster
    leader = cluster.leader()["id"]
    timeout = 3.0
    count = 30

    async def scenario():
        clients = [Client(cluster.servers, session_timeout=timeout) for _ in range(count)]
        states = {k: [] for k in range(count)}
        for k, client in enumerate(clients):
            client._session.server = k % len(NODES)  # a third on the leader
            client.add_listener(states[k].append)
        reader = Client([cluster.address(i) for i in NODES if i != leader])
        try:
            await clients[0].create("/idle")
            await asyncio.gather(
                *(c.create(f"/idle/s{k:02d}", ephemeral=True) for k, c in enumerate(clients))
            )
            sids = {c.session_id for c in clients}
            assert len(sids) == count
            assert sum(c.connected_to == cluster.address(leader) for c in clients) >= count // 3

            await asyncio.to_thread(cluster.kill, leader)
            new = await asyncio.to_thread(cluster.leader)
            assert new["id"] != leader
            # No event marks "no expiry": keep checking for longer than a session timeout.
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout * 1.5 + 1.0
            while loop.time() < end:
                listed = {entry["session"] for entry in await reader.sessions()}
                assert sids <= listed, f"{len(sids - listed)} sessions expired"
                await asyncio.sleep(0.5)

            assert len(await reader.children("/idle")) == count
            await until(
                lambda: all(c.state is SessionState.CONNECTED for c in clients),
                10,
                "every client to be connected again",
            )
            for k, client in enumerate(clients):
                assert SessionState.LOST not in states[k], f"client {k}: {states[k]}"
                assert client.session_id in sids
            return sids
        finally:
            await reader.close()
            for c in clients:
                await c.close()

    asyncio.run(scenario())
    for i in NODES:
        st = cluster.node_status(i)
        if st is not None:
            assert st["sessions_expired"] == 0, f"node {i} expired sessions"
