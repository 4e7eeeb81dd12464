"""The configurations a node knows, slot by slot, built from the log as it is committed.

``membership.py`` says what one change does; this keeps the sequence: the configuration in
force at a slot, the ones in force over a range of slots (what a new leader's phase 1 must
cover), and what became of each change (for the client that asked for it). It is rebuilt from
durable state alone (a snapshot's configurations, then the chosen log after it), so a restarted
node knows exactly what it knew.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from paxctl.core.membership import (
    ALPHA,
    CONFIG_CLIENT,
    ChangeError,
    Membership,
    apply_change,
    decode_change,
)
from paxctl.core.types import Command

#: Outcomes of changes remembered for the clients waiting on them (the oldest go first).
_MAX_OUTCOMES = 1024


class Timeline:
    def __init__(
        self,
        configs: Iterable[Membership],
        through: int,
        known: bool = True,
        one_at_a_time: bool = True,
    ) -> None:
        #: In the order they govern; the first governs every slot before the second's ``active``.
        self.configs: list[Membership] = list(configs)
        if not self.configs:
            raise ValueError("a timeline starts from at least one configuration")
        #: Slots whose changes were judged (the node's commit index, as far as it was handed on).
        self.through = through
        #: False on a node that joined empty and has not yet received the cluster's state: it
        #: knows only whom to ask (its ``configs`` are a placeholder), so it never votes.
        self.known = known
        #: Change seq -> "" if it took effect, or why it was refused.
        self.outcomes: OrderedDict[int, str] = OrderedDict()
        self._one_at_a_time = one_at_a_time  # False: a planted bug (core/bugs.py)

    @property
    def latest(self) -> Membership:
        return self.configs[-1]

    def config_for(self, slot: int) -> Membership:
        """The configuration governing ``slot`` (as far as this node knows: exact for every slot
        up to its commit index + ALPHA)."""
        found = self.configs[0]
        for c in self.configs[1:]:
            if c.active > slot:
                break
            found = c
        return found

    def in_force(self, lo: int, hi: int) -> list[Membership]:
        """The configurations governing some slot in ``[lo, hi]``, oldest first."""
        first = self.config_for(lo)
        return [first, *(c for c in self.configs if lo < c.active <= hi)]

    def in_flight(self, commit: int) -> bool:
        """Whether the latest change does not govern yet (no other may be made until it does)."""
        return self.latest.active > commit + 1

    def member_ids(self) -> frozenset[int]:
        """Every node a configuration this node keeps names (voters and learners)."""
        configs = self.configs
        if len(configs) == 1:  # almost always: no change in flight
            return configs[0].ids
        return frozenset().union(*(c.ids for c in configs))

    def commit(self, slot: int, commands: Iterable[Command]) -> bool:
        """Judge the changes among ``commands``, the value chosen at ``slot`` (the next slot in
        order). True if one took effect."""
        if slot <= self.through:
            return False
        self.through = slot
        took = False
        for cmd in commands:
            if cmd.client != CONFIG_CLIENT:
                continue
            try:
                new = apply_change(self.latest, decode_change(cmd.data), slot, self._one_at_a_time)
            except ChangeError as exc:
                self._outcome(cmd.seq, str(exc) or "refused")
                continue
            self.configs.append(new)
            self._outcome(cmd.seq, "")
            took = True
        return took

    def skip_to(self, slot: int) -> None:
        """Slots up to ``slot`` were judged elsewhere (a snapshot covers them)."""
        self.through = max(self.through, slot)

    def as_of(self, slot: int) -> tuple[Membership, ...]:
        """What a snapshot at ``slot`` carries: the configurations chosen up to it that govern
        a slot after it."""
        chosen = [c for c in self.configs if c.epoch <= slot]
        keep = Timeline(chosen, slot)
        keep.prune(slot + 1)
        return tuple(keep.configs)

    def prune(self, slot: int) -> None:
        """Forget configurations that govern nothing from ``slot`` on."""
        while len(self.configs) > 1 and self.configs[1].active <= slot:
            self.configs.pop(0)

    def _outcome(self, seq: int, text: str) -> None:
        self.outcomes[seq] = text
        while len(self.outcomes) > _MAX_OUTCOMES:
            self.outcomes.popitem(last=False)


__all__ = ["ALPHA", "Timeline"]
