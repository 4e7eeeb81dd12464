"""The proposer: commands waiting for a slot, and the proposals a leader has in flight.

The third role of Paxos Made Simple, beside the ``Acceptor`` and the ``Learner``. It holds state
only: the node decides when it campaigns or leads, and sends the messages.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from paxctl.core.adoption import Adoption
from paxctl.core.messages import Promise
from paxctl.core.types import COMMAND_OVERHEAD, Command, Value

Key = tuple[int, int]  # (client, seq): what makes a command unique


@dataclass
class Proposal:
    """A value this leader proposed for one slot, and the acceptors that voted for it."""

    value: Value
    acks: set[int] = field(default_factory=set)


def _key(command: Command) -> Key:
    return (command.client, command.seq)


class Proposer:
    def __init__(self) -> None:
        #: Commands waiting for a slot (leader) or for a known leader (others).
        self.pending: deque[Command] = deque()
        self._pending_ids: set[Key] = set()
        #: Waiting commands a client gave this node that never left it (not forwarded, not
        #: proposed): the only ones it may take back and call not done (``withdraw``).
        self._fresh: set[Key] = set()
        #: Slot -> what this leader proposed there and is not yet known chosen.
        self.inflight: dict[int, Proposal] = {}
        self._inflight_ids: set[Key] = set()
        #: Phase 1: the first slot campaigned for, and the promises gathered so far.
        self.campaign_from = 1
        self.promises: dict[int, Promise] = {}
        self.next_slot = 1  # the slot the next batch goes to
        self.ready_slot = 0  # the last slot adopted in phase 1 (see ``Node.leader_ready``)

    def has(self, command: Command) -> bool:
        """Whether ``command`` waits here or is in flight (so a retry adds nothing)."""
        key = _key(command)
        return key in self._pending_ids or key in self._inflight_ids

    def queue(self, command: Command, fresh: bool = False) -> None:
        self.pending.append(command)
        self._pending_ids.add(_key(command))
        if fresh:
            self._fresh.add(_key(command))

    def take_pending(self) -> list[Command]:
        """Every waiting command, oldest first (to forward them to the leader)."""
        commands = list(self.pending)
        self.pending.clear()
        self._pending_ids.clear()
        self._fresh.clear()
        return commands

    def withdraw(self, key: Key) -> bool:
        """Take back a waiting command that never left this node; False if it is not here or
        went out once (forwarded, proposed, or handed over by another node): then some other
        node may still decide it."""
        if key not in self._fresh:
            return False
        self._fresh.discard(key)
        self._pending_ids.discard(key)
        self.pending = deque(c for c in self.pending if _key(c) != key)
        return True

    def campaign(self, first: int) -> None:
        """Phase 1 starts over, for every slot from ``first``."""
        self.promises = {}
        self.campaign_from = first

    def lead(self, adoption: Adoption) -> None:
        """Phase 1 succeeded: propose what it adopted; new commands go after it."""
        for slot, value in adoption.proposals.items():
            self.propose(slot, value)
        self.next_slot = adoption.top + 1
        self.ready_slot = adoption.top
        self.promises = {}

    def propose(self, slot: int, value: Value) -> None:
        self.inflight[slot] = Proposal(value)
        self._inflight_ids.update(_key(c) for c in value)

    def settle(self, slot: int) -> None:
        """The slot is decided: stop proposing it."""
        proposal = self.inflight.pop(slot, None)
        if proposal is not None:
            self._inflight_ids.difference_update(_key(c) for c in proposal.value)

    def take_undecided(self) -> list[Command]:
        """Leadership ends: the commands of undecided proposals, in slot order, to retry."""
        inflight, self.inflight = self.inflight, {}
        self._inflight_ids.clear()
        return [cmd for slot in sorted(inflight) for cmd in inflight[slot].value]

    def batch(self, last_slot: int, max_batch: int, max_bytes: int) -> dict[int, Proposal]:
        """Give waiting commands slots up to ``last_slot``, ``max_batch`` (about ``max_bytes``)
        to a slot. Returns the new proposals."""
        new: dict[int, Proposal] = {}
        while self.pending and self.next_slot <= last_slot:
            batch: list[Command] = []
            used = 0
            while self.pending and len(batch) < max_batch:
                size = len(self.pending[0].data) + COMMAND_OVERHEAD
                if batch and used + size > max_bytes:
                    break
                cmd = self.pending.popleft()
                self._pending_ids.discard(_key(cmd))
                self._fresh.discard(_key(cmd))
                batch.append(cmd)
                used += size
            if batch:
                self.propose(self.next_slot, tuple(batch))
                new[self.next_slot] = self.inflight[self.next_slot]
                self.next_slot += 1
        return new

    def missing(self, peer: int) -> dict[int, Proposal]:
        """The proposals ``peer`` has not voted for yet (a heartbeat retransmits them)."""
        return {s: p for s, p in self.inflight.items() if peer not in p.acks}
