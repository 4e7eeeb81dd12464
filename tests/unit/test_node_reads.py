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


def heartbeats(r, leader: int) -> list[Accept]:
    return [m for m in r.messages if isinstance(m, Accept) and m.frm == leader]


def test_reads_arriving_while_a_round_is_in_flight_wait_for_the_next_one():
    cl, leader = committed_cluster()
    node = cl.nodes[leader]
    rounds = node.counters["read_rounds"]
    node.read_index(1)
    first = heartbeats(cl.ready(leader), leader)
    assert len(first) == 2
    in_flight, cl.network = cl.network, []
    node.read_index(2)  # registered after that round began: it must not be answered by it
    node.read_index(3)
    assert heartbeats(cl.ready(leader), leader) == []  # no second round while one is in flight
    cl.network = in_flight
    cl.deliver()  # the peers get the first round's heartbeats and acknowledge them
    cl.deliver()  # the leader hears a quorum: it starts the next round at once
    assert [s.ctx for s in cl.reads[leader]] == [1]
    assert node.heartbeat_round == first[0].hb + 1
    assert len([m for m in cl.network if isinstance(m, Accept) and m.hb == first[0].hb + 1]) == 2
    cl.settle()
    assert [s.ctx for s in cl.reads[leader]] == [1, 2, 3]
    assert node.counters["read_rounds"] - rounds == 2


def test_many_concurrent_reads_from_every_node_cost_one_round_and_one_ask_per_follower():
    cl, leader = committed_cluster()
    node = cl.nodes[leader]
    followers = [p for p in cl.nodes if p != leader]
    rounds, sent = node.counters["read_rounds"], len(cl.sent)
    for f in followers:
        for ctx in range(100, 110):
            cl.nodes[f].read_index(ctx)
        asks = [m for m in cl.ready(f).messages if isinstance(m, ReadIndex)]
        assert asks == [ReadIndex(f, leader, 100)]  # one ask for the whole batch
    for ctx in range(10):
        node.read_index(ctx)
    for ask in cl.network:
        node.step(ask)
    cl.network = []
    assert len(heartbeats(cl.ready(leader), leader)) == 2  # one round for all 30 reads
    cl.settle()
    assert node.counters["read_rounds"] - rounds == 1
    assert [s.ctx for s in cl.reads[leader]] == list(range(10))
    for f in followers:
        assert [(s.ctx, s.index) for s in cl.reads[f]] == [
            (ctx, node.learner.commit) for ctx in range(100, 110)
        ]
    replies = [m for m in cl.sent[sent:] if isinstance(m, ReadIndexReply)]
    assert len(replies) == 2


def test_a_round_whose_heartbeats_are_lost_holds_reads_only_until_the_next_heartbeat():
    cl, leader = committed_cluster()
    node = cl.nodes[leader]
    node.read_index(1)
    cl.ready(leader)
    cl.network.clear()  # that round's heartbeats are lost: it never settles
    node.read_index(2)
    cl.ready(leader)
    assert cl.reads[leader] == []
    for _ in range(node.config.heartbeat_ticks):
        node.tick()
    cl.settle()
    assert [s.ctx for s in cl.reads[leader]] == [1, 2]


def test_an_acknowledgement_of_the_round_a_read_waits_for_counts_only_once_it_is_sent():
    cl, leader = committed_cluster()
    node = cl.nodes[leader]
    node.read_index(1)
    cl.ready(leader)
    cl.network.clear()
    node.read_index(2)  # waits for the round after the one in flight
    cl.ready(leader)
    waited = node.heartbeat_round + 1
    for peer in (p for p in cl.nodes if p != leader):
        node.step(Accepted(peer, leader, node.ballot, (), node.learner.commit, waited))
    cl.ready(leader)
    assert cl.reads[leader] == []
    assert node.counters["rejected_Accepted"] == 2


def test_a_follower_takes_one_answer_for_its_batch_only_from_the_leader_it_asked():
    cl, leader = committed_cluster()
    follower = next(p for p in cl.nodes if p != leader)
    other = next(p for p in cl.nodes if p not in (leader, follower))
    node = cl.nodes[follower]
    node.read_index(5)
    node.read_index(6)
    cl.ready(follower)
    cl.network.clear()
    before = node.counters["rejected"]
    node.step(ReadIndexReply(leader, follower, 6, 99, 1))  # names no ask: 6 rode on 5's
    node.step(ReadIndexReply(other, follower, 5, 99, 1))  # not the node asked
    assert node.counters["rejected"] - before == 2
    assert cl.ready(follower).reads == ()
    node.step(ReadIndexReply(leader, follower, 5, 4, 1))
    assert cl.ready(follower).reads == (ReadState(5, 4), ReadState(6, 4))
    assert not node.read_asks
