"""The learner: chosen slots, catch-up entries, and the hand-off of slots in order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paxctl.core.learner import Learner, SafetyViolation
from paxctl.core.types import NOOP, Applied, ChosenEntry, Command


def c(client: int, seq: int) -> Command:
    return Command(client, seq, f"{client}.{seq}".encode())


def test_commit_advances_only_over_contiguous_chosen_slots():
    lrn = Learner()
    assert lrn.commit == 0
    assert lrn.learn(2, (c(1, 2),))
    assert lrn.commit == 0
    assert lrn.learn(3, NOOP)
    assert lrn.commit == 0
    assert lrn.learn(1, (c(1, 1),))
    assert lrn.commit == 3
    assert lrn.learn(5, NOOP)
    assert lrn.commit == 3


def test_restored_learner_computes_commit_from_chosen():
    lrn = Learner({1: NOOP, 2: NOOP, 4: NOOP})
    assert lrn.commit == 2
    assert lrn.take_new_chosen() == []  # already on disk


def test_learning_a_known_value_again_is_a_no_op():
    lrn = Learner()
    assert lrn.learn(1, (c(1, 1),))
    lrn.take_new_chosen()
    assert not lrn.learn(1, (c(1, 1),))
    assert lrn.take_new_chosen() == []


@pytest.mark.parametrize(
    ("first", "second"),
    [((c(1, 1),), (c(1, 2),)), (NOOP, (c(1, 1),)), ((c(1, 1),), NOOP)],
)
def test_learning_a_conflicting_value_raises_safety_violation(first, second):
    lrn = Learner()
    lrn.learn(4, first)
    with pytest.raises(SafetyViolation):
        lrn.learn(4, second)
    assert lrn.chosen[4] == first


def test_take_committed_yields_in_slot_order_exactly_once():
    lrn = Learner()
    lrn.learn(3, (c(1, 3),))
    lrn.learn(1, (c(1, 1),))
    assert [a.slot for a in lrn.take_committed()] == [1]
    lrn.learn(2, (c(1, 2),))
    out = lrn.take_committed()
    assert [a.slot for a in out] == [2, 3]
    assert out[1] == Applied(3, (c(1, 3),))
    assert lrn.take_committed() == []
    assert lrn.applied == 3


def test_take_new_chosen_reports_each_learned_slot_once():
    lrn = Learner()
    lrn.learn(2, NOOP)
    lrn.learn(1, (c(1, 1),))
    assert lrn.take_new_chosen() == [ChosenEntry(2, NOOP), ChosenEntry(1, (c(1, 1),))]
    assert lrn.take_new_chosen() == []


def test_retry_chosen_in_a_later_slot_is_handed_on_for_the_state_machine_to_answer():
    """The core keeps no exactly-once table: the state machine filters retries in log order
    (tests/statemachine/test_exactly_once.py)."""
    lrn = Learner()
    lrn.learn(1, (c(7, 1), c(8, 1)))
    lrn.learn(2, (c(7, 1), c(7, 2)))  # client 7 retried seq 1 and it was chosen again
    first, second = lrn.take_committed()
    assert first == Applied(1, (c(7, 1), c(8, 1)))
    assert second == Applied(2, (c(7, 1), c(7, 2)))


def test_duplicate_within_one_slot_is_handed_on_as_chosen():
    lrn = Learner()
    lrn.learn(1, (c(7, 1), c(7, 1)))
    (only,) = lrn.take_committed()
    assert only.commands == (c(7, 1), c(7, 1))


def test_entries_from_returns_contiguous_then_beyond_holes_up_to_limit():
    lrn = Learner({1: NOOP, 2: (c(1, 1),), 3: NOOP, 6: NOOP, 8: NOOP})
    assert [e.slot for e in lrn.entries_from(2, 10)] == [2, 3, 6, 8]
    assert [e.slot for e in lrn.entries_from(1, 2)] == [1, 2]
    assert [e.slot for e in lrn.entries_from(4, 10)] == [6, 8]
    assert [e.slot for e in lrn.entries_from(7, 10)] == [8]
    assert lrn.entries_from(9, 10) == ()
    assert lrn.entries_from(2, 1) == (ChosenEntry(2, (c(1, 1),)),)


@given(st.permutations(list(range(1, 11))), st.integers(0, 10))
def test_any_learning_order_applies_slots_in_order_exactly_once(order, cut):
    lrn = Learner()
    seen: list[int] = []
    for i, slot in enumerate(order):
        lrn.learn(slot, (c(slot, 1),))
        known = set(order[: i + 1])
        assert lrn.commit == max(s for s in range(11) if set(range(1, s + 1)) <= known)
        if i == cut:
            seen += [a.slot for a in lrn.take_committed()]
    seen += [a.slot for a in lrn.take_committed()]
    assert seen == list(range(1, 11))
