"""The acceptor's two rules (Paxos Made Simple, 2.2) and its change tracking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from paxctl.core.acceptor import Acceptor
from paxctl.core.types import ZERO_BALLOT, AcceptedEntry, Ballot, ChosenEntry, Command

A = (Command(1, 1, b"a"),)
B = (Command(2, 1, b"b"),)


def test_fresh_acceptor_promises_any_ballot():
    acc = Acceptor()
    assert acc.promised == ZERO_BALLOT
    assert acc.prepare(Ballot(1, 1))
    assert acc.promised == Ballot(1, 1)


def test_promise_only_ballots_at_least_the_promised_one():
    acc = Acceptor()
    assert acc.prepare(Ballot(5, 2))
    acc.take_changes()
    assert not acc.prepare(Ballot(4, 9))  # lower round
    assert not acc.prepare(Ballot(5, 1))  # same round, lower node
    assert acc.promised == Ballot(5, 2)
    assert acc.take_changes() == (False, [])
    assert acc.prepare(Ballot(5, 2))  # equal: a retransmitted prepare is promised again
    assert acc.take_changes() == (False, [])  # ... with nothing new to persist
    assert acc.prepare(Ballot(5, 3))
    assert acc.promised == Ballot(5, 3)
    assert acc.take_changes() == (True, [])


def test_accept_only_at_ballots_at_least_the_promised_one():
    acc = Acceptor(promised=Ballot(3, 1))
    assert acc.accept(Ballot(2, 5), (ChosenEntry(1, A),)) is None
    assert acc.votes == {}
    assert acc.take_changes() == (False, [])
    assert acc.accept(Ballot(3, 1), (ChosenEntry(1, A),)) == (1,)
    assert acc.votes[1] == AcceptedEntry(1, Ballot(3, 1), A)


def test_higher_accept_raises_the_promise():
    acc = Acceptor(promised=Ballot(3, 1))
    assert acc.accept(Ballot(4, 2), (ChosenEntry(1, A),)) == (1,)
    assert acc.promised == Ballot(4, 2)
    changed, votes = acc.take_changes()
    assert changed
    assert votes == [AcceptedEntry(1, Ballot(4, 2), A)]
    # Having accepted at 4.2, a prepare of 4.1 (or an accept at 3.1) is refused.
    assert not acc.prepare(Ballot(4, 1))
    assert acc.accept(Ballot(3, 1), (ChosenEntry(2, B),)) is None


def test_heartbeat_accept_raises_the_promise_without_votes():
    acc = Acceptor()
    assert acc.accept(Ballot(2, 2), ()) == ()
    assert acc.take_changes() == (True, [])


def test_duplicate_accept_produces_no_new_vote():
    acc = Acceptor()
    entries = (ChosenEntry(1, A), ChosenEntry(2, B))
    assert acc.accept(Ballot(1, 1), entries) is not None
    assert len(acc.take_changes()[1]) == 2
    assert acc.accept(Ballot(1, 1), entries) is not None
    assert acc.take_changes() == (False, [])


def test_revote_at_higher_ballot_is_a_new_vote():
    acc = Acceptor()
    acc.accept(Ballot(1, 1), (ChosenEntry(1, A),))
    acc.take_changes()
    acc.accept(Ballot(2, 2), (ChosenEntry(1, A),))
    assert acc.take_changes() == (True, [AcceptedEntry(1, Ballot(2, 2), A)])
    acc.accept(Ballot(3, 1), (ChosenEntry(1, B),))
    assert acc.votes[1] == AcceptedEntry(1, Ballot(3, 1), B)


def test_take_changes_resets():
    acc = Acceptor()
    acc.prepare(Ballot(1, 1))
    acc.accept(Ballot(1, 1), (ChosenEntry(3, A),))
    assert acc.take_changes() == (True, [AcceptedEntry(3, Ballot(1, 1), A)])
    assert acc.take_changes() == (False, [])


def test_votes_from_is_in_slot_order_and_starts_at_slot():
    acc = Acceptor()
    acc.accept(Ballot(1, 1), (ChosenEntry(9, A), ChosenEntry(2, B)))
    acc.accept(Ballot(2, 1), (ChosenEntry(5, A), ChosenEntry(1, B)))
    assert [v.slot for v in acc.votes_from(1)] == [1, 2, 5, 9]
    assert [v.slot for v in acc.votes_from(3)] == [5, 9]
    assert [v.slot for v in acc.votes_from(5)] == [5, 9]
    assert acc.votes_from(10) == ()
    assert acc.votes_from(5)[0] == AcceptedEntry(5, Ballot(2, 1), A)


def test_restored_acceptor_keeps_its_promise_and_votes():
    votes = {4: AcceptedEntry(4, Ballot(2, 3), A)}
    acc = Acceptor(Ballot(6, 1), votes)
    votes.clear()  # the acceptor keeps its own copy
    assert acc.votes_from(1) == (AcceptedEntry(4, Ballot(2, 3), A),)
    assert not acc.prepare(Ballot(5, 9))
    assert acc.take_changes() == (False, [])


ballots = st.builds(Ballot, st.integers(0, 5), st.integers(0, 3))


@given(st.lists(st.tuples(st.booleans(), ballots, st.integers(1, 4)), max_size=30))
def test_promise_never_decreases_and_every_vote_is_at_or_below_it(ops):
    acc = Acceptor()
    for is_prepare, ballot, slot in ops:
        before = acc.promised
        if is_prepare:
            ok = acc.prepare(ballot)
        else:
            ok = acc.accept(ballot, (ChosenEntry(slot, A),)) is not None
        assert ok == (ballot >= before)
        assert acc.promised == max(before, ballot)
        assert all(v.ballot <= acc.promised for v in acc.votes.values())
