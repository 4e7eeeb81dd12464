"""Phase 2: the window, batching, forwarding, and how leaders and followers learn."""

from __future__ import annotations

from helpers import (
    accept,
    cmd,
    drain,
    elected,
    make_node,
    of_type,
    val,
    vote,
)

from paxctl.core.bugs import PlantedBugs
from paxctl.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    CatchupRequest,
    Forward,
)
from paxctl.core.node import Node
from paxctl.core.state import DurableState
from paxctl.core.types import Ballot, ChosenEntry

A, B, C = val(cmd(1, 1)), val(cmd(2, 1)), val(cmd(3, 1))


def leader(n: int = 3, **kw: object) -> Node:
    return elected(n, **kw)


def proposed_slots(messages: tuple, to: int) -> list[int]:
    return [e.slot for m in messages if isinstance(m, Accept) and m.to == to for e in m.entries]


# ------------------------------------------------------------------ window and batching


def test_leader_never_has_proposals_beyond_commit_plus_window():
    node = leader(window=3, max_batch=1)
    for i in range(10):
        node.propose(cmd(100 + i, 1))
    r = drain(node)
    assert proposed_slots(r.messages, 2) == [1, 2, 3]
    assert node.status()["pending"] == 7
    # Nothing new opens while the window is full, however often we ask.
    node.tick()
    node.tick()
    assert max(proposed_slots(drain(node).messages, 2), default=0) <= 3
    # Slot 1 chosen: exactly one more slot opens.
    node.step(Accepted(2, 1, node.ballot, (1,), 0))
    r = drain(node)
    assert node.learner.commit == 1
    assert proposed_slots(r.messages, 2) == [4]
    # Slot 3 chosen but 2 not: the commit index, not the count of chosen slots, bounds it.
    node.step(Accepted(2, 1, node.ballot, (3,), 0))
    r = drain(node)
    assert node.learner.commit == 1
    assert proposed_slots(r.messages, 2) == []
    node.step(Accepted(2, 1, node.ballot, (2,), 0))
    r = drain(node)
    assert node.learner.commit == 3
    assert proposed_slots(r.messages, 2) == [5, 6]


def test_many_proposals_before_one_ready_share_one_slot():
    node = leader()
    cmds = [cmd(200 + i, 1) for i in range(20)]
    for c in cmds:
        assert node.propose(c)
    r = drain(node)
    (acc,) = [m for m in of_type(r, Accept) if m.to == 2]
    assert [e.slot for e in acc.entries] == [1]
    assert acc.entries[0].value == tuple(cmds)


def test_batches_are_capped_at_max_batch():
    node = leader(max_batch=4)
    cmds = [cmd(300 + i, 1) for i in range(10)]
    for c in cmds:
        node.propose(c)
    (acc,) = [m for m in of_type(drain(node), Accept) if m.to == 2]
    assert [len(e.value) for e in acc.entries] == [4, 4, 2]
    assert [c for e in acc.entries for c in e.value] == cmds  # order kept


def test_a_retried_pending_command_is_queued_once():
    node = leader()
    assert node.propose(cmd(5, 1))
    assert node.propose(cmd(5, 1))
    (acc,) = [m for m in of_type(drain(node), Accept) if m.to == 2]
    assert acc.entries[0].value == (cmd(5, 1),)


# ------------------------------------------------------------------ forwarding


def test_follower_that_knows_the_leader_forwards_proposals():
    node = make_node(1)
    node.step(accept(2, 1, Ballot(1, 2)))
    drain(node)
    assert node.leader == 2
    node.propose(cmd(9, 1))
    node.propose(cmd(9, 2))
    r = drain(node)
    assert of_type(r, Forward) == [Forward(1, 2, (cmd(9, 1), cmd(9, 2)))]
    assert of_type(drain(node), Forward) == []  # forwarded once


def test_follower_without_a_leader_holds_proposals_until_it_learns_one():
    node = make_node(1)
    node.propose(cmd(9, 1))
    assert of_type(drain(node), Forward) == []
    node.step(accept(3, 1, Ballot(1, 3)))
    r = drain(node)
    assert of_type(r, Forward) == [Forward(1, 3, (cmd(9, 1),))]


def test_leader_proposes_forwarded_commands():
    node = leader()
    node.step(Forward(3, 1, (cmd(4, 1),)))
    (acc,) = [m for m in of_type(drain(node), Accept) if m.to == 3]
    assert acc.entries == (ChosenEntry(1, (cmd(4, 1),)),)


# ------------------------------------------------------------------ learning


def test_leader_learns_a_slot_when_a_majority_accepted_at_its_ballot():
    node = leader(n=5)  # quorum 3: itself, 2 and 3 promised
    node.propose(cmd(1, 1))
    drain(node)
    b = node.ballot
    node.step(Accepted(2, 1, b, (1,), 0))
    r = drain(node)
    assert not node.learner.is_chosen(1)
    assert r.chosen == () and r.committed == ()
    node.step(Accepted(4, 1, b, (1,), 0))
    r = drain(node)
    assert node.learner.is_chosen(1)
    assert r.chosen == (ChosenEntry(1, (cmd(1, 1),)),)
    assert [a.slot for a in r.committed] == [1]


def test_leader_does_not_count_accepted_from_another_ballot():
    node = leader(n=5)
    node.propose(cmd(1, 1))
    drain(node)
    b = node.ballot
    stale = Ballot(b.round - 1, 4) if b.round > 1 else Ballot(0, 4)
    node.step(Accepted(2, 1, b, (1,), 0))
    node.step(Accepted(3, 1, stale, (1,), 0))
    node.step(Accepted(4, 1, Ballot(b.round + 5, 4), (1,), 0))
    drain(node)
    assert not node.learner.is_chosen(1)
    node.step(Accepted(5, 1, b, (1,), 0))
    drain(node)
    assert node.learner.is_chosen(1)


def test_leader_does_not_count_accepted_from_non_voters_or_twice():
    node = leader(n=5)
    node.propose(cmd(1, 1))
    drain(node)
    b = node.ballot
    node.step(Accepted(2, 1, b, (1,), 0))
    node.step(Accepted(2, 1, b, (1,), 0))
    node.step(Accepted(9, 1, b, (1,), 0))
    drain(node)
    assert not node.learner.is_chosen(1)


def test_planted_count_across_ballots_is_caught():
    node = leader(n=5, planted_bugs=PlantedBugs(count_across_ballots=True))
    node.propose(cmd(1, 1))
    drain(node)
    b = node.ballot
    node.step(Accepted(2, 1, b, (1,), 0))
    node.step(Accepted(3, 1, Ballot(0, 1), (1,), 0))  # an older ballot of ours
    assert node.learner.is_chosen(1)  # what the test above forbids


def test_follower_learns_from_commit_only_slots_it_voted_at_that_ballot():
    disk = DurableState(
        promised=Ballot(2, 1),
        votes={1: vote(1, Ballot(1, 2), A), 2: vote(2, Ballot(2, 1), B)},
    )
    node = make_node(3, state=disk)
    drain(node)
    node.step(accept(1, 3, Ballot(2, 1), commit=2))
    r = drain(node)
    assert r.chosen == (ChosenEntry(2, B),)
    assert not node.learner.is_chosen(1)
    assert node.learner.commit == 0
    assert r.committed == ()
    # It lacks slot 1, so it asks the leader from its first unknown slot.
    assert of_type(r, CatchupRequest) == [CatchupRequest(3, 1, 1)]
    # Slot 1 was in fact chosen with another value than its old vote: no conflict, it learns.
    node.step(CatchupReply(1, 3, (ChosenEntry(1, C), ChosenEntry(2, B)), 2))
    r = drain(node)
    assert node.learner.commit == 2
    assert [(a.slot, a.commands) for a in r.committed] == [(1, C), (2, B)]


def test_follower_learns_entries_of_the_same_accept_up_to_its_commit():
    node = make_node(3)
    node.step(accept(1, 3, Ballot(1, 1), {1: A, 2: B}, commit=1))
    r = drain(node)
    assert node.learner.commit == 1
    assert r.chosen == (ChosenEntry(1, A),)
    assert of_type(r, Accepted) == [Accepted(3, 1, Ballot(1, 1), (1, 2), 1)]


def test_planted_count_across_ballots_makes_the_follower_learn_a_stale_vote():
    disk = DurableState(promised=Ballot(2, 1), votes={1: vote(1, Ballot(1, 2), A)})
    node = make_node(3, state=disk, planted_bugs=PlantedBugs(count_across_ballots=True))
    node.step(accept(1, 3, Ballot(2, 1), commit=1))
    assert node.learner.chosen.get(1) == A  # the stale vote was taken as chosen


def test_follower_behind_requests_catchup_and_learns_from_the_reply():
    node = make_node(2)
    node.step(accept(1, 2, Ballot(1, 1), commit=3))
    r = drain(node)
    assert of_type(r, CatchupRequest) == [CatchupRequest(2, 1, 1)]
    assert of_type(r, Accepted) == [Accepted(2, 1, Ballot(1, 1), (), 0)]
    node.step(CatchupReply(1, 2, (ChosenEntry(1, A), ChosenEntry(2, B), ChosenEntry(3, C)), 3))
    r = drain(node)
    assert node.learner.commit == 3
    assert [a.slot for a in r.committed] == [1, 2, 3]
    assert [e.slot for e in r.chosen] == [1, 2, 3]  # persisted in the same batch it is applied
    assert of_type(r, CatchupRequest) == []


def test_catchup_is_not_requested_more_than_once_per_heartbeat():
    node = make_node(2, heartbeat_ticks=3)
    node.step(accept(1, 2, Ballot(1, 1), commit=3))
    assert len(of_type(drain(node), CatchupRequest)) == 1
    node.step(accept(1, 2, Ballot(1, 1), commit=3))
    assert of_type(drain(node), CatchupRequest) == []
    requests = []
    for _ in range(3):
        node.tick()
        requests += of_type(drain(node), CatchupRequest)
    # Retried once the heartbeat interval passed; the first request went unanswered, so the
    # retry may go to any peer (a broken link to the leader must not keep a node behind).
    assert len(requests) == 1
    assert requests[0].frm == 2 and requests[0].to in (1, 3) and requests[0].from_slot == 1


def test_catchup_request_is_answered_with_a_bounded_run_of_chosen_values():
    chosen = {s: val(cmd(s, 1)) for s in range(1, 9)}
    node = make_node(1, state=DurableState(chosen=chosen), max_entries=3)
    drain(node)
    node.step(CatchupRequest(2, 1, 4))
    (reply,) = of_type(drain(node), CatchupReply)
    assert reply.to == 2
    assert reply.commit == 8
    assert reply.entries == tuple(ChosenEntry(s, chosen[s]) for s in (4, 5, 6))


def test_catchup_request_beyond_what_is_known_gets_no_reply():
    node = make_node(1, state=DurableState(chosen={1: A}))
    drain(node)
    node.step(CatchupRequest(2, 1, 2))
    assert of_type(drain(node), CatchupReply) == []


def test_proposing_an_applied_command_again_sends_it_on_for_the_state_machine_to_answer():
    """The core keeps no exactly-once table: a retry of an applied command goes to the log
    again, and the state machine answers it from its own table (the server asks the machine
    first, so it proposes such a retry only when its replica lags)."""
    node = make_node(2, state=DurableState(chosen={1: A}))
    r = drain(node)
    assert [a.slot for a in r.committed] == [1]
    assert node.propose(A[0])
    node.step(accept(1, 2, Ballot(1, 1)))
    assert [f.commands for f in of_type(drain(node), Forward)] == [(A[0],)]


def test_catchup_request_from_slot_zero_does_not_crash_the_node():
    # The codec accepts any non-negative slot, so a peer may send from_slot=0; a node must
    # answer (or ignore) it, never crash on it.
    node = make_node(1, state=DurableState(chosen={1: A, 2: B}))
    drain(node)
    node.step(CatchupRequest(2, 1, 0))
    replies = of_type(drain(node), CatchupReply)
    assert all(e.slot >= 1 for r in replies for e in r.entries)


def test_a_catchup_reply_that_did_not_help_sends_the_next_request_to_the_leader():
    """Regression (sim seed 455, 5 nodes): two laggards missing the same slot kept asking
    each other forever instead of the leader."""
    node = make_node(3, n=5)
    node.step(accept(1, 3, Ballot(1, 1), commit=5))  # the leader says slots up to 5 are chosen
    drain(node)
    other = 1
    while other == 1:  # the leader does not answer: after a heartbeat the node asks anyone
        node.tick()
        other = next((r.to for r in of_type(drain(node), CatchupRequest)), 1)
    node.step(CatchupReply(other, 3, (), 0))  # another laggard: nothing new
    requests = of_type(drain(node), CatchupRequest)
    assert [r.to for r in requests] == [1]
