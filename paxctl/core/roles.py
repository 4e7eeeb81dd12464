"""The node's state, and the only code that changes its role.

A node is a follower, a candidate or a leader. Which one, whom it follows, its election
timer and the state each role keeps change only in ``become_follower``, ``become_candidate``
and ``become_leader``; ``Node`` (node.py) decides when, from ticks and messages.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from paxctl.core.acceptor import Acceptor
from paxctl.core.adoption import adopt
from paxctl.core.catchup import CatchUp
from paxctl.core.election import ElectionTimer
from paxctl.core.learner import Learner
from paxctl.core.messages import (
    Accept,
    Message,
    Prepare,
    PreVote,
    ReadIndexReply,
)
from paxctl.core.proposer import Proposal, Proposer
from paxctl.core.quorum import has_quorum, majority
from paxctl.core.reads import PendingRead, ReadTracker
from paxctl.core.snapshot_transfer import SnapshotReceiver, SnapshotSender
from paxctl.core.state import Config, DurableState, HardState, ReadState
from paxctl.core.types import (
    AcceptedEntry,
    Ballot,
    ChosenEntry,
    Command,
    Snapshot,
    chunks,
    value_size,
)
from paxctl.core.validate import MAX_ROUND, Rejection

if TYPE_CHECKING:  # the core never draws randomness of its own: the driver injects a seeded Random
    import random


def _accept_any(snapshot: Snapshot) -> bool:
    return True


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Roles:
    """A node's state and role transitions; ``Node`` adds the facade and the message handlers."""

    def __init__(
        self, config: Config, rng: random.Random, state: DurableState | None = None
    ) -> None:
        state = state or DurableState()
        self.config = config
        self.id = config.node_id
        self._bugs = config.planted_bugs
        self._voters = frozenset(config.voters)
        self._peers = tuple(sorted(v for v in config.voters if v != self.id))
        n = len(config.voters)
        self._quorum = n // 2 if self._bugs.minority_quorum else majority(n)

        self.acceptor = Acceptor(
            state.promised,
            state.votes,
            accept_lower=self._bugs.accept_lower_ballot,
            compacted=state.compacted,
        )
        self.learner = Learner(state.chosen, state.snapshot)
        self.proposer = Proposer()
        self.max_round = state.max_round
        self._max_round_changed = False

        self.role = Role.FOLLOWER
        self.ballot = state.promised  # the ballot this node campaigns or leads with
        self.leader: int | None = None  # who this node believes leads, if anyone
        self.now = 0  # ticks since this incarnation started
        self._heard_leader_at: int | None = None
        self._timer = ElectionTimer(config.election_ticks, config.max_backoff, rng)
        self._seen_round = 0  # the highest round seen in a Prepare this node ignored
        self._prevote_round = 0  # the round of the pre-vote under way (0: none)
        self._prevotes: set[int] = set()

        # Leader state.
        self._heard: dict[int, int] = {}  # peer -> when it last answered at our ballot
        self._leader_since = 0
        self._heartbeat_elapsed = 0
        # Read-index state (leader): heartbeat rounds and the reads waiting on them.
        self._reads = ReadTracker()
        self._commit_sent = 0  # the commit index the last Accept carried
        self._read_results: list[ReadState] = []
        self.catchup = CatchUp(self.id, self._peers, config.heartbeat_ticks, rng)
        #: Read ctx -> the node a ReadIndex for it went to (a reply is taken only from there).
        self.read_asks: dict[int, int] = {}
        #: Peer messages dropped by ``validate.check``, with why, for the shell to log.
        self.rejections: deque[tuple[Message, Rejection]] = deque(maxlen=64)

        #: How often each rare path ran: for status pages, and for tests that must see them run.
        self.counters: Counter[str] = Counter()
        # State transfer in chunks, both sides (``snapshot_transfer.py``).
        self._snap_out = SnapshotSender(config.max_message_bytes - 1024, 4 * config.election_ticks)
        self._snap_in = SnapshotReceiver(
            self.id,
            config.voters,
            chunk=config.snapshot_chunk_bytes,
            window=config.snapshot_window,
            retry_ticks=max(1, config.election_ticks // 2),  # TCP rarely loses: not too eager
            give_up_ticks=4 * config.election_ticks,
            max_bytes=config.max_snapshot_bytes,
            counters=self.counters,
        )
        #: The application's check of a pulled snapshot's bytes (decode and verify them): a
        #: snapshot it refuses is never persisted nor applied. The shell sets it.
        self.check_snapshot: Callable[[Snapshot], bool] = _accept_any

        self._local: deque[Message] = deque()  # messages to self, handled before returning
        self._outbox: list[Message] = []
        self._in_ready = False
        self._installed: Snapshot | None = None  # a peer's snapshot for the next Ready
        self._deferred: tuple[HardState | None, list[AcceptedEntry]] = (None, [])  # planted bug

    def _offer(self, command: Command) -> bool:
        """Queue ``command`` for a slot (or for the leader); False if the queue is full.

        An identical ``(client, seq)`` already waiting or in flight adds nothing. One already
        applied is not filtered here: the state machine answers it from its table if it is
        chosen again (the core keeps no exactly-once table of its own).
        """
        if self.proposer.has(command):
            return True
        if len(self.proposer.pending) >= self.config.max_pending:
            return False
        self.proposer.queue(command)
        return True

    def become_follower(
        self, leader: int | None, ballot: Ballot | None = None, failed: bool = False
    ) -> None:
        """Follow ``leader`` (None: none known) and restart the election timer.

        ``ballot``: that leader showed itself at this ballot, which ends any campaign back-off;
        a candidate or leader yields only to a higher one. ``failed``: our campaign was refused.
        """
        if self.role is not Role.FOLLOWER and (ballot is None or ballot > self.ballot):
            self.counters["step_downs"] += 1
            for read in self._reads.abandon():
                self._release_read(read, None)
            for cmd in self.proposer.take_undecided():  # kept for the next leader
                self._offer(cmd)
            self.role = Role.FOLLOWER
        self.leader = leader
        if ballot is not None:
            self.ballot = max(self.ballot, ballot)
            self._heard_leader_at = self.now
            self._timer.failed_campaigns = 0
            self._prevote_round = 0
        if failed:
            self._timer.failed_campaigns += 1
        self._timer.restart()

    def become_candidate(self, pre_voted: bool = False) -> None:
        """Campaign: phase 1 with a ballot above every round this node has issued or seen.

        Unless ``pre_voted``, first only ask whether a majority would follow (a pre-vote), so a
        node cut off from the cluster raises nothing durable and disrupts nobody on return.
        """
        if not pre_voted:
            if self._prevote_round or self.role is Role.CANDIDATE:
                self._timer.failed_campaigns += 1  # the last attempt got nowhere: back off
            self._timer.restart()
            self._prevote_round = self._next_round()
            self._prevotes = {self.id}
            self.counters["pre_votes"] += 1
            if self.config.pre_vote and not has_quorum(self._prevotes, self._voters, self._quorum):
                for peer in self._peers:
                    self._send(PreVote(self.id, peer, self._prevote_round))
                return
        self._prevote_round = 0
        if self._next_round() > MAX_ROUND:
            self.counters["round_cap"] += 1  # unreachable: peers' rounds are bounded on receipt
            return
        for cmd in self.proposer.take_undecided():
            self._offer(cmd)
        self.max_round = self._next_round()
        self._max_round_changed = True
        self.ballot = Ballot(self.max_round, self.id)
        self.role = Role.CANDIDATE
        self.leader = None
        self._heard_leader_at = None
        self.proposer.campaign(self.learner.commit + 1)
        self.counters["campaigns"] += 1
        self._timer.restart()
        self._send_prepares((self.id, *self._peers))

    def become_leader(self) -> None:
        """A quorum promised our ballot: adopt what it voted for and start phase 2."""
        self.role = Role.LEADER
        self.leader = self.id
        self._timer.failed_campaigns = 0
        self._leader_since = self.now
        self._heard = {}
        self._reads.new_term()
        for cmd in self.proposer.take_undecided():  # (none: a candidate has nothing in flight)
            self._offer(cmd)
        promises = self.proposer.promises.values()
        votes = () if self._bugs.skip_adoption else (v for p in promises for v in p.accepted)
        learner = self.learner
        first = self.proposer.campaign_from
        plan = adopt(votes, first, learner.commit, learner.chosen.keys(), learner.base)
        self.counters["elected"] += 1
        if plan.adopted:
            self.counters["adopted"] += plan.adopted
        if plan.filled:
            self.counters["noop_fills"] += plan.filled
        self.proposer.lead(plan)
        self._send_accepts(self.proposer.inflight, (self.id, *self._peers))

    # ------------------------------------------------------------------ what the transitions use

    def _send(self, msg: Message) -> None:
        if msg.to == self.id:
            self._local.append(msg)
        else:
            self._outbox.append(msg)

    def known_round(self) -> int:
        """The highest round this node has issued, promised, followed or seen."""
        return max(self.max_round, self.acceptor.promised.round, self.ballot.round,
                   self._seen_round)  # fmt: skip

    @property
    def heartbeat_round(self) -> int:
        """The leader's latest heartbeat round (an Accepted may acknowledge up to it)."""
        return self._reads.round

    def _next_round(self) -> int:
        return self.known_round() + 1

    def _send_prepares(self, to: Iterable[int]) -> None:
        for peer in to:
            self._send(Prepare(self.id, peer, self.ballot, self.proposer.campaign_from))

    def _send_accepts(self, proposals: dict[int, Proposal], to: Iterable[int]) -> None:
        entries = [ChosenEntry(s, proposals[s].value) for s in sorted(proposals)]
        runs = chunks(
            entries,
            self.config.max_entries,
            self.config.max_message_bytes,
            lambda e: value_size(e.value),
        ) or [[]]  # no entries: a heartbeat
        for peer in to:
            for run in runs:
                commit = self._commit_sent = self.learner.commit
                hb = self._reads.round
                self._send(Accept(self.id, peer, self.ballot, tuple(run), commit, hb))

    def _release_read(self, read: PendingRead, index: int | None) -> None:
        if read.requester == self.id:
            self._read_results.append(ReadState(read.ctx, index))
        else:
            ok = int(index is not None)
            self._send(ReadIndexReply(self.id, read.requester, read.ctx, index or 0, ok))
