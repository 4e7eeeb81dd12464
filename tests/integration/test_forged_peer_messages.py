"""Issue 14, item 2, on real processes: well-typed node messages a node must not act upon.

Each forged message is built with the production codec and sent to a node's peer port by
``peer_client.open_peer``, authenticating as a member with whatever credential the cluster
directory holds. Every test checks the node logged the rejection and the cluster still works.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import Cluster, wait_until
from peer_client import open_peer

from paxctl.client import ClientError, SyncClient
from paxctl.core.codec import MAX_UINT
from paxctl.core.messages import CatchupReply, Forward, Message, Prepare, Relay
from paxctl.core.types import Ballot, ChosenEntry, Command
from paxctl.server.liveness import TOUCH_ACK, encode_touch
from paxctl.statemachine.ops import REAPER_CLIENT, CloseSession, Create, encode_command

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"


def send(cluster: Cluster, to: int, msg: Message) -> None:
    """``msg`` on a peer connection of its own to node ``to``, as node ``msg.frm``."""
    with open_peer(cluster.peer_port(to), msg.frm, cluster.cluster_id, cluster.directory) as p:
        p.send(msg)
        assert not p.closed_by_node(0.3), f"node {to} dropped the connection of a member"


def node_status(cluster: Cluster, node_id: int) -> dict:
    with SyncClient([(HOST, cluster.client_port(node_id))], timeout=5) as c:
        st: dict = c.status()
        return st


def rss_kib(cluster: Cluster, node_id: int) -> int:
    pid = (cluster.directory / f"node-{node_id}.pid").read_text().strip()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def followers(cluster: Cluster, leader: int) -> list[int]:
    return [i for i in cluster.ids if i != leader]


def kill_and_wait_for_another_leader(cluster: Cluster, leader: int) -> int:
    pid = int((cluster.directory / f"node-{leader}.pid").read_text())
    os.kill(pid, signal.SIGKILL)

    def new_leader() -> int | None:
        for node_id in followers(cluster, leader):
            try:
                st = node_status(cluster, node_id)
            except (ClientError, OSError):
                continue
            if st["role"] == "leader":
                return node_id
        return None

    return wait_until(new_leader, 20, 0.2, "a new leader after the old one was killed")


def test_a_prepare_with_the_largest_round_is_dropped_and_the_cluster_elects_for_ever(
    fresh_cluster,
):
    """The issue: one Prepare with round 2**63 - 1 to a follower, and no campaign could ever be
    encoded again, even after ``cluster down`` and ``up``."""
    cluster = fresh_cluster
    leader = cluster.leader()
    marks = cluster.log_marks()
    for f in followers(cluster, leader):
        forger = next(i for i in cluster.ids if i != f)
        send(cluster, f, Prepare(forger, f, Ballot(MAX_UINT, forger), 1))
        cluster.wait_log(marks, f, f"rejected Prepare from node {forger} (round-cap)")
        promised = node_status(cluster, f)["promised"]
        assert int(promised.split(".")[0]) < 2**40, promised
    new = kill_and_wait_for_another_leader(cluster, leader)
    assert new != leader
    cluster.paxctl("cluster", "start", str(leader), "--dir", str(cluster.directory))
    cluster.wait_healthy(timeout=20)
    assert cluster.down().returncode == 0
    assert cluster.up().returncode == 0
    cluster.wait_healthy(timeout=20)
    cluster.assert_reads_and_writes_work()


def test_an_unsolicited_catchup_reply_for_the_next_slot_applies_nothing(cluster):
    """The issue: it applied an arbitrary create on every node (a cluster-own client id needs
    no session)."""
    marks = cluster.log_marks()
    leader = cluster.leader()
    f = followers(cluster, leader)[0]
    nxt = int(node_status(cluster, f)["chosen"]) + 1
    forged = Command(2, 1, encode_command(int(time.time() * 1000), Create("/forged-catchup", b"")))
    send(cluster, f, CatchupReply(leader, f, (ChosenEntry(nxt, (forged,)),), nxt))
    cluster.wait_log(marks, f, f"rejected CatchupReply from node {leader} (unsolicited)")
    cluster.assert_reads_and_writes_work()  # slots after the forged one are chosen and applied
    for node_id in cluster.ids:
        with SyncClient([(HOST, cluster.client_port(node_id))], timeout=5) as c:
            assert c.exists("/forged-catchup") is None, f"node {node_id} applied the forgery"
    cluster.assert_no_tracebacks(marks)


def test_a_catchup_reply_for_slot_a_billion_allocates_nothing(cluster):
    """The issue: the next leader grew past 1.5 GB of RSS filling every slot up to it."""
    marks = cluster.log_marks()
    leader = cluster.leader()
    before = {f: rss_kib(cluster, f) for f in followers(cluster, leader)}
    far = 10**9
    entry = ChosenEntry(far, (Command(2, 1, b"x"),))
    for f in followers(cluster, leader):
        counted = node_status(cluster, f)["counters"].get("rejected_CatchupReply", 0)
        other = next(i for i in followers(cluster, leader) if i != f)
        for sender in (leader, other):
            send(cluster, f, CatchupReply(sender, f, (entry,), far))
        # (one line per sender and reason every 10 s: the leader's may have been logged just
        # before, by another test)
        cluster.wait_log(marks, f, f"rejected CatchupReply from node {other}")
        now = node_status(cluster, f)["counters"]["rejected_CatchupReply"]
        assert now == counted + 2
    new = kill_and_wait_for_another_leader(cluster, leader)  # a node that took it would fill
    with SyncClient([(HOST, cluster.client_port(new))], timeout=8) as c:
        c.create("/after-the-far-reply", b"")  # the new leader proposes and commits
    grown = rss_kib(cluster, new) - before[new]
    assert grown < 64 * 1024, f"node {new} grew by {grown} KiB"
    cluster.paxctl("cluster", "start", str(leader), "--dir", str(cluster.directory))
    cluster.wait_healthy(timeout=20)
    cluster.assert_no_tracebacks(marks)


def test_a_forward_posing_as_the_reaper_cannot_close_a_live_session(cluster):
    """The issue: it closed a live session and, with seq 2**63 - 1, stopped every later expiry."""
    marks = cluster.log_marks()
    leader = cluster.leader()
    f = followers(cluster, leader)[0]
    with SyncClient([(HOST, p) for p in cluster.client_ports], timeout=5) as victim:
        victim.create("/victim-eph", b"", ephemeral=True)
        session = victim.session_id
        assert session is not None
        close = encode_command(int(time.time() * 1000), CloseSession(session))
        send(cluster, leader, Forward(f, leader, (Command(REAPER_CLIENT, MAX_UINT, close),)))
        cluster.wait_log(marks, leader, f"rejected Forward from node {f} (system-client)")
        victim.sync()
        assert victim.exists("/victim-eph") is not None
        victim.create("/victim-still-writes", b"")
        assert session in {s["session"] for s in victim.sessions()}
    cluster.assert_no_tracebacks(marks)


def test_relays_from_a_stranger_or_a_member_that_does_not_lead_are_dropped(cluster):
    """The issue: a Relay kept a dead session alive. A stranger is refused at its hello; a
    member that does not lead cannot acknowledge heartbeats."""
    marks = cluster.log_marks()
    leader = cluster.leader()
    f, other = followers(cluster, leader)
    stranger = max(cluster.ids) + 50
    # Even with the cluster secret, a node id that is not a member's fails the handshake,
    # before any message of it is read.
    with pytest.raises(AssertionError, match=f"refused the hello of node {stranger}"):
        open_peer(cluster.peer_port(f), stranger, cluster.cluster_id, cluster.directory)
    cluster.wait_log(marks, f, f"node {stranger}")
    send(cluster, f, Relay(other, f, TOUCH_ACK, encode_touch(1, [])))
    cluster.wait_log(marks, f, f"rejected Relay from node {other} (not-leader)")
    cluster.assert_healthy()
    cluster.assert_no_tracebacks(marks)
