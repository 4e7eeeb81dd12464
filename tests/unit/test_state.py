"""Config validation, the Ready contract and DurableState."""

from __future__ import annotations

import pytest

from paxctl.core.bugs import PlantedBugs
from paxctl.core.state import PLANTED_BUGS, Config, DurableState, HardState, Ready
from paxctl.core.types import AcceptedEntry, Ballot, ChosenEntry, Command


@pytest.mark.parametrize(
    "kw",
    [
        {"node_id": 4, "voters": (1, 2, 3)},
        {"node_id": 1, "voters": (1, 1, 2)},
        {"node_id": 0, "voters": (0, 1, 2)},
        {"node_id": 1, "voters": (1, 2, 3), "heartbeat_ticks": 10, "election_ticks": 10},
        {"node_id": 1, "voters": (1, 2, 3), "heartbeat_ticks": 0},
        {"node_id": 1, "voters": (1, 2, 3), "window": 0},
        {"node_id": 1, "voters": (1, 2, 3), "max_batch": 0},
        {"node_id": 1, "voters": (1, 2, 3), "max_entries": 0},
    ],
)
def test_invalid_configs_are_refused(kw):
    with pytest.raises(ValueError):
        Config(**kw)


def test_valid_config_and_every_planted_bug_name():
    Config(1, (1,))
    Config(2, (1, 2, 3), planted_bugs=PlantedBugs.from_names(PLANTED_BUGS))


def test_planted_bugs_by_name_and_unknown_names_refused():
    assert PlantedBugs.from_names(["stale_reads"]) == PlantedBugs(stale_reads=True)
    assert PlantedBugs.from_names(PLANTED_BUGS).names == PLANTED_BUGS
    assert PlantedBugs.from_names([]) == PlantedBugs()
    with pytest.raises(ValueError, match="nonsense"):
        PlantedBugs.from_names({"stale_reads", "nonsense"})


def test_empty_ready_is_falsy_and_needs_no_persist():
    assert not Ready()
    assert not Ready().must_persist


def test_ready_with_state_must_persist():
    assert Ready(hard_state=HardState(Ballot(1, 1), 1)).must_persist
    assert Ready(votes=(AcceptedEntry(1, Ballot(1, 1), ()),)).must_persist
    assert Ready(chosen=(ChosenEntry(1, ()),)).must_persist
    assert Ready(chosen=(ChosenEntry(1, ()),))


def test_ready_with_only_messages_or_commits_is_truthy_without_persist():
    from paxctl.core.messages import CatchupRequest
    from paxctl.core.types import Applied

    r = Ready(messages=(CatchupRequest(1, 2, 1),))
    assert r and not r.must_persist
    r = Ready(committed=(Applied(1, ()),))
    assert r and not r.must_persist


def test_durable_state_persist_merges_and_copy_is_independent():
    d = DurableState()
    c = Command(1, 1, b"x")
    d.persist(
        Ready(
            hard_state=HardState(Ballot(2, 1), 2),
            votes=(AcceptedEntry(1, Ballot(2, 1), (c,)),),
            chosen=(ChosenEntry(1, (c,)),),
        )
    )
    snap = d.copy()
    d.persist(Ready(votes=(AcceptedEntry(1, Ballot(3, 2), ()),), chosen=(ChosenEntry(2, ()),)))
    assert d.promised == Ballot(2, 1) and d.max_round == 2  # no hard_state: unchanged
    assert d.votes[1].ballot == Ballot(3, 2)
    assert set(d.chosen) == {1, 2}
    assert snap.votes[1].ballot == Ballot(2, 1)
    assert set(snap.chosen) == {1}
