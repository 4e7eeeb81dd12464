"""Read-index bookkeeping: which reads wait for which heartbeat round, and who acknowledged it.

A read is safe to serve at the leader's read point once a quorum has acknowledged, at the
leader's ballot, a heartbeat round begun after the read arrived: no other leader can then have
decided anything this leader does not know of (etcd-raft's ReadOnlySafe).

One round at a time: reads that arrive while a round is in flight (sent, not yet acknowledged
by a quorum) wait for the NEXT round, which starts once that one is settled; so however many
reads come, each round trip to the peers confirms all the reads that came during the one
before, and a busy leader spends one round per batch, not one per read (etcd-raft's pending
read-index queue does the same). A read never counts on a round that began before it arrived:
it is given the number of the round after the latest one sent. A round that never settles (its
heartbeats lost) holds nothing up for long: the periodic heartbeat starts the next round anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PendingRead:
    ctx: int
    index: int  # the read point: serve once this slot is applied
    round: int  # the heartbeat round whose acknowledgement confirms it
    requester: int  # the node to answer (the leader itself, or a follower that asked)


class ReadTracker:
    def __init__(self) -> None:
        self.round = 0  # the leader's latest heartbeat round
        self.settled = 0  # the latest round a quorum acknowledged (this term)
        self.waiting = False  # a read waits for a round not yet sent
        self._acked: dict[int, int] = {}  # peer -> highest round it acknowledged
        self._pending: list[PendingRead] = []

    @property
    def broadcast_due(self) -> bool:
        """A read waits for a round not yet sent, and no round is in flight."""
        return self.waiting and self.settled >= self.round

    def new_term(self) -> None:
        """A new leadership: acknowledgements of an earlier one prove nothing, and none of its
        rounds is in flight."""
        self._acked = {}
        self.settled = self.round

    def queue(self, ctx: int, index: int, requester: int) -> None:
        self._pending.append(PendingRead(ctx, index, self.round + 1, requester))
        self.waiting = True

    def next_round(self) -> int:
        """Start a round: every read queued so far waits for it (no later one does)."""
        self.round += 1
        self.waiting = False
        return self.round

    def acknowledge(self, peer: int, round_: int) -> bool:
        """Record a peer's acknowledgement; True if it is news."""
        if round_ <= self._acked.get(peer, 0):
            return False
        self._acked[peer] = round_
        return True

    def confirmed(self, me: int, is_quorum: Callable[[list[int]], bool]) -> list[PendingRead]:
        """Take the reads a quorum (of every configuration in force) has now confirmed, and
        note whether the latest round is settled."""
        verdicts: dict[int, bool] = {}

        def quorum_for(round_: int) -> bool:
            if round_ not in verdicts:
                acks = [me, *(p for p, r in self._acked.items() if r >= round_)]
                verdicts[round_] = round_ <= self.round and is_quorum(acks)
            return verdicts[round_]

        if self.settled < self.round and quorum_for(self.round):
            self.settled = self.round
        done: list[PendingRead] = []
        waiting: list[PendingRead] = []
        for read in self._pending:
            (done if quorum_for(read.round) else waiting).append(read)
        self._pending = waiting
        return done

    def abandon(self) -> list[PendingRead]:
        """Leadership is lost: every waiting read fails (its caller retries elsewhere)."""
        failed, self._pending = self._pending, []
        self.waiting = False
        return failed
