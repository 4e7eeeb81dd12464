"""The oracle under reconfiguration, fed by hand: it counts each slot's votes against the
configuration the chosen log makes for that slot, each voter with its disk."""

from __future__ import annotations

import pytest

from paxctl.core.membership import (
    ALPHA,
    CONFIG_CLIENT,
    AddLearner,
    Change,
    Member,
    Promote,
    Remove,
    encode_change,
)
from paxctl.core.state import Ready
from paxctl.core.types import AcceptedEntry, Ballot, ChosenEntry, Command
from paxctl.testing.sim.oracle import InvariantViolation, Oracle, sim_client, sim_peer

B1, B2 = Ballot(1, 1), Ballot(2, 2)


def _change(oracle: Oracle, seq: int, change: Change) -> tuple[Command, ...]:
    cmd = Command(CONFIG_CLIENT, seq, encode_change(change))
    oracle.submitted(cmd)
    return (cmd,)


def _write(oracle: Oracle, seq: int) -> tuple[Command, ...]:
    cmd = Command(1000, seq, b"x%d" % seq)
    oracle.submitted(cmd)
    return (cmd,)


def _vote(oracle: Oracle, node: int, slot: int, value: tuple[Command, ...], b=B1) -> None:
    oracle.observe(node, Ready(votes=(AcceptedEntry(slot, b, value),)))


def _choose(oracle: Oracle, slot: int, value: tuple[Command, ...], by=(1, 2)) -> None:
    for n in by:
        _vote(oracle, n, slot, value)
    assert oracle.chosen[slot] == value


def _fill(oracle: Oracle, upto: int, by=(1, 2)) -> None:
    for slot in range(len(oracle.chosen) + 1, upto + 1):
        _choose(oracle, slot, (), by)


def test_a_removed_voters_votes_never_count():
    oracle = Oracle((1, 2, 3))
    _choose(oracle, 1, _change(oracle, 1, Remove(0, 3)))
    assert oracle.timeline.outcomes[1] == ""
    _fill(oracle, ALPHA)
    slot = 1 + ALPHA  # the first slot the configuration {1, 2} governs
    value = _write(oracle, 1)
    _vote(oracle, 1, slot, value)
    _vote(oracle, 3, slot, value)  # 2 of the founding 3, but 3 is no voter here
    assert slot not in oracle.chosen
    with pytest.raises(InvariantViolation, match="no majority voted for"):
        oracle.observe(1, Ready(chosen=(ChosenEntry(slot, value),)))
    _vote(oracle, 2, slot, value)
    assert oracle.chosen[slot] == value


def test_before_the_change_governs_the_old_configuration_counts():
    oracle = Oracle((1, 2, 3))
    _choose(oracle, 1, _change(oracle, 1, Remove(0, 3)))
    value = _write(oracle, 1)
    _vote(oracle, 1, ALPHA, value)
    _vote(oracle, 3, ALPHA, value)  # slot ALPHA is still governed by {1, 2, 3}
    assert oracle.chosen[ALPHA] == value


def test_votes_wait_until_their_slots_configuration_is_known():
    oracle = Oracle((1, 2, 3))
    _choose(oracle, 1, _change(oracle, 1, Remove(0, 3)))
    far = 3 + ALPHA  # its configuration depends on slots 2 and 3, not chosen yet
    value = _write(oracle, 1)
    _vote(oracle, 1, far, value)
    _vote(oracle, 3, far, value)
    assert far not in oracle.chosen
    _fill(oracle, 3)
    assert far not in oracle.chosen  # known now: {1, 2}, and 3's vote does not count
    _vote(oracle, 2, far, value)
    assert oracle.chosen[far] == value


def test_a_voter_counts_only_with_the_disk_it_was_promoted_with():
    oracle = Oracle((1, 2))
    member = Member(3, False, sim_peer(3), sim_client(3), promote=True)
    oracle.add_node(3, 77)
    _choose(oracle, 1, _change(oracle, 1, AddLearner(0, member)))
    _choose(oracle, 2, _change(oracle, 2, Promote(1, 3, 77)), by=(1, 2))
    assert oracle.timeline.outcomes[2].startswith("a change is in flight")
    _fill(oracle, ALPHA + 1)
    _choose(oracle, ALPHA + 2, _change(oracle, 3, Promote(1, 3, 77)))
    assert oracle.timeline.outcomes[3] == ""
    _fill(oracle, 2 * ALPHA + 1)
    slot = 2 * ALPHA + 2  # voters {1, 2, 3}: a majority is 2
    value = _write(oracle, 1)
    _vote(oracle, 1, slot, value)
    oracle.disks[3] = 99  # node 3 came back on another (empty) disk
    _vote(oracle, 3, slot, value)
    assert slot not in oracle.chosen
    oracle.disks[3] = 77
    _vote(oracle, 3, slot, value)
    assert oracle.chosen[slot] == value


def test_two_values_chosen_in_one_slot_fail():
    oracle = Oracle((1, 2, 3))
    a, b = _write(oracle, 1), _write(oracle, 2)
    _vote(oracle, 1, 1, a)
    _vote(oracle, 2, 1, a)
    _vote(oracle, 2, 1, b, B2)
    with pytest.raises(InvariantViolation, match="two different values"):
        _vote(oracle, 3, 1, b, B2)


def test_changes_are_not_the_applications():
    """The chain's state leaves configuration changes out, as the replica does."""
    oracle = Oracle((1,))
    _choose(oracle, 1, _change(oracle, 1, Remove(0, 1)), by=(1,))
    assert oracle.timeline.outcomes[1] == "the last voter cannot be removed"
    assert oracle.effective[1] == ()
    assert oracle.slot_of[(CONFIG_CLIENT, 1)] == 1
