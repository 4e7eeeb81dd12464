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
        compacted: int = 0,
    ) -> None:
        self.promised = promised
        #: Votes up to this slot were dropped behind a snapshot (those slots are all chosen).
        self.compacted = compacted
        self.votes: dict[int, AcceptedEntry] = {
            s: v for s, v in (votes or {}).items() if s > compacted
        }
        # A vote at a ballot implies a promise of it. After a crash between writing a vote and
        # writing the promise that came with it, the vote on disk is what counts; the raised
        # promise is persisted with the first Ready, before compaction could drop that vote.
        self.promised = max([promised, *(v.ballot for v in (votes or {}).values())])
        #: Changes not yet handed to the driver to persist.
        self.promise_changed = self.promised != promised
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

    def accept(self, ballot: Ballot, entries: tuple[ChosenEntry, ...]) -> tuple[int, ...] | None:
        """Phase 2b: vote for every entry at ``ballot`` unless a higher ballot was promised.

        Returns the slots voted for (None if refused). Slots behind the snapshot are chosen
        already, and their votes are gone, so they get no vote.
        """
        if ballot < self.promised and not self._accept_lower:
            return None
        if ballot > self.promised:
            self.promised = ballot
            self.promise_changed = True
        slots = []
        for entry in entries:
            if entry.slot <= self.compacted:
                continue
            slots.append(entry.slot)
            vote = AcceptedEntry(entry.slot, ballot, entry.value)
            if self.votes.get(entry.slot) != vote:
                self.votes[entry.slot] = vote
                self.new_votes.append(vote)
        return tuple(slots)

    def compact(self, slot: int) -> None:
        """Forget the votes of slots up to ``slot``: they are chosen and in a snapshot."""
        if slot > self.compacted:
            self.compacted = slot
            self.votes = {s: v for s, v in self.votes.items() if s > slot}

    def votes_from(self, slot: int) -> tuple[AcceptedEntry, ...]:
        """The votes for ``slot`` and every later slot, in slot order (for a Promise)."""
        return tuple(self.votes[s] for s in sorted(self.votes) if s >= slot)

    def take_changes(self) -> tuple[bool, list[AcceptedEntry]]:
        changed, votes = self.promise_changed, self.new_votes
        self.promise_changed, self.new_votes = False, []
        return changed, votes
