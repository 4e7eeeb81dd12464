"""State transfer on real processes: a tree over the old 64 MiB frame limit reaches a follower
that was stopped behind a snapshot, and a snapshot nobody asked for, or one that does not
decode, is never saved nor applied (issue 14; forged messages built with the project's codec).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from local_cluster import LocalCluster, paxctl, wait_until
from peer_client import open_peer

from paxctl.client import SyncClient
from paxctl.core.membership import founding
from paxctl.core.messages import Accept, SnapshotChunk, SnapshotOffer
from paxctl.core.snapshot_transfer import digest_of
from paxctl.core.types import Ballot
from paxctl.statemachine.machine import StateMachine
from paxctl.statemachine.ops import Create, encode_command

#: The configuration a forged snapshot offer names (any will do: it is refused unasked).
FOUNDERS = (founding({1: "127.0.0.1:1", 2: "127.0.0.1:2", 3: "127.0.0.1:3"}),)

MIB = 1024 * 1024


def status(cluster: LocalCluster, node_id: int) -> dict[str, Any]:
    """A node's status, waiting out a busy moment (a node taking a big snapshot is slow)."""
    found: dict[str, Any] = wait_until(lambda: cluster.node_status(node_id), 60, "status")
    return found


def snapshot_files(directory: str, node_id: int) -> list[tuple[str, int]]:
    snap = Path(directory) / f"node-{node_id}" / "snap"
    return sorted((p.name, p.stat().st_size) for p in snap.iterdir())


def cluster_id(directory: str) -> bytes:
    with open(os.path.join(directory, "cluster.json")) as f:
        return bytes.fromhex(json.load(f)["cluster_id"])


@pytest.fixture
def cluster_dir(tmp_path: Path):
    directory = str(tmp_path / "c")
    yield directory
    paxctl("cluster", "down", "--dir", directory, "--grace", "2", check=False)


def test_a_tree_over_64_mib_reaches_a_follower_restarted_behind_a_snapshot(cluster_dir):
    cluster = LocalCluster(cluster_dir, snapshot_every=40)
    leader = cluster.leader()["id"]
    follower = next(i for i in (1, 2, 3) if i != leader)
    cluster.kill(follower)
    data = os.urandom(MIB - 64)
    with SyncClient([cluster.address(leader)], timeout=60, session_timeout=60) as c:
        c.create("/big")
        for i in range(70):
            c.create(f"/big/{i:03d}", data)
        last_big = c.stat("/big/069")["mzxid"] >> 16
        n = 0
        while status(cluster, leader)["compacted"] < last_big:  # a snapshot covers them all
            n += 1
            c.create(f"/small-{n}")
    (name, size), *_ = reversed(snapshot_files(cluster_dir, leader))
    assert size > 64 * MIB, (name, size)

    cluster.start(follower)

    def caught_up() -> bool:
        fs, ls = cluster.node_status(follower), cluster.node_status(leader)
        return bool(fs and ls and fs["applied"] >= ls["applied"])

    wait_until(caught_up, 120, "the follower to catch up by snapshot")
    fs, ls = status(cluster, follower), status(cluster, leader)
    assert fs["counters"]["snapshots_installed"] == 1
    assert fs["counters"]["snapshot_chunks_received"] >= 64
    assert fs["digest"] == ls["digest"]
    with cluster.client(follower, timeout=30) as c:
        got, _ = c.get("/big/069", local=True)
        assert got == data
    log = Path(cluster_dir, f"node-{leader}.log").read_text()
    assert "exceeds" not in log


def forged_snapshot(slot: int) -> bytes:
    machine = StateMachine()
    machine.apply_command(slot << 16, encode_command(0, Create("/forged", b"x")), 2, 1)
    assert machine.tree.exists("/forged")
    return machine.snapshot()


def test_unsolicited_and_undecodable_snapshots_are_dropped_and_never_saved(cluster_dir):
    cluster = LocalCluster(cluster_dir, snapshot_every=5000)
    leader = cluster.leader()["id"]
    with cluster.client(timeout=30) as c:
        c.create("/real", b"1")
    victim = next(i for i in (1, 2, 3) if i != leader)
    other = next(i for i in (1, 2, 3) if i not in (leader, victim))
    before = {i: snapshot_files(cluster_dir, i) for i in (1, 2, 3)}
    digests = {i: status(cluster, i)["digest"] for i in (1, 2, 3)}
    port = cluster.base + 100 + victim
    cid = cluster_id(cluster_dir)
    commit = status(cluster, victim)["chosen"]

    # 1. A whole, valid snapshot of another tree, offered and sent unasked.
    app = forged_snapshot(commit + 1000)
    with open_peer(port, other, cid, credentials_dir=cluster_dir) as peer:
        peer.send(SnapshotOffer(other, victim, commit + 1000, FOUNDERS, len(app), digest_of(app)))
        peer.send(SnapshotChunk(other, victim, commit + 1000, 0, app))
        assert not peer.closed_by_node(1.0)  # well-formed: dropped, not a protocol error
    wait_until(
        lambda: status(cluster, victim)["counters"].get("snapshot_unsolicited", 0) >= 2,
        10,
        "the unsolicited offer and chunk to be counted",
    )

    # 2. Undecodable bytes in a transfer the node did start: it asks the leader after a
    # heartbeat at the leader's own ballot claims a commit ahead of it; the forger, speaking as
    # the leader (a member's credential), answers first with garbage. (Peer messages are
    # checked, so the heartbeat must carry the ballot the leader really holds.)
    garbage = b"\xc1not a state machine" * 50
    slot = commit + 3
    rnd, node = str(status(cluster, leader)["ballot"]).split(".")
    ballot = Ballot(int(rnd), int(node))
    with open_peer(port, leader, cid, credentials_dir=cluster_dir) as peer:
        peer.send(Accept(leader, victim, ballot, (), slot))
        peer.send(SnapshotOffer(leader, victim, slot, FOUNDERS, len(garbage), digest_of(garbage)))
        peer.send(SnapshotChunk(leader, victim, slot, 0, garbage))
        assert not peer.closed_by_node(1.0)
    wait_until(
        lambda: status(cluster, victim)["counters"].get("snapshot_rejected", 0) >= 1,
        10,
        "the undecodable snapshot to be refused by the application's check",
    )

    for i in (1, 2, 3):
        assert snapshot_files(cluster_dir, i) == before[i], f"node {i} saved a snapshot"
        assert status(cluster, i)["digest"] == digests[i]
        with cluster.client(i, timeout=30) as c:
            assert c.exists("/forged", local=True) is None
            assert c.get("/real", local=True)[0] == b"1"

    log = Path(cluster_dir, f"node-{victim}.log").read_text()
    assert f"dropped a SnapshotOffer from node {other} (snapshot_unsolicited)" in log
    assert f"dropped a SnapshotChunk from node {leader} (snapshot_rejected)" in log

    # The victim restarts from its own disk as before and keeps serving.
    cluster.kill(victim, signal.SIGKILL)
    cluster.start(victim)
    with cluster.client(victim, timeout=30) as c:
        c.create("/after", b"2")
        assert c.get("/after")[0] == b"2"
    assert status(cluster, victim)["counters"].get("snapshots_installed", 0) == 0
