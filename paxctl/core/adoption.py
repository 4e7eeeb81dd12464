"""Phase 1's conclusion as a pure function: what a new leader must propose in each open slot.

Paxos Made Simple, section 3: in every slot from the first unchosen one, the value voted with
the highest ballot among the promises of a quorum ("pmax"), or a no-op for a hole below the
highest slot anybody voted for or learned. Kept apart from the node so it is tested by tables.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from paxctl.core.types import NOOP, AcceptedEntry, Ballot, Value


@dataclass(frozen=True)
class Adoption:
    """The proposals a new leader starts with."""

    #: Slot -> value to propose, in slot order (slots known chosen need none).
    proposals: dict[int, Value]
    adopted: int  # slots taking a value somebody voted for
    filled: int  # holes filled with a no-op
    #: The highest slot covered: new commands go after it, and once it is applied nothing an
    #: earlier leader had chosen is still missing here.
    top: int


def adopt(
    votes: Iterable[AcceptedEntry],
    first: int,
    commit: int,
    chosen: Collection[int],
    compacted: int = 0,
) -> Adoption:
    """Adopt ``votes`` (from a quorum's promises) for slots ``first`` and up.

    ``commit``: every slot up to it is chosen here; ``chosen``: slots known chosen beyond it;
    ``compacted``: slots up to it are chosen and summed up in a snapshot.
    """
    best: dict[int, tuple[Ballot, Value]] = {}
    for vote in votes:
        if vote.slot not in best or vote.ballot > best[vote.slot][0]:
            best[vote.slot] = (vote.ballot, vote.value)
    top = max(commit, max(best, default=0), max(chosen, default=0))
    proposals: dict[int, Value] = {}
    adopted = filled = 0
    for slot in range(first, top + 1):
        if slot <= compacted or slot in chosen:
            continue
        if slot in best:
            proposals[slot] = best[slot][1]
            adopted += 1
        else:
            proposals[slot] = NOOP
            filled += 1
    return Adoption(proposals, adopted, filled, top)
