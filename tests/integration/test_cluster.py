"""A real 3-node cluster on loopback: reads, transactions, failover, catch-up."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from local_cluster import LocalCluster, wait_until

from paxctl.client import ClientError, Indeterminate
from paxctl.statemachine.errors import BadVersion, MultiError, NodeExists, NoNode
from paxctl.statemachine.ops import Check, Create, SetData

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path):
    c = LocalCluster(str(tmp_path / "cluster"))
    try:
        yield c
    finally:
        c.down()


def test_a_write_through_one_node_is_read_linearizably_through_each_other(cluster):
    writer = cluster.client(1)
    readers = {i: cluster.client(i) for i in (2, 3)}
    try:
        writer.create("/lin", b"v0")
        for n in range(1, 6):
            writer.set("/lin", f"v{n}".encode())
            for reader in readers.values():  # no waiting: a linearizable read sees it at once
                assert reader.get("/lin")[0] == f"v{n}".encode()
    finally:
        writer.close()
        for reader in readers.values():
            reader.close()


def test_multi_is_all_or_nothing_and_stale_versions_are_refused(cluster):
    with cluster.client() as c:
        c.create("/acct", b"100")
        with pytest.raises(MultiError) as failed:
            c.multi([Create("/acct/log-1", b"x"), SetData("/acct", b"50", version=7)])
        assert failed.value.index == 1
        with pytest.raises(NoNode):
            c.get("/acct/log-1")  # the first op did not happen either
        assert c.get("/acct")[0] == b"100"
        results = c.multi(
            [Check("/acct", 0), Create("/acct/log-1", b"x"), SetData("/acct", b"50", version=0)]
        )
        assert results[1] == "/acct/log-1"
        with pytest.raises(BadVersion):
            c.set("/acct", b"0", version=0)  # version is 1 now
        with pytest.raises(NodeExists):
            c.create("/acct")


def test_killing_the_leader_under_load_loses_no_acknowledged_write(cluster):
    leader = cluster.leader()
    acked: list[str] = []
    unknown: list[str] = []
    errors: list[BaseException] = []
    killed = threading.Event()
    after_kill = [0] * 4
    lock = threading.Lock()

    def writer(i: int) -> None:
        try:
            with cluster.client(timeout=20) as c:
                n = 0
                while after_kill[i] < 15:
                    path = f"/load-{i}-{n}"
                    n += 1
                    try:
                        c.create(path, b"x")
                    except Indeterminate:
                        unknown.append(path)
                        continue
                    with lock:
                        acked.append(path)
                    if killed.is_set():
                        after_kill[i] += 1
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) >= 40, 30, "writes before the kill")
    cluster.kill(leader["id"])
    killed.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert all(count >= 15 for count in after_kill), "writes did not resume after the kill"
    cluster.start(leader["id"])
    with cluster.client() as c:
        missing = [p for p in acked if c.exists(p) is None]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"


def test_a_restarted_node_catches_up_with_its_data(cluster):
    victim = 3
    with cluster.client(1) as c:
        c.create("/before", b"1")
        wait_until(
            lambda: (cluster.node_status(victim) or {}).get("applied", 0) >= c.status()["applied"],
            10,
            "node 3 to apply /before",
        )
        cluster.kill(victim)
        for n in range(30):
            c.create(f"/while-down-{n}", b"x")
        top = c.status()["chosen"]
    cluster.start(victim)
    wait_until(
        lambda: (cluster.node_status(victim) or {}).get("applied", 0) >= top,
        20,
        "node 3 to catch up",
    )
    with cluster.client(victim) as c:
        assert c.get("/while-down-29", local=True)[0] == b"x"
        assert c.get("/before", local=True)[0] == b"1"


def test_a_node_behind_the_others_compaction_catches_up_by_snapshot(tmp_path):
    cluster = LocalCluster(str(tmp_path / "snap"), snapshot_every=20)
    try:
        victim = 2
        with cluster.client(1) as c:
            c.create("/s", b"0")
            cluster.kill(victim)
            for n in range(80):  # the others snapshot and compact past what node 2 has
                c.set("/s", str(n).encode())
            top = c.status()["chosen"]
            assert c.status()["compacted"] > 0
        cluster.start(victim)
        wait_until(
            lambda: (cluster.node_status(victim) or {}).get("applied", 0) >= top,
            20,
            "node 2 to catch up",
        )
        st = cluster.node_status(victim)
        assert st is not None and st["counters"].get("snapshots_installed", 0) >= 1
        with cluster.client(victim) as c:
            assert c.get("/s", local=True)[0] == b"79"
    finally:
        cluster.down()


def test_a_cluster_without_quorum_answers_unavailable_not_wrong(cluster):
    cluster.kill(2)
    cluster.kill(3)
    with cluster.client(1, timeout=2) as c, pytest.raises(ClientError):
        c.get("/")  # a linearizable read needs a quorum
    assert cluster.status()["quorum"] is False


def test_status_tells_a_stopped_node_from_a_dead_one(cluster):
    stopped = cluster.pid(3)
    os.kill(stopped, signal.SIGSTOP)  # the process runs but cannot answer
    try:
        cluster.kill(2)
        roles = {n["id"]: (n["role"], n["alive"]) for n in cluster.status()["nodes"]}
        assert roles[2] == ("down", False) and roles[3] == ("no answer", False)
    finally:
        os.kill(stopped, signal.SIGCONT)


def test_replicas_compare_state_digests_through_the_log(cluster):
    with cluster.client() as c:
        c.create("/d", b"")
        for n in range(220):  # past two digest checkpoints (every 100 slots)
            c.set("/d", str(n).encode())
    statuses = {}

    def every_node_checked() -> bool:
        for i in (1, 2, 3):
            statuses[i] = cluster.node_status(i) or {}
        return all(s.get("digest_checks", 0) >= 1 for s in statuses.values())

    wait_until(every_node_checked, 20, "digest checks on every node")
    assert all(s["digest_mismatches"] == 0 for s in statuses.values())


def test_a_retried_write_takes_effect_once_and_gets_the_first_answer(cluster):
    import asyncio

    from paxctl.client import Client

    async def scenario():
        async with Client([cluster.address(2)]) as client:
            await client.start()  # writes need a session
            op = Create("/queue/item-", b"x", sequential=True, parents=True)
            first = await client._write(op)
            # The same (client, seq) again, as after a lost answer, through another node.
            client._session.seq -= 1
            client.servers = [cluster.address(3)]
            client._failover("the test moves it")
            again = await client._write(op)
            children = await client.children("/queue")
            return first, again, children

    first, again, children = asyncio.run(scenario())
    assert first == again == "/queue/item-0000000000"
    assert children == ["item-0000000000"]  # created once
