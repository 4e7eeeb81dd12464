"""The messages nodes exchange. Every one names its sender and its receiver.

Phase 2 and heartbeats share one message: an ``Accept`` with no entries is a heartbeat, and its
reply, an ``Accepted`` with no slots, tells the leader the follower is alive and how far it has
learned. Fewer kinds of message means fewer paths to get wrong.
"""

from __future__ import annotations

from paxctl.core.membership import Membership
from paxctl.core.types import AcceptedEntry, Ballot, ChosenEntry, Command, Value
from paxctl.lazyclass import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    frm: int
    to: int


@dataclass(frozen=True, slots=True)
class Prepare(Message):
    """Phase 1a for every slot from ``from_slot`` on (Multi-Paxos runs phase 1 once for all)."""

    ballot: Ballot
    from_slot: int


@dataclass(frozen=True, slots=True)
class Promise(Message):
    """Phase 1b: the acceptor promised ``ballot`` and reports its votes from ``from_slot`` on.

    ``compacted`` is the slot up to which the acceptor dropped its votes behind a snapshot: a
    candidate whose ``from_slot`` is not above it cannot see those votes, so it must catch up
    before it may lead.
    """

    ballot: Ballot
    from_slot: int
    accepted: tuple[AcceptedEntry, ...]
    commit: int
    compacted: int = 0


@dataclass(frozen=True, slots=True)
class Nack(Message):
    """The acceptor has promised ``promised``, higher than the ballot it was asked to join."""

    ballot: Ballot
    promised: Ballot


@dataclass(frozen=True, slots=True)
class Accept(Message):
    """Phase 2a for each ``(slot, value)`` in ``entries`` (empty: a heartbeat).

    ``commit`` is the leader's commit index: every slot up to it is chosen, and a slot up to it
    that the receiver accepted at ``ballot`` holds the chosen value (a ballot proposes one value
    per slot, and a leader steps down before it could claim a slot another ballot decided).
    """

    ballot: Ballot
    entries: tuple[ChosenEntry, ...]
    commit: int
    #: The leader's heartbeat round; echoed in the reply, so a read can tell fresh
    #: confirmations of leadership from old ones.
    hb: int = 0


@dataclass(frozen=True, slots=True)
class Accepted(Message):
    """Phase 2b for ``slots`` at ``ballot``; ``commit`` is how far the acceptor has learned."""

    ballot: Ballot
    slots: tuple[int, ...]
    commit: int
    hb: int = 0
    #: The sender's data directory (``membership.Member.disk``): a leader promotes a learner
    #: with the disk it caught up on, so a voter that lost its disk is not that voter any more.
    disk: int = 0


@dataclass(frozen=True, slots=True)
class Forward(Message):
    """Client commands a follower passes to the node it believes leads."""

    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True)
class CatchupRequest(Message):
    """A learner asks for chosen values from ``from_slot`` on."""

    from_slot: int


@dataclass(frozen=True, slots=True)
class CatchupReply(Message):
    """Chosen values the sender knows, from the requested slot on (a bounded number)."""

    entries: tuple[ChosenEntry, ...]
    commit: int


@dataclass(frozen=True, slots=True)
class SnapshotOffer(Message):
    """State transfer, step 1: the slots asked for were compacted away behind this snapshot of
    ``size`` bytes (sha256 ``digest``). Sent only in answer to the receiver's own request; the
    receiver pulls the bytes in chunks (``core/snapshot_transfer.py``)."""

    slot: int
    configs: tuple[Membership, ...]
    size: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class SnapshotRequest(Message):
    """State transfer, step 2: ``length`` bytes from ``offset`` of the snapshot at ``slot``."""

    slot: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class SnapshotChunk(Message):
    """The bytes a ``SnapshotRequest`` asked for, cut from the snapshot the sender holds."""

    slot: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ReadIndex(Message):
    """A follower asks the leader for a linearizable read point on behalf of a client."""

    ctx: int


@dataclass(frozen=True, slots=True)
class ReadIndexReply(Message):
    """The read point for ``ctx`` (``ok`` 0: the receiver does not lead; ask again later)."""

    ctx: int
    index: int
    ok: int


@dataclass(frozen=True, slots=True)
class PreVote(Message):
    """Would you take part in a campaign at ``round``? Asked before a node raises any promise,
    so a node that was cut off (or just restarted) cannot depose a leader the others still
    hear (Raft's pre-vote, section 9.6 of Ongaro's thesis)."""

    round: int


@dataclass(frozen=True, slots=True)
class PreVoteReply(Message):
    round: int
    granted: int


@dataclass(frozen=True, slots=True)
class Relay(Message):
    """A message for the shell around the core (e.g. session heartbeats relayed to the leader).

    The core never acts on it: the driver takes it out of the inbound stream before ``step``.
    It rides the peer links, the codec and the simulator's faulty network like any other
    message, so the shell's own peer protocol needs no second transport. ``kind`` and ``body``
    are the shell's to define and to validate.
    """

    kind: int
    body: bytes


def describe_value(value: Value) -> str:
    """A short, deterministic rendering of a slot's value for traces."""
    if not value:
        return "noop"
    return "[" + ",".join(f"{c.client}:{c.seq}" for c in value) + "]"


def describe(msg: Message) -> str:
    """One trace line's worth of a message: its kind and the fields that matter."""
    head = f"{type(msg).__name__} {msg.frm}->{msg.to}"
    if isinstance(msg, Prepare):
        return f"{head} b={msg.ballot} from={msg.from_slot}"
    if isinstance(msg, Promise):
        votes = " ".join(f"{e.slot}@{e.ballot}" for e in msg.accepted)
        return (
            f"{head} b={msg.ballot} from={msg.from_slot} commit={msg.commit}"
            f" compacted={msg.compacted} votes=[{votes}]"
        )
    if isinstance(msg, Nack):
        return f"{head} b={msg.ballot} promised={msg.promised}"
    if isinstance(msg, Accept):
        slots = " ".join(f"{e.slot}={describe_value(e.value)}" for e in msg.entries)
        return f"{head} b={msg.ballot} commit={msg.commit} [{slots}]"
    if isinstance(msg, Accepted):
        return f"{head} b={msg.ballot} slots={list(msg.slots)} commit={msg.commit}"
    if isinstance(msg, Forward):
        return f"{head} {describe_value(msg.commands)}"
    if isinstance(msg, CatchupRequest):
        return f"{head} from={msg.from_slot}"
    if isinstance(msg, PreVote):
        return f"{head} round={msg.round}"
    if isinstance(msg, PreVoteReply):
        return f"{head} round={msg.round} granted={msg.granted}"
    if isinstance(msg, ReadIndex):
        return f"{head} ctx={msg.ctx}"
    if isinstance(msg, ReadIndexReply):
        return f"{head} ctx={msg.ctx} index={msg.index} ok={msg.ok}"
    if isinstance(msg, SnapshotOffer):
        return f"{head} slot={msg.slot} size={msg.size} digest={msg.digest.hex()[:12]}"
    if isinstance(msg, SnapshotRequest):
        return f"{head} slot={msg.slot} offset={msg.offset} length={msg.length}"
    if isinstance(msg, SnapshotChunk):
        return f"{head} slot={msg.slot} offset={msg.offset} bytes={len(msg.data)}"
    if isinstance(msg, CatchupReply):
        return f"{head} commit={msg.commit} slots={[e.slot for e in msg.entries]}"
    if isinstance(msg, Relay):
        return f"{head} kind={msg.kind} bytes={len(msg.body)}"
    return head


@dataclass(frozen=True, slots=True)
class Handover(Message):
    """A leader that a change removed steps down and names ``target``, a voter of the new
    configuration, to campaign at once; its followers let that campaign through (Raft's
    TimeoutNow, sent to every follower so none waits out its timer to promise it)."""

    target: int
