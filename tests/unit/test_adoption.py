"""Phase 1's adoption rule (Paxos Made Simple, section 3) as a table of promises and outcomes."""

from __future__ import annotations

from itertools import permutations

import pytest

from paxctl.core.adoption import adopt
from paxctl.core.types import NOOP, AcceptedEntry, Ballot, Command

B1, B2, B3 = Ballot(1, 1), Ballot(2, 3), Ballot(3, 2)
X, Y, Z = ((Command(9, i, f"v{i}".encode()),) for i in (1, 2, 3))


def v(slot: int, ballot: Ballot, value: tuple[Command, ...]) -> AcceptedEntry:
    return AcceptedEntry(slot, ballot, value)


def case(name, votes, first=1, commit=0, chosen=(), compacted=0, *, want, counts, top):
    """votes from a quorum's promises and the node's own view -> proposals, (adopted, filled)."""
    return pytest.param(votes, first, commit, set(chosen), compacted, want, counts, top, id=name)


CASES = [
    case("no promise carries votes", [], want={}, counts=(0, 0), top=0),
    case("no votes above the commit", [], 4, 3, want={}, counts=(0, 0), top=3),
    case("one vote is adopted", [v(1, B1, X)], want={1: X}, counts=(1, 0), top=1),
    case(
        "the highest ballot wins a slot, whichever acceptor reported it",
        [v(1, B1, X), v(1, B3, Z), v(1, B2, Y)],
        want={1: Z},
        counts=(1, 0),
        top=1,
    ),
    case(
        "each slot is decided on its own ballots",
        [v(1, B3, X), v(2, B1, X), v(2, B2, Y)],
        want={1: X, 2: Y},
        counts=(2, 0),
        top=2,
    ),
    case(
        "holes below the highest voted slot become no-ops",
        [v(2, B1, X), v(5, B2, Y)],
        want={1: NOOP, 2: X, 3: NOOP, 4: NOOP, 5: Y},
        counts=(2, 3),
        top=5,
    ),
    case(
        "slots before the campaign's first slot are left alone",
        [v(2, B1, X), v(4, B1, Y)],
        first=3,
        commit=2,
        want={3: NOOP, 4: Y},
        counts=(1, 1),
        top=4,
    ),
    case(
        "slots known chosen need no proposal; one learned beyond the votes sets the top",
        [v(1, B1, X)],
        chosen=(2, 4),
        want={1: X, 3: NOOP},
        counts=(1, 1),
        top=4,
    ),
    case(
        "slots behind a snapshot installed during the campaign are chosen already",
        [v(3, B2, X), v(7, B2, Y)],
        first=3,
        commit=6,
        compacted=6,
        want={7: Y},
        counts=(1, 0),
        top=7,
    ),
    case(
        "the snapshot boundary alone",
        [],
        first=3,
        commit=6,
        compacted=6,
        want={},
        counts=(0, 0),
        top=6,
    ),
]


@pytest.mark.parametrize(
    ("votes", "first", "commit", "chosen", "compacted", "want", "counts", "top"), CASES
)
def test_adoption_table(votes, first, commit, chosen, compacted, want, counts, top):
    plan = adopt(votes, first, commit, chosen, compacted)
    assert plan.proposals == want
    assert list(plan.proposals) == sorted(plan.proposals)  # proposed in slot order
    assert (plan.adopted, plan.filled) == counts
    assert plan.top == top


def test_the_order_promises_arrive_in_does_not_matter():
    votes = [v(1, B1, X), v(1, B3, Z), v(1, B2, Y), v(3, B2, Y), v(3, B1, X)]
    plans = {tuple(adopt(p, 1, 0, set()).proposals.items()) for p in permutations(votes)}
    assert plans == {((1, Z), (2, NOOP), (3, Y))}


def test_votes_can_be_any_iterable_and_are_read_once():
    plan = adopt(iter([v(2, B2, Y), v(2, B1, X)]), 1, 0, set())
    assert plan.proposals == {1: NOOP, 2: Y}
