"""Leader election: timeouts, stepping down, leader stickiness and check-quorum."""

from __future__ import annotations

import pytest
from helpers import (
    accept,
    cmd,
    drain,
    elected,
    make_node,
    of_type,
    prepare,
    tick_until_campaign,
)

from paxctl.core.messages import Accept, Accepted, Nack, Prepare, Promise
from paxctl.core.node import Node, Role
from paxctl.core.types import Ballot

E = 10


def leader(n: int = 3, **kw: object) -> Node:
    return elected(n, election_ticks=E, **kw)


def test_follower_without_leader_campaigns_within_e_to_2e_ticks():
    waits = set()
    for seed in range(60):
        node = make_node(1, seed=seed, election_ticks=E)
        for _ in range(E - 1):
            node.tick()
            assert node.role is Role.FOLLOWER
        waits.add(E - 1 + tick_until_campaign(node, limit=E))
    assert min(waits) >= E
    assert max(waits) < 2 * E
    assert len(waits) > 3  # randomized, so that candidates do not collide forever


def test_campaign_sends_prepare_to_every_peer():
    node = make_node(2, n=5)
    tick_until_campaign(node)
    r = drain(node)
    assert sorted(m.to for m in of_type(r, Prepare)) == [1, 3, 4, 5]
    assert node.role is Role.CANDIDATE
    assert node.leader is None


def test_hearing_the_leader_resets_the_election_timer():
    node = make_node(1, election_ticks=E)
    for _ in range(E - 1):
        node.tick()
    node.step(accept(2, 1, Ballot(1, 2)))
    drain(node)
    for _ in range(E - 1):
        node.tick()
        assert node.role is Role.FOLLOWER
    waited = E - 1 + tick_until_campaign(node, limit=E + 1)
    assert E <= waited < 2 * E


def test_nack_with_a_higher_ballot_makes_a_candidate_step_down():
    node = make_node(1, election_ticks=E)
    tick_until_campaign(node)
    drain(node)
    mine = node.ballot
    node.step(Nack(2, 1, mine, Ballot(mine.round + 3, 3)))
    assert node.role is Role.FOLLOWER
    assert node.leader is None
    tick_until_campaign(node)
    assert node.ballot.round > mine.round + 3


def test_nack_with_a_higher_ballot_makes_a_leader_step_down():
    node = leader()
    node.step(Nack(3, 1, node.ballot, Ballot(node.ballot.round + 1, 3)))
    assert node.role is Role.FOLLOWER
    assert node.leader is None


def test_nack_for_an_old_ballot_is_ignored():
    node = leader()
    node.step(Nack(3, 1, Ballot(0, 1), Ballot(node.ballot.round, 3)))
    assert node.role is Role.LEADER


def test_candidate_steps_down_for_a_higher_prepare():
    node = make_node(1)
    tick_until_campaign(node)
    drain(node)
    higher = Ballot(node.ballot.round + 1, 2)
    node.step(prepare(2, 1, higher))
    r = drain(node)
    assert node.role is Role.FOLLOWER
    assert [m.ballot for m in of_type(r, Promise)] == [higher]


def test_candidate_steps_down_for_an_accept_of_a_higher_ballot():
    node = make_node(1)
    tick_until_campaign(node)
    drain(node)
    node.step(accept(3, 1, Ballot(node.ballot.round + 1, 3)))
    assert node.role is Role.FOLLOWER
    assert node.leader == 3


def test_lower_prepare_is_nacked_with_the_promise():
    node = make_node(1)
    node.step(prepare(2, 1, Ballot(5, 2)))
    drain(node)
    node.step(prepare(3, 1, Ballot(4, 3)))
    r = drain(node)
    assert of_type(r, Nack) == [Nack(1, 3, Ballot(4, 3), Ballot(5, 2))]
    assert of_type(r, Promise) == []
    assert r.hard_state is None


def test_lower_accept_is_nacked_and_not_voted():
    node = make_node(1)
    node.step(prepare(2, 1, Ballot(5, 2)))
    drain(node)
    node.step(accept(3, 1, Ballot(4, 3), {1: ()}))
    r = drain(node)
    assert of_type(r, Nack) == [Nack(1, 3, Ballot(4, 3), Ballot(5, 2))]
    assert of_type(r, Accepted) == []
    assert r.votes == ()


def test_follower_that_heard_a_live_leader_ignores_another_nodes_prepare():
    node = make_node(1, election_ticks=E)
    node.step(accept(2, 1, Ballot(1, 2)))
    drain(node)
    for _ in range(E - 1):
        node.tick()
    drain(node)
    node.step(prepare(3, 1, Ballot(7, 3)))
    r = drain(node)
    assert of_type(r, Promise) == []
    assert node.acceptor.promised == Ballot(1, 2)
    assert r.hard_state is None
    assert node.leader == 2
    # Once the leader has been silent for election_ticks, the same Prepare is promised.
    node.tick()
    node.step(prepare(3, 1, Ballot(7, 3)))
    r = drain(node)
    assert [m.ballot for m in of_type(r, Promise)] == [Ballot(7, 3)]


def test_follower_answers_a_prepare_from_its_own_leader():
    node = make_node(1, election_ticks=E)
    node.step(accept(2, 1, Ballot(1, 2)))
    drain(node)
    node.step(prepare(2, 1, Ballot(2, 2)))
    assert [m.ballot for m in of_type(drain(node), Promise)] == [Ballot(2, 2)]


def test_leader_ignores_prepares_from_others():
    node = leader()
    node.step(prepare(3, 1, Ballot(node.ballot.round + 4, 3)))
    r = drain(node)
    assert of_type(r, Promise) == []
    assert node.role is Role.LEADER


def test_leader_sends_heartbeats_every_heartbeat_ticks():
    node = leader(heartbeat_ticks=3)
    beats = []
    for _ in range(6):
        node.tick()
        beats.append(sorted(m.to for m in of_type(drain(node), Accept)))
    assert beats == [[], [], [2, 3], [], [], [2, 3]]


def test_leader_retransmits_unacknowledged_proposals_with_heartbeats():
    node = leader(n=5, heartbeat_ticks=2)
    node.propose(cmd(1, 1))
    drain(node)
    node.step(Accepted(2, 1, node.ballot, (1,), 0))
    drain(node)
    assert not node.learner.is_chosen(1)
    node.tick()
    node.tick()
    by_peer = {m.to: m.entries for m in of_type(drain(node), Accept)}
    assert by_peer[2] == ()  # 2 voted already: a bare heartbeat
    for p in (3, 4, 5):  # the others did not: the proposal again
        assert [e.slot for e in by_peer[p]] == [1]


def test_leader_that_hears_from_no_quorum_steps_down_after_election_ticks():
    node = leader()
    for _ in range(E - 1):
        node.tick()
        drain(node)
    assert node.role is Role.LEADER
    node.tick()
    drain(node)
    assert node.role is Role.FOLLOWER
    assert node.leader is None


@pytest.mark.parametrize("n", [3, 5])
def test_leader_that_hears_from_a_quorum_stays(n):
    node = leader(n=n)
    peers = list(range(2, n // 2 + 2))  # just enough for a majority with itself
    for _ in range(5 * E):
        node.tick()
        for p in peers:
            node.step(Accepted(p, 1, node.ballot, (), 0))
        drain(node)
    assert node.role is Role.LEADER


def test_leader_that_hears_from_a_minority_steps_down():
    node = leader(n=5)
    ticks = 0
    while node.role is Role.LEADER and ticks < 2 * E:
        node.tick()
        ticks += 1
        node.step(Accepted(2, 1, node.ballot, (), 0))  # itself and 2: two of five
        drain(node)
    assert node.role is Role.FOLLOWER
    assert ticks == E


def test_leader_steps_down_election_ticks_after_its_quorum_goes_silent():
    node = leader()
    for _ in range(3 * E):
        node.tick()
        node.step(Accepted(2, 1, node.ballot, (), 0))
        drain(node)
    assert node.role is Role.LEADER
    silent = 0
    while node.role is Role.LEADER and silent < 2 * E:
        node.tick()
        silent += 1
        drain(node)
    assert node.role is Role.FOLLOWER
    assert silent == E


def test_failed_campaigns_back_off_the_election_timeout():
    node = make_node(1, seed=5, election_ticks=E, max_backoff=8)
    waits = []
    for _ in range(4):
        waits.append(tick_until_campaign(node, limit=20 * E))
        drain(node)  # nobody answers: the campaign fails by timing out
    assert all(w >= E for w in waits)
    assert max(waits[1:]) >= 2 * E  # later campaigns may wait beyond 2E ...
    assert all(w < 9 * E for w in waits)  # ... but never beyond the max backoff


def test_follower_that_heard_a_leader_campaigns_within_e_to_2e_after_it_goes_silent():
    # Hearing a leader ends a run of failed campaigns (the node resets its count), so the next
    # election timeout is drawn from [E, 2E) again, not from the stretched back-off range.
    waits = {}
    for seed in range(12):
        node = make_node(1, seed=seed, election_ticks=E, max_backoff=8)
        for _ in range(3):
            tick_until_campaign(node, limit=20 * E)
            drain(node)
            node.step(Nack(2, 1, node.ballot, Ballot(node.ballot.round + 1, 2)))
            drain(node)
            assert node.role is Role.FOLLOWER
        node.step(accept(3, 1, Ballot(node.max_round + 1, 3)))  # a leader is elected and heard
        drain(node)
        assert node.leader == 3
        waits[seed] = tick_until_campaign(node, limit=20 * E)  # ... then it goes silent
    late = {seed: w for seed, w in waits.items() if not E <= w < 2 * E}
    assert not late, f"ticks of silence before campaigning, by seed (E={E}): {late}"
