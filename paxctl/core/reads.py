"""Read-index bookkeeping: which reads wait for which heartbeat round, and who acknowledged it.

A read is safe to serve at the leader's read point once a quorum has acknowledged, at the
leader's ballot, a heartbeat round begun after the read arrived: no other leader can then have
decided anything this leader does not know of (etcd-raft's ReadOnlySafe). Reads that arrive
together share one round.
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
        self.broadcast_due = False  # a read waits for a round not yet sent
        self._acked: dict[int, int] = {}  # peer -> highest round it acknowledged
        self._pending: list[PendingRead] = []

    def new_term(self) -> None:
        """A new leadership: acknowledgements of an earlier one prove nothing."""
        self._acked = {}

    def queue(self, ctx: int, index: int, requester: int) -> None:
        self._pending.append(PendingRead(ctx, index, self.round + 1, requester))
        self.broadcast_due = True

    def next_round(self) -> int:
        self.round += 1
        self.broadcast_due = False
        return self.round

    def acknowledge(self, peer: int, round_: int) -> bool:
        """Record a peer's acknowledgement; True if it is news."""
        if round_ <= self._acked.get(peer, 0):
            return False
        self._acked[peer] = round_
        return True

    def confirmed(self, me: int, is_quorum: Callable[[list[int]], bool]) -> list[PendingRead]:
        """Take the reads a quorum (of every configuration in force) has now confirmed."""
        done, waiting = [], []
        for read in self._pending:
            acks = [me, *(p for p, r in self._acked.items() if r >= read.round)]
            if read.round <= self.round and is_quorum(acks):
                done.append(read)
            else:
                waiting.append(read)
        self._pending = waiting
        return done

    def abandon(self) -> list[PendingRead]:
        """Leadership is lost: every waiting read fails (its caller retries elsewhere)."""
        failed, self._pending = self._pending, []
        self.broadcast_due = False
        return failed
