"""The simulator's judge: safety invariants checked after every event.

The oracle sees what a node *persisted* and *sent*, never its private state, and keeps its own
history, so a bug in the node cannot also hide itself from the check. A value counts as chosen
only when a real majority has durably voted for it at one ballot (whatever quorum size a planted
bug makes the node believe in).

Under reconfiguration "a real majority" is one of the voters of the configuration governing that
slot, each voting with the data directory (disk) the configuration names: the oracle keeps its
own timeline of configurations, built from the chosen sequence alone with the production rules
(``core/timeline.py``, ``core/membership.py``: which configuration a change makes is the
specification, not something a node may decide). So votes of a removed node, of a learner or of a
voter that came back with another disk never make a value chosen, whatever the nodes count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paxctl.core.membership import (
    ALPHA,
    CONFIG_CLIENT,
    ChangeError,
    Membership,
    Promote,
    decode_change,
    founding,
)
from paxctl.core.messages import Accepted, Message, Promise
from paxctl.core.quorum import majority
from paxctl.core.state import DurableState, Ready
from paxctl.core.timeline import Timeline
from paxctl.core.types import ZERO_BALLOT, Ballot, Command, Snapshot, Value
from paxctl.testing.sim.app import GENESIS, chain, decode_state


class InvariantViolation(AssertionError):
    """A safety property failed; the message says which and where."""


@dataclass
class _Acks:
    """What one node acknowledged to others: the promise and votes it must never forget."""

    promised: Ballot = ZERO_BALLOT
    votes: dict[int, Ballot] = field(default_factory=dict)


def sim_peer(node: int) -> str:
    """A simulated node's peer address (configurations name one; nothing connects to it)."""
    return f"n{node}.sim:{7000 + node}"


def sim_client(node: int) -> str:
    return f"n{node}.sim:{9000 + node}"


def founding_of(voters: tuple[int, ...]) -> Membership:
    """The founding configuration of a simulated cluster of ``voters``."""
    return founding({v: sim_peer(v) for v in voters}, {v: sim_client(v) for v in voters})


#: A voter's identity as a configuration names it: (node id, disk id).
Voter = tuple[int, int]


class Oracle:
    def __init__(self, voters: tuple[int, ...]) -> None:
        #: The configurations the chosen sequence makes, judged by the production rules as
        #: each slot of the chosen prefix becomes known (never pruned: the whole history).
        self.timeline = Timeline([founding_of(voters)], 0)
        #: Each node's disk id, as its host was given it (0: a founding member's).
        self.disks: dict[int, int] = {v: 0 for v in voters}
        #: (slot, ballot) -> the value voted for, and who voted for it (with which disk).
        self.votes: dict[tuple[int, Ballot], tuple[Value, set[Voter]]] = {}
        #: (slot, ballot)s with votes for a slot whose configuration is not known yet (beyond the
        #: chosen prefix + ALPHA): counted once the prefix reaches far enough.
        self._uncounted: set[tuple[int, Ballot]] = set()
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

    def add_node(self, node: int, disk: int) -> None:
        """A host joins the world (a new node id, an empty disk with its own id)."""
        self.disks[node] = disk
        self.acks[node] = _Acks()
        self.applied_upto[node] = 0

    def config_for(self, slot: int) -> Membership | None:
        """The configuration governing ``slot``, if the chosen prefix already fixes it."""
        if slot > self.timeline.through + ALPHA:
            return None
        return self.timeline.config_for(slot)

    def as_of(self, slot: int) -> Membership:
        """The latest configuration chosen at or before ``slot`` (of the chosen prefix)."""
        found = self.timeline.configs[0]
        for c in self.timeline.configs:
            if c.epoch <= slot:
                found = c
        return found

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
            if msg.slots or self._votes_after(node, msg.commit):
                # (A node that votes nowhere near its commit index, a learner, acknowledges
                # a leader's proposals without a promise: no leader counts it.)
                acks.promised = max(acks.promised, msg.ballot)
            for slot in msg.slots:
                if acks.votes.get(slot, ZERO_BALLOT) < msg.ballot:
                    acks.votes[slot] = msg.ballot

    def _votes_after(self, node: int, commit: int) -> bool:
        """Whether ``node`` (with its disk) is a voter of a configuration governing a slot a
        leader may propose beyond ``commit``, the sender's commit index (as far as the chosen
        prefix tells; beyond it, assume so)."""
        if commit > self.timeline.through:
            return True
        disk = self.disks[node]
        configs = self.timeline.in_force(commit + 1, commit + ALPHA)
        return any(c.votes_here(node, disk) for c in configs)

    def _vote(self, node: int, slot: int, ballot: Ballot, value: Value) -> None:
        key = (slot, ballot)
        known = self.votes.get(key)
        if known is None:
            known = self.votes[key] = (value, set())
        elif known[0] != value:
            self.fail(f"two values proposed for slot {slot} at ballot {ballot}")
        known[1].add((node, self.disks[node]))
        self._count(slot, ballot)

    def _count(self, slot: int, ballot: Ballot) -> None:
        """Whether the votes for ``slot`` at ``ballot`` are a majority of the voters of the
        slot's configuration (each with the disk it names); if so the value is chosen."""
        config = self.config_for(slot)
        if config is None:
            self._uncounted.add((slot, ballot))
            return
        value, voters = self.votes[(slot, ballot)]
        counted = sum(1 for n, disk in voters if config.votes_here(n, disk))
        if counted < majority(len(config.voters)):
            return
        previous = self.chosen.get(slot)
        if previous is None:
            for cmd in value:
                if cmd not in self.proposed and not _made_by_a_leader(cmd):
                    self.fail(f"slot {slot} chose command {cmd.client}:{cmd.seq} nobody proposed")
            self.chosen[slot] = value
            self._extend_prefix()
        elif previous != value:
            self.fail(
                f"slot {slot} chosen with two different values (second at ballot {ballot}, by "
                f"voters {sorted(n for n, d in voters if config.votes_here(n, d))} of epoch "
                f"{config.epoch})"
            )

    def _extend_prefix(self) -> None:
        """Judge the changes of the newly contiguous chosen slots (the configurations they make
        govern from ALPHA slots on), derive what each slot makes take effect, and count the
        votes that waited for their slot's configuration to be known."""
        start = self.timeline.through
        slot = start + 1
        while slot in self.chosen:
            self.timeline.commit(slot, self.chosen[slot])
            for cmd in self.chosen[slot]:
                if cmd.client == CONFIG_CLIENT:
                    self.slot_of.setdefault((cmd.client, cmd.seq), slot)
            slot += 1
        if slot - 1 == start:
            return
        self._extend_effective()
        ready = sorted(k for k in self._uncounted if self.config_for(k[0]) is not None)
        self._uncounted.difference_update(ready)
        for s, b in ready:
            self._count(s, b)

    def _extend_effective(self) -> None:
        """Derive, in slot order, which commands take effect: each (client, seq) once.
        Configuration changes are the core's (the timeline above), not the application's."""
        slot = len(self.effective) + 1
        while slot in self.chosen:
            fresh = []
            for cmd in self.chosen[slot]:
                key = (cmd.client, cmd.seq)
                if cmd.client != CONFIG_CLIENT and key not in self._seen:
                    self._seen.add(key)
                    self.slot_of[key] = slot
                    fresh.append(cmd)
            self.effective[slot] = tuple(fresh)
            self.digests[slot] = chain(self.digests[slot - 1], self.effective[slot])
            slot += 1


def _made_by_a_leader(cmd: Command) -> bool:
    """A promotion: the leader proposes it itself once a learner has caught up (the timeline
    judges it like any change)."""
    if cmd.client != CONFIG_CLIENT:
        return False
    try:
        return isinstance(decode_change(cmd.data), Promote)
    except ChangeError:
        return False
