"""P1 (persist before send) and P2 (ballots are never reused), one test per rule."""

from __future__ import annotations

import itertools
import random

import pytest
from helpers import (
    Cluster,
    accept,
    cmd,
    drain,
    justification_errors,
    make_node,
    of_type,
    prepare,
    tick_until_campaign,
    val,
    vote,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from paxctl.core.bugs import PlantedBugs
from paxctl.core.messages import Accepted, Nack, Prepare, Promise
from paxctl.core.node import Role
from paxctl.core.state import DurableState
from paxctl.core.types import Ballot

A = val(cmd(1, 1))
B = val(cmd(2, 1))

# ------------------------------------------------------------------ P1: persist before send


def test_promise_ships_with_the_hard_state_that_justifies_it():
    node = make_node(1)
    node.step(prepare(2, 1, Ballot(3, 2)))
    r = drain(node)
    (p,) = of_type(r, Promise)
    assert p.ballot == Ballot(3, 2)
    assert r.hard_state is not None
    assert r.hard_state.promised >= p.ballot
    # The next batch does not carry it again: it was in the same batch as the reply.
    assert drain(node).hard_state is None


def test_accepted_ships_with_the_votes_that_justify_it():
    node = make_node(1)
    node.step(accept(2, 1, Ballot(1, 2), {1: A, 2: B}))
    r = drain(node)
    (a,) = of_type(r, Accepted)
    assert a.slots == (1, 2)
    assert set(r.votes) == {vote(1, Ballot(1, 2), A), vote(2, Ballot(1, 2), B)}
    assert r.hard_state is not None
    assert r.hard_state.promised == Ballot(1, 2)
    assert drain(node).votes == ()


def test_changes_made_between_ready_and_advance_go_out_with_their_replies():
    node = make_node(1)
    node.step(prepare(2, 1, Ballot(1, 2)))
    first = node.ready()
    node.step(accept(2, 1, Ballot(2, 2), {1: A}))  # arrives while the driver persists
    node.advance()
    second = node.ready()
    node.advance()
    assert [type(m) for m in first.messages] == [Promise]
    assert first.votes == ()
    assert len(of_type(second, Accepted)) == 1
    assert vote(1, Ballot(2, 2), A) in second.votes
    assert second.hard_state is not None and second.hard_state.promised == Ballot(2, 2)


def test_ready_twice_without_advance_is_refused():
    node = make_node(1)
    node.step(prepare(2, 1, Ballot(3, 2)))
    node.ready()
    with pytest.raises(RuntimeError):
        node.ready()


ops = st.lists(
    st.tuples(
        st.sampled_from(["prepare", "accept", "tick"]),
        st.integers(1, 4),  # round
        st.integers(2, 3),  # sender (and ballot node)
        st.dictionaries(st.integers(1, 4), st.sampled_from([A, B, ()]), max_size=3),
    ),
    max_size=25,
)


@given(ops, st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_every_reply_is_justified_by_state_persisted_no_later(script, seed):
    node = make_node(1, seed=seed)
    disk = DurableState()
    for kind, rnd, frm, entries in script:
        if kind == "prepare":
            node.step(prepare(frm, 1, Ballot(rnd, frm), 1))
        elif kind == "accept":
            node.step(accept(frm, 1, Ballot(rnd, frm), entries))
        else:
            node.tick()
        r = node.ready()
        assert not justification_errors(disk, r)
        disk.persist(r)
        node.advance()


def test_planted_reply_before_persist_is_caught_by_the_p1_check():
    node = make_node(1, planted_bugs=PlantedBugs(reply_before_persist=True))
    node.step(prepare(2, 1, Ballot(3, 2)))
    r = node.ready()
    assert justification_errors(DurableState(), r)


# ------------------------------------------------------------------ P2: fresh ballots


def test_campaign_ballot_is_above_every_promised_round():
    node = make_node(1)
    node.step(prepare(3, 1, Ballot(7, 3)))
    drain(node)
    tick_until_campaign(node)
    assert node.ballot == Ballot(8, 1)


def test_campaign_ballot_is_above_every_accepted_round():
    node = make_node(1)
    node.step(accept(2, 1, Ballot(9, 2)))
    drain(node)
    tick_until_campaign(node)
    assert node.ballot.round == 10


def test_campaign_ballot_is_above_a_round_learned_from_a_nack():
    node = make_node(1)
    tick_until_campaign(node)
    drain(node)
    mine = node.ballot
    node.step(Nack(2, 1, mine, Ballot(12, 3)))
    r = drain(node)
    assert r.hard_state is not None and r.hard_state.max_round >= 12  # persisted at once
    tick_until_campaign(node)
    assert node.ballot.round == 13


def test_max_round_is_persisted_in_the_same_batch_as_the_prepares():
    node = make_node(1, n=5)
    node.step(prepare(4, 1, Ballot(2, 4)))
    drain(node)
    tick_until_campaign(node)
    r = drain(node)
    prepares = of_type(r, Prepare)
    assert sorted(p.to for p in prepares) == [2, 3, 4, 5]
    assert {p.ballot for p in prepares} == {Ballot(3, 1)}
    assert r.hard_state is not None
    assert r.hard_state.max_round == 3
    assert r.hard_state.promised == Ballot(3, 1)  # the candidate promised itself, too


@pytest.mark.parametrize("seed", range(5))
def test_restarted_node_never_reissues_a_ballot(seed):
    rng = random.Random(seed)
    disk = DurableState()
    issued: list[Ballot] = []
    for _ in range(12):
        node = make_node(1, seed=rng.randrange(1000), state=disk.copy())
        if rng.random() < 0.3:  # sometimes it heard of a higher ballot before campaigning
            seen = Ballot(max((b.round for b in issued), default=0) + rng.randint(0, 3), 2)
            node.step(prepare(2, 1, seen))
            disk.persist(drain(node))
        tick_until_campaign(node)
        r = node.ready()
        disk.persist(r)  # persisted ... then sent, then the node crashes
        prepares = of_type(r, Prepare)
        assert prepares
        issued.append(prepares[0].ballot)
        if rng.random() < 0.5:  # a campaign whose batch never reached the disk never went out
            tick_until_campaign(node)
            node.advance()
    assert all(a < b for a, b in itertools.pairwise(issued)), issued
    assert len({b.round for b in issued}) == len(issued)


def test_restarted_candidate_goes_above_its_own_last_round_not_just_its_promise():
    node = make_node(1)
    tick_until_campaign(node)
    disk = DurableState()
    disk.persist(drain(node))
    first = node.ballot
    # Restore a disk whose promise is lower than the round issued (e.g. promised to nobody else).
    disk.promised = Ballot(0, 0)
    node = make_node(1, seed=3, state=disk)
    tick_until_campaign(node)
    assert node.ballot.round > first.round


def test_every_campaign_in_a_cluster_uses_a_new_ballot():
    cl = Cluster(3, seed=4)
    cl.elect(1)
    cl.down.add(1)
    second = cl.run_until_leader()
    cl.down.discard(1)
    cl.restart(1)
    cl.down.add(second)
    third = cl.run_until_leader()
    cl.down.discard(second)
    cl.restart(second)
    cl.down.add(third)
    fourth = cl.run_until_leader()
    ballots = [m.ballot for m in cl.sent if isinstance(m, Prepare)]
    by_ballot: dict[Ballot, set[int]] = {}
    for m in cl.sent:
        if isinstance(m, Prepare):
            by_ballot.setdefault(m.ballot, set()).add(m.frm)
    assert all(len(senders) == 1 for senders in by_ballot.values())
    assert len(set(ballots)) >= 3
    assert cl.nodes[fourth].role is Role.LEADER
