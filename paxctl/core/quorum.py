"""Quorum arithmetic, kept apart so that it is tested (and planted bugs are placed) in one spot."""

from __future__ import annotations

from collections.abc import Iterable


def majority(voters: int) -> int:
    """The smallest number of voters any two of which sets intersect."""
    return voters // 2 + 1


def has_quorum(acks: Iterable[int], voters: frozenset[int], size: int) -> bool:
    """Whether the ``acks`` from members of ``voters`` number at least ``size``."""
    return len(voters.intersection(acks)) >= size
