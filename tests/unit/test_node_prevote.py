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
