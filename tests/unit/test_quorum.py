"""Quorum arithmetic: majorities intersect, and only voters count."""

from __future__ import annotations

from itertools import combinations

import pytest

from paxctl.core.quorum import has_quorum, majority


@pytest.mark.parametrize(
    ("voters", "size"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)]
)
def test_majority_sizes(voters, size):
    assert majority(voters) == size


@pytest.mark.parametrize("n", range(1, 8))
def test_any_two_majorities_intersect_and_a_smaller_set_would_not(n):
    members = range(1, n + 1)
    q = majority(n)
    for a in combinations(members, q):
        for b in combinations(members, q):
            assert set(a) & set(b)
    if n >= 2:  # one fewer than a majority admits two disjoint "quorums"
        half = q - 1
        assert half * 2 <= n


def test_has_quorum_counts_exactly_size():
    voters = frozenset({1, 2, 3, 4, 5})
    assert not has_quorum({1, 2}, voters, 3)
    assert has_quorum({1, 2, 3}, voters, 3)
    assert has_quorum({1, 2, 3, 4, 5}, voters, 3)


def test_has_quorum_ignores_non_voters():
    voters = frozenset({1, 2, 3})
    assert not has_quorum({1, 7, 8, 9}, voters, 2)
    assert not has_quorum([0, 4, 5], voters, 2)
    assert has_quorum({1, 3, 9}, voters, 2)


def test_has_quorum_counts_a_voter_once():
    voters = frozenset({1, 2, 3})
    assert not has_quorum([1, 1, 1], voters, 2)


def test_has_quorum_accepts_any_iterable_of_ids():
    voters = frozenset({1, 2, 3})
    assert has_quorum(iter([2, 3]), voters, 2)
    assert has_quorum({2: "x", 3: "y"}, voters, 2)  # dict keys, as the node passes promises
