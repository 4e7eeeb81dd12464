"""Planted bugs: known mistakes the simulator must catch, switched on by one policy object.

Tests plant them to prove the checks bite. The core asks the policy (``bugs.stale_reads``)
rather than matching strings, so a misspelt name fails at start-up, not silently in a test.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class PlantedBugs:
    """Which planted bugs are on; all off in production."""

    #: An acceptor's promise and votes are persisted one batch after the replies they justify.
    reply_before_persist: bool = False
    #: A new leader ignores the values acceptors report in phase 1.
    skip_adoption: bool = False
    #: Learners count votes of any ballot toward a slot's choice.
    count_across_ballots: bool = False
    #: Quorums of N // 2 instead of N // 2 + 1.
    minority_quorum: bool = False
    #: An acceptor accepts values below its promise.
    accept_lower_ballot: bool = False
    #: Reads served from the local state, without read-index.
    stale_reads: bool = False
    #: Peer messages reach the core (and the engine) unchecked, as before issue 14.
    no_peer_checks: bool = False
    #: A new leader's phase 1 asks only the latest configuration's majority (issue 15).
    p1_new_config_only: bool = False
    #: A second configuration change takes effect while one is in flight.
    two_changes_in_flight: bool = False
    #: Acknowledgements of voters a change removed still count toward a slot's quorum.
    count_removed: bool = False

    @classmethod
    def from_names(cls, names: Iterable[str]) -> PlantedBugs:
        """The policy with the named bugs on; ValueError names any the core does not know."""
        wanted = frozenset(names)
        unknown = wanted - PLANTED_BUGS
        if unknown:
            raise ValueError(f"unknown planted bugs: {sorted(unknown)}")
        return cls(**{name: True for name in wanted})

    @property
    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in fields(self) if getattr(self, f.name))


#: The names of the core's planted bugs, as given to ``paxctl sim --plant-bug``.
PLANTED_BUGS = frozenset(f.name for f in fields(PlantedBugs))

NO_BUGS = PlantedBugs()
