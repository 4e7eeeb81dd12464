"""Value types shared by every part of the consensus core.

They are immutable so that a message, a log entry and a Ready batch can be handed from one part of
the node to another (or kept by a test) without anyone seeing it change afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar

from paxctl.lazyclass import dataclass

if TYPE_CHECKING:
    from paxctl.core.membership import Membership

T = TypeVar("T")


class Ballot(NamedTuple):
    """A proposal number ``(round, node)``; tuple order makes ballots totally ordered.

    Two proposers never share a ballot because the node id breaks every tie, and a node never
    reuses a round because the highest round it issued is part of its persisted state.
    """

    round: int
    node: int

    def __str__(self) -> str:
        return f"{self.round}.{self.node}"


#: Smaller than every ballot a proposer can issue (node ids start at 1).
ZERO_BALLOT = Ballot(0, 0)


@dataclass(frozen=True, slots=True)
class Command:
    """One client command. ``(client, seq)`` identifies it, so a retry takes effect only once."""

    client: int
    seq: int
    data: bytes


#: The value of one slot: a batch of commands decided together. The empty batch is the no-op
#: a new leader uses to fill holes in the log.
Value = tuple[Command, ...]
NOOP: Value = ()

#: Encoding overhead counted per command when sizing batches and messages (a generous bound).
COMMAND_OVERHEAD = 32


def value_size(value: Value) -> int:
    """An upper bound of a value's encoded size, to keep batches and messages within limits."""
    return sum(len(c.data) + COMMAND_OVERHEAD for c in value) + 8


def chunks(
    values: list[T], limit_count: int, limit_bytes: int, size: Callable[[T], int]
) -> list[list[T]]:
    """Split ``values`` in order into runs of at most ``limit_count`` items and about
    ``limit_bytes`` bytes each (an item larger than ``limit_bytes`` travels alone)."""
    out: list[list[T]] = []
    run: list[T] = []
    used = 0
    for item in values:
        n = size(item)
        if run and (len(run) >= limit_count or used + n > limit_bytes):
            out.append(run)
            run, used = [], 0
        run.append(item)
        used += n
    if run:
        out.append(run)
    return out


@dataclass(frozen=True, slots=True)
class AcceptedEntry:
    """An acceptor's vote: it accepted ``value`` for ``slot`` at ``ballot``."""

    slot: int
    ballot: Ballot
    value: Value


@dataclass(frozen=True, slots=True)
class ChosenEntry:
    """A learner's knowledge that ``value`` was chosen for ``slot``."""

    slot: int
    value: Value


@dataclass(frozen=True, slots=True)
class Applied:
    """A chosen slot handed to the application, in slot order.

    ``commands`` is the slot's whole value, retries included: the core keeps no table of what
    took effect. The state machine does, in log order (``StateMachine.apply_command``), so a
    retry chosen in a second slot is answered there rather than applied again.
    """

    slot: int
    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The application's state after applying every slot up to ``slot``.

    It carries what a node needs to continue from there without the log behind it: the
    configurations chosen up to ``slot`` that govern a later slot, and the application's own
    bytes (which hold the exactly-once table too: it is the state machine's, see
    ``paxctl.statemachine.machine``).
    """

    slot: int
    configs: tuple[Membership, ...]
    app: bytes
    #: Set once the snapshot is on disk and held only to serve peers: its bytes are read from
    #: there (``app`` is then empty), since holding them costs as much memory as the state.
    stored: SnapshotBytes | None = None

    @property
    def body(self) -> SnapshotBytes:
        """The application's bytes, wherever they are held (what peers are served)."""
        return self.app if self.stored is None else self.stored


class SnapshotBytes(Protocol):
    """Read-only bytes that may live outside memory (a snapshot's file): a length and slices."""

    def __len__(self) -> int: ...

    def __getitem__(self, piece: slice, /) -> bytes: ...
