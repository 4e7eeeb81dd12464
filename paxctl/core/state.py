"""What crosses the boundary between the pure core and the shell that drives it.

``Config`` goes in; ``Ready`` batches come out; ``DurableState`` is what a node's disk holds, and
the only thing a restarted node is built from. Keeping all three here makes the contract with the
driver readable in one page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paxctl.core.bugs import NO_BUGS, PlantedBugs
from paxctl.core.bugs import PLANTED_BUGS as PLANTED_BUGS  # re-exported: the names
from paxctl.core.membership import ALPHA
from paxctl.core.messages import Message
from paxctl.core.types import (
    ZERO_BALLOT,
    AcceptedEntry,
    Applied,
    Ballot,
    ChosenEntry,
    Snapshot,
    Value,
)

#: The default cap on a snapshot pulled from a peer (see README, "Snapshots and state transfer").
MAX_SNAPSHOT_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class Config:
    """Static settings of one node; times are in ticks of the driver's clock."""

    node_id: int
    #: The founding voters (the configuration until the log or a snapshot says otherwise). For
    #: a node that ``join``s, only the members it asks for the cluster's state.
    voters: tuple[int, ...]
    #: A follower that hears no leader for a random time in [E, 2E) ticks starts a campaign.
    election_ticks: int = 10
    #: A leader sends heartbeats (and retransmits unacknowledged proposals) this often.
    heartbeat_ticks: int = 2
    #: Slots a leader may have in flight beyond its commit index (the alpha window).
    window: int = 16
    #: Client commands decided together in one slot at most.
    max_batch: int = 64
    #: Commands a node buffers while it knows no leader; more are refused.
    max_pending: int = 10_000
    #: Chosen values sent in one catch-up reply, and accepts sent in one message.
    max_entries: int = 64
    #: An acceptor votes only for slots up to its commit index plus this (a leader proposes
    #: within ``window`` of its own commit; a follower further behind catches up by request).
    accept_window: int = 1024
    #: Bytes of commands in one slot, and of entries in one message (a bigger single command
    #: still goes, alone): keeps every message well inside the transport's frame limit.
    max_batch_bytes: int = 1024 * 1024
    max_message_bytes: int = 2 * 1024 * 1024
    #: State transfer (``core/snapshot_transfer.py``): bytes asked for per chunk, and chunks
    #: in flight at once. A chunk must fit in a message (``max_message_bytes``).
    snapshot_chunk_bytes: int = 1024 * 1024
    snapshot_window: int = 4
    #: The largest snapshot this node will pull from a peer; a bigger offer is refused. Bytes
    #: are held only as they arrive (nothing is allocated from a peer's claim).
    max_snapshot_bytes: int = MAX_SNAPSHOT_BYTES
    #: After N failed campaigns in a row, the timeout range is stretched by min(2**N, this).
    max_backoff: int = 8
    #: Ask a majority before campaigning (off only in tests of the campaign itself).
    pre_vote: bool = True
    #: This node's data directory (``membership.Member.disk``): 0 for a founding member's
    #: bootstrapped one; a node whose directory was made to join has a random one.
    disk: int = 0
    #: A node added to a running cluster: it knows no configuration until it has the
    #: cluster's state (a snapshot), and votes only where one names it with its ``disk``.
    join: bool = False
    #: The founding members' peer addresses (``host:port``), for the founding configuration.
    addresses: tuple[tuple[int, str], ...] = ()
    #: Test only: known bugs to plant (see ``core/bugs.py``).
    planted_bugs: PlantedBugs = NO_BUGS

    def __post_init__(self) -> None:
        if self.join == (self.node_id in self.voters):
            raise ValueError(
                f"node {self.node_id} must be among the voters {self.voters}"
                if not self.join
                else f"a joining node {self.node_id} cannot be one of its seeds {self.voters}"
            )
        if not self.voters or min(self.voters) < 1 or len(set(self.voters)) != len(self.voters):
            raise ValueError("voter ids must be distinct positive integers")
        if not 0 <= self.disk < 2**63 or (self.join and not self.disk):
            raise ValueError("a joining node needs a nonzero disk id")
        if not 0 < self.heartbeat_ticks < self.election_ticks:
            raise ValueError("heartbeat_ticks must be positive and below election_ticks")
        if self.window < 1 or self.max_batch < 1 or self.max_entries < 1:
            raise ValueError("window, max_batch and max_entries must be positive")
        if self.window > ALPHA:
            raise ValueError(f"window must be at most ALPHA ({ALPHA}): see core/membership.py")
        if self.accept_window < self.window:
            raise ValueError("accept_window must be at least the window")
        if not 0 < self.snapshot_chunk_bytes <= self.max_message_bytes - 1024:
            raise ValueError("snapshot_chunk_bytes must be positive and fit in a message")
        if self.snapshot_window < 1:
            raise ValueError("snapshot_window must be positive")


@dataclass(frozen=True, slots=True)
class HardState:
    """The acceptor's promise and the highest round this node ever issued as a proposer."""

    promised: Ballot
    max_round: int


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read point: serve the read ``ctx`` once slot ``index`` is applied.

    ``index`` None means the read could not be confirmed (no leader, or leadership lost): the
    caller retries, perhaps at another node.
    """

    ctx: int
    index: int | None


@dataclass(frozen=True)
class Ready:
    """One batch of work for the driver, handled strictly in this order:

    0. the first ``early`` of ``messages`` may be sent at once, while step 1 runs (nothing in
       them depends on this batch);
    1. persist ``snapshot`` (if set: one received from a peer), ``hard_state`` (if set),
       ``votes`` and ``chosen`` (one fsync for the log);
    2. send ``messages``;
    3. restore the application from ``snapshot`` (if set), then apply ``committed`` in order;
       serve each of ``reads`` once its index is applied;
    4. call ``Node.advance()``.

    Messages may depend on the state in the same batch, so step 2 never starts before step 1 ends.
    The ``early`` ones are only a leader's Accepts, and only in a batch that changes neither its
    promise nor its highest round (so their ballot is already durable) and needs no synced
    commit: a leader's own vote counts only from ``advance()`` on, once it is durable, so no
    commit index it sends rests on a vote it could forget (etcd's leader writes its log in
    parallel with replicating it in the same way).
    """

    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    votes: tuple[AcceptedEntry, ...] = ()
    chosen: tuple[ChosenEntry, ...] = ()
    messages: tuple[Message, ...] = ()
    early: int = 0
    committed: tuple[Applied, ...] = ()
    reads: tuple[ReadState, ...] = ()
    #: Sync ``chosen`` too, though no vote needs it: the commit index passed the last slot
    #: before a configuration governs, and a node removed by it stops once a voter of it
    #: said so (``Roles.removed``): such a voter must not forget it in a crash.
    sync_chosen: bool = False

    @property
    def must_persist(self) -> bool:
        return (
            self.hard_state is not None
            or self.snapshot is not None
            or bool(self.votes)
            or bool(self.chosen)
        )

    def __bool__(self) -> bool:
        return self.must_persist or bool(self.messages) or bool(self.committed) or bool(self.reads)


@dataclass
class DurableState:
    """Everything a node keeps across a crash: its hard state, its votes, what it learned.

    ``compacted`` is the slot up to which votes and chosen values were dropped behind a snapshot
    (``snapshot`` is the newest valid one, which may be older if the newest was found corrupt).
    """

    promised: Ballot = ZERO_BALLOT
    max_round: int = 0
    votes: dict[int, AcceptedEntry] = field(default_factory=dict)
    chosen: dict[int, Value] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    compacted: int = 0

    def persist(self, ready: Ready) -> None:
        """Merge a Ready's state into this one, as a durable write of it would."""
        if ready.snapshot is not None:
            self.install(ready.snapshot)
        if ready.hard_state is not None:
            self.promised = ready.hard_state.promised
            self.max_round = ready.hard_state.max_round
        for vote in ready.votes:
            self.votes[vote.slot] = vote
        for entry in ready.chosen:
            self.chosen[entry.slot] = entry.value

    def install(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` and drop what it covers."""
        if self.snapshot is not None and snapshot.slot <= self.snapshot.slot:
            return
        self.snapshot = snapshot
        self.compacted = max(self.compacted, snapshot.slot)
        self.votes = {s: v for s, v in self.votes.items() if s > snapshot.slot}
        self.chosen = {s: v for s, v in self.chosen.items() if s > snapshot.slot}

    def copy(self) -> DurableState:
        """An independent copy (entries are immutable, so copying the maps is enough)."""
        return DurableState(
            self.promised,
            self.max_round,
            dict(self.votes),
            dict(self.chosen),
            self.snapshot,
            self.compacted,
        )
