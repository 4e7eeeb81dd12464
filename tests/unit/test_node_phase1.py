"""P3 (one phase 1 for all slots, adopt the highest-ballot vote) and P4 (no-ops fill holes)."""

from __future__ import annotations

from helpers import cmd, drain, make_node, of_type, promise, tick_until_campaign, val, vote

from paxctl.core.bugs import PlantedBugs
from paxctl.core.membership import ALPHA
from paxctl.core.messages import Accept, Accepted, CatchupRequest, Prepare
from paxctl.core.node import Node, Role
from paxctl.core.state import DurableState
from paxctl.core.types import NOOP, Ballot

X, Y = val(cmd(10, 1)), val(cmd(11, 1))
A, B, C, D, E, F = (val(cmd(i, 1)) for i in range(1, 7))


def five_node_candidate(**kw: object) -> tuple[Node, Ballot]:
    """Node 1 of five: slots 1-2 chosen, its own vote in slot 3, promised 4.5; now campaigning."""
    disk = DurableState(
        promised=Ballot(4, 5),
        max_round=2,
        votes={3: vote(3, Ballot(2, 4), A)},
        chosen={1: X, 2: Y},
    )
    node = make_node(1, n=5, state=disk, **kw)
    drain(node)
    tick_until_campaign(node)
    return node, node.ballot


def accepts_by_peer(messages: tuple) -> dict[int, dict[int, tuple]]:
    out: dict[int, dict[int, tuple]] = {}
    for m in messages:
        if isinstance(m, Accept):
            out.setdefault(m.to, {}).update({e.slot: e.value for e in m.entries})
    return out


def test_new_leader_prepares_once_per_peer_from_its_first_unchosen_slot():
    node, ballot = five_node_candidate()
    assert ballot == Ballot(5, 1)
    r = drain(node)
    prepares = of_type(r, Prepare)
    assert sorted(p.to for p in prepares) == [2, 3, 4, 5]  # one each, not one per slot
    assert {p.from_slot for p in prepares} == {3}  # commit + 1
    assert {p.ballot for p in prepares} == {ballot}


def test_candidate_retransmits_prepare_only_to_peers_that_have_not_promised():
    node, ballot = five_node_candidate()
    drain(node)
    node.step(promise(2, 1, ballot, 3))
    drain(node)
    again = []
    for _ in range(node.config.heartbeat_ticks):
        node.tick()
        again += of_type(drain(node), Prepare)
    assert node.role is Role.CANDIDATE
    assert sorted(p.to for p in again) == [3, 4, 5]
    assert {(p.ballot, p.from_slot) for p in again} == {(ballot, 3)}


def test_leader_sends_no_prepare_after_winning():
    node, ballot = five_node_candidate()
    drain(node)
    node.step(promise(2, 1, ballot, 3))
    node.step(promise(3, 1, ballot, 3))
    assert node.role is Role.LEADER
    later = []
    for _ in range(3 * node.config.heartbeat_ticks):
        node.tick()
        later += of_type(drain(node), Prepare)
    assert later == []


def test_minority_of_promises_does_not_make_a_leader():
    node, ballot = five_node_candidate()
    drain(node)
    node.step(promise(2, 1, ballot, 3))
    assert node.role is Role.CANDIDATE
    node.step(promise(2, 1, ballot, 3))  # a duplicate counts once
    assert node.role is Role.CANDIDATE
    node.step(promise(3, 1, Ballot(4, 1), 3))  # a promise for another ballot counts not at all
    assert node.role is Role.CANDIDATE


def test_new_leader_adopts_the_value_voted_with_the_highest_ballot_in_each_slot():
    node, ballot = five_node_candidate()
    drain(node)
    # Own vote: slot 3 = A at 2.4.
    node.step(promise(2, 1, ballot, 3, (vote(3, Ballot(4, 5), B), vote(4, Ballot(1, 2), C))))
    node.step(promise(3, 1, ballot, 3, (vote(3, Ballot(1, 1), F), vote(4, Ballot(3, 3), E))))
    assert node.role is Role.LEADER
    r = drain(node)
    per_peer = accepts_by_peer(r.messages)
    assert sorted(per_peer) == [2, 3, 4, 5]
    for entries in per_peer.values():
        assert entries == {3: B, 4: E}
    assert {m.ballot for m in of_type(r, Accept)} == {ballot}
    assert {m.commit for m in of_type(r, Accept)} == {2}
    # The leader voted for its own proposals, persisted in this same batch.
    assert {(v.slot, v.ballot, v.value) for v in r.votes} == {(3, ballot, B), (4, ballot, E)}


def test_adoption_considers_the_candidates_own_vote():
    node, ballot = five_node_candidate()
    drain(node)
    node.step(promise(2, 1, ballot, 3, (vote(3, Ballot(1, 2), C),)))
    node.step(promise(3, 1, ballot, 3))
    r = drain(node)
    assert accepts_by_peer(r.messages)[2] == {3: A}  # 2.4 (own) beats 1.2


def test_planted_skip_adoption_breaks_the_adoption_rule():
    node, ballot = five_node_candidate(planted_bugs=PlantedBugs(skip_adoption=True))
    drain(node)
    node.step(promise(2, 1, ballot, 3, (vote(3, Ballot(4, 5), B),)))
    node.step(promise(3, 1, ballot, 3))
    proposed = accepts_by_peer(drain(node).messages).get(2, {})
    assert proposed.get(3) != B  # the rule the test above checks is what this bug breaks


def test_holes_below_the_highest_voted_slot_are_filled_with_noops():
    node, ballot = five_node_candidate()
    drain(node)
    node.step(promise(2, 1, ballot, 3, (vote(7, Ballot(1, 2), D),)))
    node.step(promise(3, 1, ballot, 3))
    r = drain(node)
    assert accepts_by_peer(r.messages)[4] == {3: A, 4: NOOP, 5: NOOP, 6: NOOP, 7: D}
    # New commands go after the adopted slots.
    node.propose(cmd(50, 1))
    r = drain(node)
    assert accepts_by_peer(r.messages)[4] == {8: val(cmd(50, 1))}


def test_slots_already_known_chosen_are_not_proposed_again():
    disk = DurableState(chosen={1: X, 3: Y, 4: X})  # a hole at 2
    node = make_node(1, state=disk)
    drain(node)
    tick_until_campaign(node)
    r = drain(node)
    assert {p.from_slot for p in of_type(r, Prepare)} == {2}
    node.step(promise(2, 1, node.ballot, 2))
    assert node.role is Role.LEADER
    r = drain(node)
    assert accepts_by_peer(r.messages)[3] == {2: NOOP}
    node.propose(cmd(60, 1))
    assert accepts_by_peer(drain(node).messages)[3] == {5: val(cmd(60, 1))}


def test_leader_with_nothing_to_recover_sends_an_empty_accept_as_announcement():
    node = make_node(1)
    tick_until_campaign(node)
    drain(node)
    node.step(promise(2, 1, node.ballot, 1))
    r = drain(node)
    accepts = of_type(r, Accept)
    assert sorted(a.to for a in accepts) == [2, 3]
    assert all(a.entries == () for a in accepts)


def test_slots_adopted_beyond_the_window_get_the_leaders_own_vote_once_released():
    """Slots adopted in phase 1 beyond commit + ALPHA wait until the commit index moves up. If
    a new batch of commands went out first, the release used to skip them: peers got them by
    retransmission, but the leader never voted for them itself (retransmissions go to peers),
    so a cluster whose quorum needed the leader's vote stalled (``paxctl sim --reconfig --seed
    156``)."""
    node = make_node(1, state=DurableState(max_round=2))
    tick_until_campaign(node)
    drain(node)
    ballot = node.ballot
    held = range(ALPHA + 1, ALPHA + 4)
    older = tuple(vote(s, Ballot(2, 2), val(cmd(70, s))) for s in range(1, held[-1] + 1))
    node.step(promise(2, 1, ballot, 1, older))
    assert node.role is Role.LEADER
    first = accepts_by_peer(drain(node).messages)[2]
    assert sorted(first) == list(range(1, ALPHA + 1))  # the rest is held back
    node.propose(cmd(80, 1))  # batched in the same pass as the commit moving up
    node.step(Accepted(2, 1, ballot, tuple(range(1, ALPHA + 1)), 0))
    r = drain(node)
    assert node.learner.commit == ALPHA
    assert set(held) <= set(accepts_by_peer(r.messages)[2])
    own = node.acceptor.votes
    assert all(s in own and own[s].ballot == ballot for s in held), sorted(own)


def test_a_candidate_asks_an_acceptor_whose_promise_shows_more_chosen_for_the_log():
    """Found by the reconfiguration simulator (seed 292 once batched reads, early Accepts and
    the failover changes met): a voter promoted to replace one that then stopped could never
    win the older configuration's majority it still needed for the slots before its own; the
    one acceptor left promised again and again, showing a commit far above the candidate's,
    and nobody asked it for those slots."""
    node = make_node(1)
    tick_until_campaign(node)
    drain(node)
    node.step(promise(2, 1, node.ballot, 1, commit=5))
    asks = of_type(drain(node), CatchupRequest)
    assert [(m.to, m.from_slot) for m in asks] == [(2, 1)]
