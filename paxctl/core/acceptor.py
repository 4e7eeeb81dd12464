"""The acceptor: the cluster's durable memory.

Its two rules (Paxos Made Simple): promise a ballot only if it is at least every ballot promised
before, and vote for a value only at a ballot at least the one promised. Every change is recorded
for the driver to persist before any reply that depends on it leaves the node; the acceptor never
assumes a write happened.
"""

from __future__ import annotations

from paxctl.core.types import ZERO_BALLOT, AcceptedEntry, Ballot, ChosenEntry


class Acceptor:
    def __init__(
        self,
        promised: Ballot = ZERO_BALLOT,
        votes: dict[int, AcceptedEntry] | None = None,
        accept_lower: bool = False,
    ) -> None:
        self.promised = promised
        self.votes: dict[int, AcceptedEntry] = dict(votes or {})
        #: Changes not yet handed to the driver to persist.
        self.promise_changed = False
        self.new_votes: list[AcceptedEntry] = []
        self._accept_lower = accept_lower  # planted bug, tests only

    def prepare(self, ballot: Ballot) -> bool:
        """Phase 1b: promise ``ballot`` if no higher ballot was promised."""
        if ballot < self.promised:
            return False
        if ballot > self.promised:
            self.promised = ballot
            self.promise_changed = True
        return True

    def accept(self, ballot: Ballot, entries: tuple[ChosenEntry, ...]) -> bool:
        """Phase 2b: vote for every entry at ``ballot`` unless a higher ballot was promised."""
        if ballot < self.promised and not self._accept_lower:
            return False
        if ballot > self.promised:
            self.promised = ballot
            self.promise_changed = True
        for entry in entries:
            vote = AcceptedEntry(entry.slot, ballot, entry.value)
            if self.votes.get(entry.slot) != vote:
                self.votes[entry.slot] = vote
                self.new_votes.append(vote)
        return True

    def votes_from(self, slot: int) -> tuple[AcceptedEntry, ...]:
        """The votes for ``slot`` and every later slot, in slot order (for a Promise)."""
        return tuple(self.votes[s] for s in sorted(self.votes) if s >= slot)

    def take_changes(self) -> tuple[bool, list[AcceptedEntry]]:
        changed, votes = self.promise_changed, self.new_votes
        self.promise_changed, self.new_votes = False, []
        return changed, votes
