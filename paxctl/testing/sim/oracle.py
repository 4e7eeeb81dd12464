"""The simulator's judge: safety invariants checked after every event.

The oracle sees what a node *persisted* and *sent*, never its private state, and keeps its own
history, so a bug in the node cannot also hide itself from the check. A value counts as chosen
only when a real majority has durably voted for it at one ballot (whatever quorum size a planted
bug makes the node believe in).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paxctl.core.messages import Accepted, Message, Promise
from paxctl.core.quorum import majority
from paxctl.core.state import DurableState, Ready
from paxctl.core.types import ZERO_BALLOT, Ballot, Command, Snapshot, Value
from paxctl.testing.sim.app import GENESIS, chain, decode_state


class InvariantViolation(AssertionError):
    """A safety property failed; the message says which and where."""


@dataclass
class _Acks:
    """What one node acknowledged to others: the promise and votes it must never forget."""

    promised: Ballot = ZERO_BALLOT
    votes: dict[int, Ballot] = field(default_factory=dict)


class Oracle:
    def __init__(self, voters: tuple[int, ...]) -> None:
        self.majority = majority(len(voters))
        self.votes: dict[tuple[int, Ballot], tuple[Value, set[int]]] = {}
        self.chosen: dict[int, Value] = {}
        self.proposed: set[Command] = set()
        self.acks: dict[int, _Acks] = {v: _Acks() for v in voters}
        # Per node (this incarnation): how many slots it applied, in order.
        self.applied_upto: dict[int, int] = {v: 0 for v in voters}
        # The commands each slot makes take effect, derived here from the chosen sequence (the
        # application filters retries itself; its digests show whether it did so alike).
        self.effective: dict[int, tuple[Command, ...]] = {}
        self._seen: set[tuple[int, int]] = set()
        #: The slot where each (client, seq) took effect.
        self.slot_of: dict[tuple[int, int], int] = {}
        # The application's digest after each slot of the chosen sequence.
        self.digests: dict[int, bytes] = {0: GENESIS}

    def fail(self, what: str) -> None:
        raise InvariantViolation(what)

    def submitted(self, command: Command) -> None:
        self.proposed.add(command)

    def restarted(self, node: int, state: DurableState) -> None:
        """A node came back from its disk: it must remember all it acknowledged."""
        acks = self.acks[node]
        if state.promised < acks.promised:
            self.fail(
                f"node {node} restarted with promise {state.promised} below the "
                f"{acks.promised} it acknowledged"
            )
        for slot, ballot in sorted(acks.votes.items()):
            if slot <= state.compacted:
                continue  # dropped behind a snapshot: that slot is chosen and applied
            vote = state.votes.get(slot)
            if vote is None or vote.ballot < ballot:
                self.fail(f"node {node} restarted without its acknowledged vote {slot}@{ballot}")
        # Votes on disk are votes, even if the crash came before the rest of their batch (and
        # so before this oracle saw the batch): recovery will report them in promises.
        for vote in sorted(state.votes.values(), key=lambda v: v.slot):
            self._vote(node, vote.slot, vote.ballot, vote.value)
        self.applied_upto[node] = 0
        if state.snapshot is not None:
            self._snapshot(node, state.snapshot)

    def _snapshot(self, node: int, snap: Snapshot) -> None:
        """A node restored its state from a snapshot: it must be the chosen sequence's state."""
        slot, digest = decode_state(snap.app)
        if slot != snap.slot or self.digests.get(slot) != digest:
            self.fail(
                f"node {node} holds a snapshot at slot {snap.slot} that is not the state "
                "of the chosen sequence there"
            )
        self.applied_upto[node] = snap.slot

    def applied_state(self, node: int, slot: int, digest: bytes) -> None:
        if self.digests.get(slot) != digest:
            self.fail(f"node {node}'s state after slot {slot} differs from the chosen sequence's")

    def observe(self, node: int, ready: Ready) -> None:
        """Check one Ready, as the driver persists, sends and applies it."""
        if ready.snapshot is not None:
            self._snapshot(node, ready.snapshot)
        for vote in ready.votes:
            self._vote(node, vote.slot, vote.ballot, vote.value)
        for entry in ready.chosen:
            truth = self.chosen.get(entry.slot)
            if truth is None:
                self.fail(f"node {node} learned slot {entry.slot} that no majority voted for")
            if truth != entry.value:
                self.fail(f"node {node} learned a value for slot {entry.slot} that was not chosen")
        for msg in ready.messages:
            self._acknowledged(node, msg)
        for applied in ready.committed:
            expected_slot = self.applied_upto[node] + 1
            if applied.slot != expected_slot:
                self.fail(f"node {node} applied slot {applied.slot}, expected {expected_slot}")
            self.applied_upto[node] = applied.slot
            if applied.slot not in self.chosen:
                self.fail(f"node {node} applied slot {applied.slot} before it was chosen")
            if applied.commands != self.chosen[applied.slot]:
                self.fail(
                    f"node {node} was handed {len(applied.commands)} commands for slot "
                    f"{applied.slot}, not the {len(self.chosen[applied.slot])} chosen there"
                )

    def _acknowledged(self, node: int, msg: Message) -> None:
        acks = self.acks[node]
        if isinstance(msg, Promise):
            acks.promised = max(acks.promised, msg.ballot)
        elif isinstance(msg, Accepted):
            acks.promised = max(acks.promised, msg.ballot)
            for slot in msg.slots:
                if acks.votes.get(slot, ZERO_BALLOT) < msg.ballot:
                    acks.votes[slot] = msg.ballot

    def _vote(self, node: int, slot: int, ballot: Ballot, value: Value) -> None:
        key = (slot, ballot)
        known = self.votes.get(key)
        if known is None:
            known = self.votes[key] = (value, set())
        elif known[0] != value:
            self.fail(f"two values proposed for slot {slot} at ballot {ballot}")
        voters = known[1]
        voters.add(node)
        if len(voters) < self.majority:
            return
        previous = self.chosen.get(slot)
        if previous is None:
            for cmd in value:
                if cmd not in self.proposed:
                    self.fail(f"slot {slot} chose command {cmd.client}:{cmd.seq} nobody proposed")
            self.chosen[slot] = value
            self._extend_effective()
        elif previous != value:
            self.fail(f"slot {slot} chosen with two different values (second at ballot {ballot})")

    def _extend_effective(self) -> None:
        """Derive, in slot order, which commands take effect: each (client, seq) once."""
        slot = len(self.effective) + 1
        while slot in self.chosen:
            fresh = []
            for cmd in self.chosen[slot]:
                key = (cmd.client, cmd.seq)
                if key not in self._seen:
                    self._seen.add(key)
                    self.slot_of[key] = slot
                    fresh.append(cmd)
            self.effective[slot] = tuple(fresh)
            self.digests[slot] = chain(self.digests[slot - 1], self.effective[slot])
            slot += 1
