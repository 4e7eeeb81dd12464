"""Pre-vote: a node asks a majority before it raises any promise or round."""

from __future__ import annotations

from helpers import Cluster, drain, make_node, of_type

from paxctl.core.messages import Prepare, PreVote, PreVoteReply
from paxctl.core.node import Role


def tick_until(node, kind, limit=500):
    for _ in range(limit):
        node.tick()
        r = drain(node)
        if of_type(r, kind):
            return r
    raise AssertionError(f"no {kind.__name__} within {limit} ticks")


def test_an_expired_timer_sends_pre_votes_and_changes_nothing_durable():
    node = make_node(2, pre_vote=True)
    r = tick_until(node, PreVote)
    assert {m.to for m in of_type(r, PreVote)} == {1, 3}
    assert of_type(r, Prepare) == []
    assert r.hard_state is None and node.max_round == 0 and node.role is Role.FOLLOWER


def test_a_majority_of_grants_starts_the_real_campaign():
    node = make_node(2, pre_vote=True)
    (vote, *_) = of_type(tick_until(node, PreVote), PreVote)
    node.step(PreVoteReply(1, 2, vote.round, 1))
    r = drain(node)
    assert node.role is Role.CANDIDATE and node.ballot.round == vote.round
    assert r.hard_state is not None and r.hard_state.max_round == vote.round
    assert {m.to for m in of_type(r, Prepare)} == {1, 3}


def test_refusals_and_stale_grants_do_not_start_a_campaign():
    node = make_node(2, pre_vote=True)
    (vote, *_) = of_type(tick_until(node, PreVote), PreVote)
    node.step(PreVoteReply(1, 2, vote.round, 0))
    node.step(PreVoteReply(3, 2, vote.round - 1, 1))
    assert node.role is Role.FOLLOWER and of_type(drain(node), Prepare) == []


def test_a_node_that_hears_a_live_leader_refuses_and_a_leader_refuses():
    cl = Cluster(3, seed=3, pre_vote=True)
    leader = cl.run_until_leader()
    follower, other = (i for i in cl.nodes if i != leader)
    for target, asker in ((leader, follower), (follower, other)):
        cl.nodes[target].step(PreVote(asker, target, 50))
        replies = of_type(cl.ready(target), PreVoteReply)
        assert [r.granted for r in replies] == [0]


def test_a_node_cut_off_and_back_does_not_depose_a_healthy_leader():
    cl = Cluster(3, seed=5, pre_vote=True)
    leader = cl.run_until_leader()
    ballot = cl.nodes[leader].ballot
    loner = next(i for i in cl.nodes if i != leader)
    cl.down = {loner}  # cut off: nothing reaches it or leaves it
    for _ in range(20 * cl.nodes[loner].config.election_ticks):  # its timer fires, again and again
        cl.nodes[loner].tick()
        drain(cl.nodes[loner])
        cl.tick()
    cl.down = set()
    assert cl.nodes[loner].counters["pre_votes"] > 3  # it kept asking...
    assert cl.nodes[loner].max_round <= ballot.round  # ...but never raised a round
    cl.tick(3 * cl.nodes[leader].config.election_ticks)  # reconnected
    assert cl.leaders() == [leader] and cl.nodes[leader].ballot == ballot
    assert cl.nodes[loner].leader == leader


def _crash_leader(seed: int) -> tuple[Cluster, int, int, int]:
    cl = Cluster(3, seed=seed, pre_vote=True)
    leader = cl.run_until_leader()
    cl.tick(2)  # the followers heard it just now
    a, b = (i for i in cl.nodes if i != leader)
    cl.down = {leader}
    return cl, leader, a, b


def test_a_lost_connection_to_the_leader_elects_within_a_few_ticks_with_pre_vote():
    """The followers' connections to a killed leader close: they campaign within a
    heartbeat interval or so, not a full election timeout, and still through pre-vote."""
    cl, leader, a, b = _crash_leader(seed=7)
    e = cl.nodes[a].config.election_ticks
    pre_votes = {i: cl.nodes[i].counters["pre_votes"] for i in (a, b)}
    for i in (a, b):
        cl.nodes[i].peer_lost(leader)
    ticks = 0
    while not cl.leaders() and ticks < e:
        cl.tick()
        ticks += 1
    assert (
        cl.leaders()
        and cl.leaders()[0] in (a, b)
        and ticks <= 2 * cl.nodes[a].config.heartbeat_ticks
    )
    assert sum(cl.nodes[i].counters["pre_votes"] - pre_votes[i] for i in (a, b)) >= 1
    assert sum(cl.nodes[i].counters["leader_links_lost"] for i in (a, b)) == 2


def test_without_the_signal_the_election_waits_for_a_timeout():
    """The same crash unnoticed by the transport (a silent leader): a full timeout first."""
    cl, _, a, _ = _crash_leader(seed=7)
    e = cl.nodes[a].config.election_ticks
    for _ in range(e - 1):
        cl.tick()
    assert cl.leaders() == []


def test_a_lost_connection_under_a_live_leader_does_not_depose_it():
    """Only one follower's link broke: the other still hears the leader and refuses the
    pre-vote, so nothing durable changes and the leader stays."""
    cl = Cluster(3, seed=11, pre_vote=True)
    leader = cl.run_until_leader()
    ballot = cl.nodes[leader].ballot
    a = next(i for i in cl.nodes if i != leader)
    cl.nodes[a].peer_lost(leader)
    cl.tick(3 * cl.nodes[a].config.heartbeat_ticks)
    assert cl.leaders() == [leader] and cl.nodes[leader].ballot == ballot
    assert cl.nodes[a].leader == leader and cl.nodes[a].max_round <= ballot.round


def test_a_lost_connection_to_a_non_leader_or_as_leader_changes_nothing():
    cl = Cluster(3, seed=13, pre_vote=True)
    leader = cl.run_until_leader()
    a, b = (i for i in cl.nodes if i != leader)
    cl.nodes[a].peer_lost(b)  # not its leader
    cl.nodes[leader].peer_lost(a)  # a leader relies on check-quorum, not on links
    assert cl.nodes[a].counters["leader_links_lost"] == 0
    assert cl.nodes[leader].counters["leader_links_lost"] == 0
    cl.tick(cl.nodes[a].config.election_ticks - 1)
    assert cl.leaders() == [leader]


def test_a_fresh_cluster_elects_within_heartbeats_once_a_quorum_is_linked():
    """At boot no node knows a leader: once a node's links reach a quorum it campaigns within
    a heartbeat interval, not after a whole election timeout (the campaign itself unchanged:
    pre-vote, then phase 1)."""
    cl = Cluster(3, seed=5, pre_vote=True)
    e = cl.nodes[1].config.election_ticks
    h = cl.nodes[1].config.heartbeat_ticks
    cl.nodes[1].peer_linked(2)
    cl.nodes[2].peer_linked(1)
    cl.nodes[3].peer_linked(1)  # node 3 alone with one link of three: 2 of 3 is a quorum too
    ticks = 0
    while not cl.leaders() and ticks < e:
        cl.tick()
        ticks += 1
    assert len(cl.leaders()) == 1 and ticks <= h
    assert sum(n.counters["quorum_linked"] for n in cl.nodes.values()) == 3
    assert sum(n.counters["pre_votes"] for n in cl.nodes.values()) >= 1


def test_links_short_of_a_quorum_or_under_a_known_leader_leave_the_timer_alone():
    five = Cluster(5, seed=3, pre_vote=True)
    five.nodes[1].peer_linked(2)  # 2 of 5: no quorum to campaign with
    five.nodes[1].peer_linked(1)  # itself: not a peer
    five.tick(five.nodes[1].config.election_ticks - 1)
    assert five.leaders() == [] and five.nodes[1].counters["quorum_linked"] == 0

    cl = Cluster(3, seed=13, pre_vote=True)
    leader = cl.run_until_leader()
    a, b = (i for i in cl.nodes if i != leader)
    cl.nodes[a].peer_lost(b)
    cl.nodes[a].peer_linked(b)  # a peer came back while a leader is known: nothing to do
    assert cl.nodes[a].counters["quorum_linked"] == 0
    cl.tick(cl.nodes[a].config.election_ticks - 1)
    assert cl.leaders() == [leader]


def test_a_restarted_node_linking_into_a_live_cluster_disturbs_nobody():
    """It knows no leader yet, so it hurries, but its pre-vote is refused by nodes that hear
    the leader: no promise or round rises anywhere, and the leader stays."""
    cl = Cluster(3, seed=17, pre_vote=True)
    leader = cl.run_until_leader()
    ballot = cl.nodes[leader].ballot
    a = next(i for i in cl.nodes if i != leader)
    node = cl.restart(a)
    for peer in cl.nodes:
        if peer != a:
            node.peer_linked(peer)
    assert node.counters["quorum_linked"] >= 1
    cl.tick(3 * node.config.heartbeat_ticks)
    assert cl.leaders() == [leader] and cl.nodes[leader].ballot == ballot
    assert node.leader == leader
