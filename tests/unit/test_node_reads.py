"""Read-index: a linearizable read point, confirmed by one quorum round at the leader's ballot."""

from __future__ import annotations

from helpers import Cluster, cmd, drain, make_node

from paxctl.core.messages import Accept, Accepted, ReadIndex, ReadIndexReply
from paxctl.core.node import Role
from paxctl.core.state import ReadState


def committed_cluster(writes: int = 3) -> tuple[Cluster, int]:
    cl = Cluster(3, seed=4)
    leader = cl.run_until_leader()
    for seq in range(writes):
        cl.nodes[leader].propose(cmd(500, seq))
        cl.settle()
    return cl, leader


def test_leader_read_waits_for_a_quorum_round_then_gives_its_commit_index():
    cl, leader = committed_cluster()
    node = cl.nodes[leader]
    node.read_index(7)
    r = cl.ready(leader)
    assert r.reads == ()  # not before a quorum confirmed leadership
    beats = [m for m in r.messages if isinstance(m, Accept)]
    assert {m.to for m in beats} == {p for p in cl.nodes if p != leader}
    assert all(m.hb == beats[0].hb > 0 for m in beats)
    cl.settle()
    assert cl.reads[leader] == [ReadState(7, node.learner.commit)]
    assert node.learner.commit >= 3


def test_stale_heartbeat_replies_do_not_confirm_a_newer_read():
    cl, leader = committed_cluster()
    node = cl.nodes[leader]
    old_round = max(m.hb for m in cl.sent if isinstance(m, Accept) and m.frm == leader)
    node.read_index(1)
    cl.ready(leader)
    cl.network.clear()  # the new round's heartbeats are lost
    for peer in (p for p in cl.nodes if p != leader):
        node.step(Accepted(peer, leader, node.ballot, (), node.learner.commit, old_round))
    cl.ready(leader)
    assert cl.reads[leader] == []


def test_reads_arriving_together_share_one_round():
    cl, leader = committed_cluster()
    node = cl.nodes[leader]
    for ctx in range(5):
        node.read_index(ctx)
    r = cl.ready(leader)
    assert len([m for m in r.messages if isinstance(m, Accept)]) == 2  # one per peer
    cl.settle()
    assert [s.ctx for s in cl.reads[leader]] == list(range(5))


def test_follower_read_goes_through_the_leader():
    cl, leader = committed_cluster()
    follower = next(p for p in cl.nodes if p != leader)
    cl.nodes[follower].read_index(42)
    r = cl.ready(follower)
    assert [m for m in r.messages if isinstance(m, ReadIndex)] == [ReadIndex(follower, leader, 42)]
    cl.settle()
    (state,) = cl.reads[follower]
    assert state.ctx == 42 and state.index == cl.nodes[leader].learner.commit


def test_read_index_covers_slots_a_new_leader_adopted_but_has_not_committed():
    node = make_node(1, n=1)
    while node.role is not Role.LEADER:
        node.tick()
    drain(node)
    node.propose(cmd(1, 1))
    drain(node)
    node.read_index(3)
    (state,) = drain(node).reads
    assert state == ReadState(3, node.learner.commit) and state.index >= 1


def test_non_leader_without_a_leader_fails_the_read_at_once():
    node = make_node(2)
    node.read_index(9)
    assert drain(node).reads == (ReadState(9, None),)


def test_a_non_leader_asked_for_a_read_index_says_no():
    node = make_node(2)
    node.step(ReadIndex(3, 2, 5))
    replies = [m for m in drain(node).messages if isinstance(m, ReadIndexReply)]
    assert replies == [ReadIndexReply(2, 3, 5, 0, 0)]


def test_pending_reads_fail_when_the_leader_steps_down():
    cl, leader = committed_cluster()
    node = cl.nodes[leader]
    follower = next(p for p in cl.nodes if p != leader)
    node.read_index(11)
    cl.nodes[follower].read_index(12)
    cl.ready(follower)
    cl.deliver(keep=[ReadIndex])  # the leader now holds a local and a remote read
    cl.network.clear()
    cl.down = {p for p in cl.nodes if p != leader}
    for _ in range(3 * node.config.election_ticks):  # check-quorum deposes it
        node.tick()
    cl.ready(leader)
    assert node.role is not Role.LEADER
    assert ReadState(11, None) in cl.reads[leader]
    assert ReadIndexReply(leader, follower, 12, 0, 0) in cl.sent
