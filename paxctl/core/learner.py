"""The learner: which slots are chosen, and the hand-off of chosen slots to the application.

A chosen value never changes, so learning a second, different value for a slot means safety was
broken somewhere; the learner refuses it loudly instead of applying either.
"""

from __future__ import annotations

from paxctl.core.membership import Membership
from paxctl.core.types import Applied, ChosenEntry, Snapshot, Value, value_size


class SafetyViolation(AssertionError):
    """The node observed something Paxos promises can never happen."""


class Learner:
    def __init__(
        self, chosen: dict[int, Value] | None = None, snapshot: Snapshot | None = None
    ) -> None:
        #: The newest snapshot this node holds; slots up to its slot were compacted away.
        self.snapshot = snapshot
        self.base = snapshot.slot if snapshot else 0
        self.chosen: dict[int, Value] = {s: v for s, v in (chosen or {}).items() if s > self.base}
        #: Every slot up to ``commit`` is chosen (slots start at 1).
        self.commit = self.base
        #: Slots up to ``applied`` were handed to the application (the snapshot covers the base).
        self.applied = self.base
        self.new_chosen: list[ChosenEntry] = []
        self._advance_commit()

    def learn(self, slot: int, value: Value) -> bool:
        """Record that ``value`` was chosen for ``slot``; False if it was known already."""
        if slot <= self.base:
            return False  # compacted: chosen, applied and summed up in the snapshot
        known = self.chosen.get(slot)
        if known is not None:
            if known != value:
                raise SafetyViolation(f"slot {slot} learned with two different values")
            return False
        self.chosen[slot] = value
        self.new_chosen.append(ChosenEntry(slot, value))
        self._advance_commit()
        return True

    def is_chosen(self, slot: int) -> bool:
        return slot <= self.base or slot in self.chosen

    def compact(self, slot: int, app: bytes, configs: tuple[Membership, ...]) -> Snapshot:
        """Sum up every slot up to ``slot`` (the last applied one) in a snapshot; drop them."""
        if slot != self.applied or slot <= self.base:
            raise ValueError(f"can only snapshot at the applied slot {self.applied}, not {slot}")
        self.snapshot = Snapshot(slot, configs, app)
        self._drop_through(slot)
        return self.snapshot

    def install(self, snapshot: Snapshot) -> bool:
        """Jump to a snapshot from a peer; False if this node already has what it covers."""
        if snapshot.slot <= self.commit:
            return False
        self.snapshot = snapshot
        self._drop_through(snapshot.slot)
        self.commit = self.applied = snapshot.slot
        self._advance_commit()
        return True

    def _drop_through(self, slot: int) -> None:
        self.base = slot
        self.chosen = {s: v for s, v in self.chosen.items() if s > slot}

    def _advance_commit(self) -> None:
        while self.commit + 1 in self.chosen:
            self.commit += 1

    def entries_from(
        self, slot: int, limit: int, limit_bytes: int = 2**62
    ) -> tuple[ChosenEntry, ...]:
        """Up to ``limit`` chosen slots (about ``limit_bytes``) from ``slot`` on, in order."""
        out: list[ChosenEntry] = []
        used = 0
        s = max(slot, self.base + 1)  # slots start at 1; compacted ones go by snapshot
        while len(out) < limit and s <= self.commit:
            used += value_size(self.chosen[s])
            if out and used > limit_bytes:
                return tuple(out)
            out.append(ChosenEntry(s, self.chosen[s]))
            s += 1
        if len(out) < limit and len(self.chosen) > self.commit:  # slots beyond a hole help too
            later = sorted(x for x in self.chosen if x > max(self.commit, slot - 1))
            out.extend(ChosenEntry(x, self.chosen[x]) for x in later[: limit - len(out)])
        return tuple(out)

    def take_committed(self) -> list[Applied]:
        """The chosen slots the application has not seen yet, in slot order.

        Every command of a slot is handed on, retries included: exactly-once is the state
        machine's business (it keeps each session's last ``seq`` and answers a retry from there).
        """
        out = []
        while self.applied < self.commit:
            self.applied += 1
            out.append(Applied(self.applied, self.chosen[self.applied]))
        return out

    def take_new_chosen(self) -> list[ChosenEntry]:
        new, self.new_chosen = self.new_chosen, []
        return new
