"""The Multi-Paxos node: proposer, acceptor and learner behind one sans-I/O facade.

The driver feeds it ``tick()``, ``step(message)`` and ``propose(command)``, collects the work that
follows with ``ready()`` and reports it done with ``advance()``. Nothing in here reads a clock,
touches a socket or a file, or draws randomness from anywhere but the ``random.Random`` it is
given, so a seeded simulator can replay any run exactly.

Leadership (the distinguished proposer) works as in Paxos Made Simple, section 3: a node whose
election timer runs out picks a ballot above every round it has seen, runs phase 1 once for every
slot from its first unchosen one, adopts in each slot the value voted with the highest ballot,
fills holes with no-ops, and then runs phase 2 for new commands within a window of slots.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from paxctl.core.acceptor import Acceptor
from paxctl.core.adoption import adopt
from paxctl.core.learner import Learner
from paxctl.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    CatchupRequest,
    Forward,
    InstallSnapshot,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndex,
    ReadIndexReply,
)
from paxctl.core.quorum import has_quorum, majority
from paxctl.core.reads import PendingRead, ReadTracker
from paxctl.core.state import Config, DurableState, HardState, ReadState, Ready
from paxctl.core.types import (
    COMMAND_OVERHEAD,
    AcceptedEntry,
    Ballot,
    ChosenEntry,
    Command,
    Snapshot,
    Value,
    chunks,
    value_size,
)

if TYPE_CHECKING:  # the core never draws randomness of its own: the driver injects a seeded Random
    import random

#: The most slots a follower checks against a leader's commit index per message, so that a node
#: far behind does bounded work per heartbeat and catches up by request instead.
_MAX_COMMIT_SCAN = 1024


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass
class _Proposal:
    """A value this leader proposed for one slot, and the acceptors that voted for it."""

    value: Value
    acks: set[int] = field(default_factory=set)


class Node:
    def __init__(
        self, config: Config, rng: random.Random, state: DurableState | None = None
    ) -> None:
        state = state or DurableState()
        self.config = config
        self.id = config.node_id
        self._rng = rng
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
        self.max_round = state.max_round
        self._max_round_changed = False

        self.role = Role.FOLLOWER
        self.ballot = state.promised  # the ballot this node campaigns or leads with
        self.leader: int | None = None  # who this node believes leads, if anyone
        self.now = 0  # ticks since this incarnation started
        self._heard_leader_at: int | None = None
        self._elapsed = 0
        self._failed_campaigns = 0
        self._timeout = self._random_timeout()
        self._seen_round = 0  # the highest round seen in a Prepare this node ignored
        self._prevote_round = 0  # the round of the pre-vote under way (0: none)
        self._prevotes: set[int] = set()

        # Candidate state.
        self._promises: dict[int, Promise] = {}
        self._campaign_from = 1
        # Leader state.
        self._inflight: dict[int, _Proposal] = {}
        self._inflight_ids: set[tuple[int, int]] = set()  # commands in _inflight, for dedup
        self._next_slot = 1
        self._ready_slot = 0  # the last slot a new leader adopted (see leader_ready)
        self._heard: dict[int, int] = {}
        self._leader_since = 0
        self._heartbeat_elapsed = 0
        # Read-index state (leader): heartbeat rounds and the reads waiting on them.
        self._reads = ReadTracker()
        self._commit_sent = 0  # the commit index the last Accept carried
        self._read_results: list[ReadState] = []
        # Commands waiting for a slot (leader) or for a known leader (others).
        self._pending: deque[Command] = deque()
        self._pending_ids: set[tuple[int, int]] = set()
        # Catch-up bookkeeping.
        self._catchup_target = 0
        self._catchup_sent_at: int | None = None

        #: How often each rare path ran: for status pages, and for tests that must see them run.
        self.counters: Counter[str] = Counter()
        self._local: deque[Message] = deque()  # messages to self, handled before returning
        self._outbox: list[Message] = []
        self._in_ready = False
        self._installed: Snapshot | None = None  # a peer's snapshot for the next Ready
        self._deferred: tuple[HardState | None, list[AcceptedEntry]] = (None, [])  # planted bug

    # ------------------------------------------------------------------ public facade

    def tick(self) -> None:
        """One unit of time passed: drive timers, heartbeats and retransmissions."""
        self.now += 1
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._elapsed += 1
            if self._elapsed >= self._timeout:
                self._pre_vote()
            elif self.role is Role.CANDIDATE and self._elapsed % self.config.heartbeat_ticks == 0:
                self._send_prepares(p for p in self._peers if p not in self._promises)
        self._maybe_request_catchup(None)
        self._drain_local()

    def step(self, msg: Message) -> None:
        """Handle one message from a peer (the shell has decoded and checked it)."""
        if msg.to != self.id or (msg.frm not in self._voters and not isinstance(msg, Forward)):
            return
        self._handle(msg)
        self._drain_local()

    def propose(self, command: Command) -> bool:
        """Ask the cluster to decide ``command``; False if this node cannot take it now.

        Acceptance is not a promise: a proposal can still be lost (a leader crashes, a message is
        dropped), so clients retry with the same ``(client, seq)`` until they see it applied.
        """
        if self.learner.clients.is_applied(command):
            return True
        key = (command.client, command.seq)
        if key in self._pending_ids or key in self._inflight_ids:
            return True
        if len(self._pending) >= self.config.max_pending:
            return False
        self._pending.append(command)
        self._pending_ids.add(key)
        return True

    def read_index(self, ctx: int) -> None:
        """Ask for a linearizable read point for the read ``ctx`` (a number the driver picks).

        The answer comes in a later Ready's ``reads``: serve the read once that slot is applied.
        The leader answers after one round of heartbeats that a quorum acknowledged at its
        ballot, so no other leader can have decided anything it does not know of (etcd's
        ReadOnlySafe). Reads that arrive together share one round.
        """
        if self._bugs.stale_reads:
            self._read_results.append(ReadState(ctx, self.learner.commit))
        elif self.role is Role.LEADER:
            self._queue_read(ctx, self.id)
        elif self.leader is not None and self.leader != self.id:
            self._send(ReadIndex(self.id, self.leader, ctx))
        else:
            self._read_results.append(ReadState(ctx, None))
        self._drain_local()

    def ready(self) -> Ready:
        """Collect everything to persist, send and apply since the last batch."""
        if self._in_ready:
            raise RuntimeError("ready() called again before advance()")
        self._flush_pending()
        if self._reads.broadcast_due:
            self._heartbeat()
        elif self.role is Role.LEADER and self.learner.commit > self._commit_sent:
            # Tell followers at once, so a client waiting on one of them is answered now
            # rather than at the next heartbeat.
            self._send_accepts({}, self._peers)
        self._drain_local()
        promise_changed, votes = self.acceptor.take_changes()
        hard_state = None
        if promise_changed or self._max_round_changed:
            hard_state = HardState(self.acceptor.promised, self.max_round)
            self._max_round_changed = False
        if self._bugs.reply_before_persist:
            (hard_state, votes), self._deferred = self._deferred, (hard_state, votes)
        ready = Ready(
            hard_state=hard_state,
            snapshot=self._installed,
            votes=tuple(votes),
            chosen=tuple(self.learner.take_new_chosen()),
            messages=tuple(self._outbox),
            committed=tuple(self.learner.take_committed()),
            reads=tuple(self._read_results),
        )
        self._read_results = []
        self._outbox = []
        self._installed = None
        self._in_ready = bool(ready)
        return ready

    def advance(self) -> None:
        """The driver persisted, sent and applied the last Ready."""
        self._in_ready = False

    def compact(self, slot: int, app: bytes) -> Snapshot:
        """Sum up the log up to ``slot`` (the last applied slot) in a snapshot of ``app``.

        The node forgets its votes and chosen values up to there; the driver stores the snapshot
        it returns, then may drop the log behind it. Laggards get this snapshot by catch-up.
        """
        snapshot = self.learner.compact(slot, app, self.config.voters)
        self.acceptor.compact(slot)
        return snapshot

    def is_applied(self, command: Command) -> bool:
        """Whether ``command`` already took effect here (so its client can be answered)."""
        return self.learner.clients.is_applied(command)

    @property
    def leader_ready(self) -> bool:
        """Leader, and everything an earlier leader may have had chosen is applied here.

        From this point no command proposed under a lower ballot can still be chosen (a quorum
        promised this ballot, and phase 1 adopted every value such a quorum had voted for), so
        decisions the shell makes from the applied state, such as expiring a session, cannot
        be overtaken by an older leader's decision still in flight.
        """
        return self.role is Role.LEADER and self.learner.applied >= self._ready_slot

    def status(self) -> dict[str, object]:
        """A snapshot of the node's view, for status commands and traces."""
        return {
            "id": self.id,
            "role": self.role.value,
            "ballot": str(self.ballot),
            "promised": str(self.acceptor.promised),
            "leader": self.leader,
            "commit": self.learner.commit,
            "compacted": self.acceptor.compacted,
            "applied": self.learner.applied,
            "pending": len(self._pending),
            "inflight": len(self._inflight),
        }

    # ------------------------------------------------------------------ message dispatch

    def _handle(self, msg: Message) -> None:
        if isinstance(msg, Accept):
            self._on_accept(msg)
        elif isinstance(msg, Accepted):
            self._on_accepted(msg)
        elif isinstance(msg, Prepare):
            self._on_prepare(msg)
        elif isinstance(msg, Promise):
            self._on_promise(msg)
        elif isinstance(msg, Nack):
            self._on_nack(msg)
        elif isinstance(msg, Forward):
            for cmd in msg.commands:
                self.propose(cmd)
        elif isinstance(msg, CatchupRequest):
            self._on_catchup_request(msg)
        elif isinstance(msg, CatchupReply):
            self._on_catchup_reply(msg)
        elif isinstance(msg, InstallSnapshot):
            self._on_install_snapshot(msg)
        elif isinstance(msg, PreVote):
            self._on_pre_vote(msg)
        elif isinstance(msg, PreVoteReply):
            self._on_pre_vote_reply(msg)
        elif isinstance(msg, ReadIndex):
            if self.role is Role.LEADER:
                self._queue_read(msg.ctx, msg.frm)
            else:
                self._send(ReadIndexReply(self.id, msg.frm, msg.ctx, 0, 0))
        elif isinstance(msg, ReadIndexReply):
            self._read_results.append(ReadState(msg.ctx, msg.index if msg.ok else None))

    def _send(self, msg: Message) -> None:
        if msg.to == self.id:
            self._local.append(msg)
        else:
            self._outbox.append(msg)

    def _drain_local(self) -> None:
        while self._local:
            self._handle(self._local.popleft())

    # ------------------------------------------------------------------ timers and roles

    def _random_timeout(self) -> int:
        e = self.config.election_ticks
        stretch = min(2**self._failed_campaigns, self.config.max_backoff)
        return e + self._rng.randrange(e * stretch)

    def _reset_timer(self) -> None:
        self._elapsed = 0
        self._timeout = self._random_timeout()

    def _leader_is_fresh(self) -> bool:
        """Whether a live leader was heard recently enough that a campaign would only disrupt it."""
        return (
            self._heard_leader_at is not None
            and self.now - self._heard_leader_at < self.config.election_ticks
        )

    def _next_round(self) -> int:
        return max(self.max_round, self.acceptor.promised.round, self.ballot.round,
                   self._seen_round) + 1  # fmt: skip

    def _pre_vote(self) -> None:
        """Ask whether a majority would follow a campaign, before raising anything durable."""
        if self._prevote_round or self.role is Role.CANDIDATE:
            self._failed_campaigns += 1  # the last attempt got nowhere: back off further
        self._reset_timer()
        self._prevote_round = self._next_round()
        self._prevotes = {self.id}
        self.counters["pre_votes"] += 1
        if not self.config.pre_vote or has_quorum(self._prevotes, self._voters, self._quorum):
            self._campaign()
            return
        for peer in self._peers:
            self._send(PreVote(self.id, peer, self._prevote_round))

    def _on_pre_vote(self, msg: PreVote) -> None:
        alive = self.role is Role.LEADER or (self._leader_is_fresh() and self.leader != msg.frm)
        self._send(PreVoteReply(self.id, msg.frm, msg.round, int(not alive)))

    def _on_pre_vote_reply(self, msg: PreVoteReply) -> None:
        if not msg.granted or msg.round != self._prevote_round or self.role is Role.LEADER:
            return
        self._prevotes.add(msg.frm)
        if has_quorum(self._prevotes, self._voters, self._quorum):
            self._campaign()

    def _campaign(self) -> None:
        """Start phase 1 with a ballot above every round this node has issued or seen."""
        self._prevote_round = 0
        self._requeue_inflight()
        self.max_round = self._next_round()
        self._max_round_changed = True
        self.ballot = Ballot(self.max_round, self.id)
        self.role = Role.CANDIDATE
        self.leader = None
        self._heard_leader_at = None
        self._promises = {}
        self._campaign_from = self.learner.commit + 1
        self.counters["campaigns"] += 1
        self._reset_timer()
        self._send_prepares((self.id, *self._peers))

    def _send_prepares(self, to: Iterable[int]) -> None:
        for peer in to:
            self._send(Prepare(self.id, peer, self.ballot, self._campaign_from))

    def _step_down(self, failed: bool) -> None:
        if self.role is not Role.FOLLOWER:
            self.counters["step_downs"] += 1
            for read in self._reads.abandon():
                self._release_read(read, None)
            self._requeue_inflight()
            self.role = Role.FOLLOWER
        if failed:
            self._failed_campaigns += 1
        self._reset_timer()

    def _follow(self, leader: int, ballot: Ballot) -> None:
        """A leader of ``ballot`` (at least our promise) showed itself."""
        if leader != self.id and self.role is not Role.FOLLOWER and ballot > self.ballot:
            self._step_down(failed=False)
        if leader != self.id:
            self.leader = leader
            self.ballot = max(self.ballot, ballot)
            self._heard_leader_at = self.now
            self._failed_campaigns = 0
            self._prevote_round = 0
            self._reset_timer()  # a fresh draw: the back-off of failed campaigns is over

    def _requeue_inflight(self) -> None:
        """Give up leadership: keep the commands of undecided proposals for the next leader."""
        inflight, self._inflight = self._inflight, {}
        self._inflight_ids.clear()
        for slot in sorted(inflight):
            for cmd in inflight[slot].value:
                self.propose(cmd)

    def _propose_slot(self, slot: int, value: Value) -> None:
        self._inflight[slot] = _Proposal(value)
        self._inflight_ids.update((c.client, c.seq) for c in value)

    def _settle(self, slot: int) -> None:
        """The slot is decided: stop proposing it."""
        proposal = self._inflight.pop(slot, None)
        if proposal is not None:
            self._inflight_ids.difference_update((c.client, c.seq) for c in proposal.value)

    # ------------------------------------------------------------------ acceptor side

    def _on_prepare(self, msg: Prepare) -> None:
        if msg.frm != self.id and (
            self.role is Role.LEADER or (self._leader_is_fresh() and self.leader != msg.frm)
        ):
            # Stay with a leader that is alive (check-quorum deposes one that is not); the
            # candidate times out. This keeps a node that was cut off from disrupting the cluster.
            # Its round is remembered so that our own next campaign goes above it.
            self._seen_round = max(self._seen_round, msg.ballot.round)
            return
        if not self.acceptor.prepare(msg.ballot):
            self._send(Nack(self.id, msg.frm, msg.ballot, self.acceptor.promised))
            return
        if msg.frm != self.id:
            if self.role is not Role.FOLLOWER and msg.ballot > self.ballot:
                self._step_down(failed=False)
                self.leader = None
            self._reset_timer()  # give the candidate we promised time to finish its campaign
        votes = self.acceptor.votes_from(msg.from_slot)
        self._send(
            Promise(
                self.id,
                msg.frm,
                msg.ballot,
                msg.from_slot,
                votes,
                self.learner.commit,
                self.acceptor.compacted,
            )
        )

    def _on_accept(self, msg: Accept) -> None:
        slots = self.acceptor.accept(msg.ballot, msg.entries)
        if slots is None:
            self._send(Nack(self.id, msg.frm, msg.ballot, self.acceptor.promised))
            return
        self._follow(msg.frm, msg.ballot)
        if msg.frm != self.id:
            self._learn_from_commit(msg.ballot, msg.commit)
            self._maybe_request_catchup(msg.frm, msg.commit)
        self._send(Accepted(self.id, msg.frm, msg.ballot, slots, self.learner.commit, msg.hb))

    def _learn_from_commit(self, ballot: Ballot, commit: int) -> None:
        """Slots up to a leader's commit that we voted for at its ballot hold the chosen value."""
        votes = self.acceptor.votes
        hi = min(commit, self.learner.commit + _MAX_COMMIT_SCAN)
        for slot in range(self.learner.commit + 1, hi + 1):
            vote = votes.get(slot)
            if vote is not None and (vote.ballot == ballot or self._bugs.count_across_ballots):
                self._learn(slot, vote.value, own_quorum=False)

    # ------------------------------------------------------------------ proposer side

    def _on_promise(self, msg: Promise) -> None:
        if self.role is not Role.CANDIDATE or msg.ballot != self.ballot:
            return
        if msg.compacted >= self._campaign_from:
            # That acceptor dropped votes we would need to see: this node is too far behind to
            # lead. Catch up (by snapshot) first; a later campaign starts above the gap.
            self.leader = None
            self._step_down(failed=False)
            self._maybe_request_catchup(msg.frm, max(msg.commit, msg.compacted))
            return
        self._promises[msg.frm] = msg
        if has_quorum(self._promises, self._voters, self._quorum):
            self._become_leader()

    def _on_nack(self, msg: Nack) -> None:
        if msg.promised.round > self.max_round:
            self.max_round = msg.promised.round  # the next campaign must go above it
            self._max_round_changed = True
        if (
            self.role is not Role.FOLLOWER
            and msg.ballot == self.ballot
            and msg.promised > self.ballot
        ):
            self.leader = None
            self._step_down(failed=True)

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader = self.id
        self._failed_campaigns = 0
        self._leader_since = self.now
        self._heard = {}
        self._reads.new_term()
        self._requeue_inflight()  # (empty: a candidate has nothing in flight)
        promises = self._promises.values()
        votes = () if self._bugs.skip_adoption else (v for p in promises for v in p.accepted)
        learner = self.learner
        plan = adopt(
            votes, self._campaign_from, learner.commit, learner.chosen.keys(), learner.base
        )
        self.counters["elected"] += 1
        if plan.adopted:
            self.counters["adopted"] += plan.adopted
        if plan.filled:
            self.counters["noop_fills"] += plan.filled
        for slot, value in plan.proposals.items():
            self._propose_slot(slot, value)
        self._next_slot = plan.top + 1
        self._ready_slot = plan.top
        self._promises = {}
        self._send_accepts(self._inflight, (self.id, *self._peers))

    def _flush_pending(self) -> None:
        """Turn waiting commands into proposals (leader) or forward them (everyone else)."""
        if not self._pending:
            return
        if self.role is Role.LEADER:
            new: dict[int, _Proposal] = {}
            while self._pending and self._next_slot <= self.learner.commit + self.config.window:
                batch: list[Command] = []
                used = 0
                while self._pending and len(batch) < self.config.max_batch:
                    size = len(self._pending[0].data) + COMMAND_OVERHEAD
                    if batch and used + size > self.config.max_batch_bytes:
                        break
                    cmd = self._pending.popleft()
                    self._pending_ids.discard((cmd.client, cmd.seq))
                    if not self.learner.clients.is_applied(cmd):
                        batch.append(cmd)
                        used += size
                if batch:
                    self._propose_slot(self._next_slot, tuple(batch))
                    new[self._next_slot] = self._inflight[self._next_slot]
                    self._next_slot += 1
            self._send_accepts(new, (self.id, *self._peers))
        elif self.leader is not None and self.leader != self.id:
            commands = tuple(self._pending)
            self._pending.clear()
            self._pending_ids.clear()
            runs = chunks(
                list(commands),
                self.config.max_batch,
                self.config.max_message_bytes,
                lambda c: len(c.data) + COMMAND_OVERHEAD,
            )
            for run in runs:
                self._send(Forward(self.id, self.leader, tuple(run)))

    def _send_accepts(self, proposals: dict[int, _Proposal], to: Iterable[int]) -> None:
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

    def _heartbeat(self) -> None:
        """One round of heartbeats. Each carries the proposals its peer has not voted for yet,
        so one message keeps followers quiet, retransmits what was lost and confirms reads."""
        self._heartbeat_elapsed = 0
        self._reads.next_round()
        for peer in self._peers:
            missing = {s: p for s, p in self._inflight.items() if peer not in p.acks}
            self._send_accepts(missing, (peer,))
        self._confirm_reads()

    def _queue_read(self, ctx: int, requester: int) -> None:
        index = max(self.learner.commit, self._next_slot - 1)  # all this leader may know chosen
        self._reads.queue(ctx, index, requester)

    def _confirm_reads(self) -> None:
        for read in self._reads.confirmed(self.id, self._voters, self._quorum):
            self._release_read(read, read.index)

    def _release_read(self, read: PendingRead, index: int | None) -> None:
        if read.requester == self.id:
            self._read_results.append(ReadState(read.ctx, index))
        else:
            ok = int(index is not None)
            self._send(ReadIndexReply(self.id, read.requester, read.ctx, index or 0, ok))

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat()
        # Check quorum: a leader cut off from a majority steps down instead of lingering.
        e = self.config.election_ticks
        if self.now - self._leader_since >= e:
            alive = [p for p, at in self._heard.items() if self.now - at < e]
            if not has_quorum((self.id, *alive), self._voters, self._quorum):
                self.leader = None
                self._step_down(failed=False)

    def _on_accepted(self, msg: Accepted) -> None:
        if msg.commit > self.learner.commit:
            self._maybe_request_catchup(msg.frm, msg.commit)  # a follower knows more than we do
        if self.role is not Role.LEADER:
            return
        if msg.ballot != self.ballot and not self._bugs.count_across_ballots:
            return
        self._heard[msg.frm] = self.now  # only replies to this ballot prove we still lead
        if self._reads.acknowledge(msg.frm, msg.hb):
            self._confirm_reads()
        for slot in msg.slots:
            proposal = self._inflight.get(slot)
            if proposal is None:
                continue
            proposal.acks.add(msg.frm)
            if has_quorum(proposal.acks, self._voters, self._quorum):
                self._learn(slot, proposal.value, own_quorum=True)

    # ------------------------------------------------------------------ learner side

    def _learn(self, slot: int, value: Value, own_quorum: bool) -> None:
        proposal = self._inflight.get(slot)
        if (
            self.role is Role.LEADER
            and not own_quorum
            and slot >= self._campaign_from
            and not self.learner.is_chosen(slot)
            and (proposal is None or proposal.value != value)
        ):
            # Another ballot decided a slot this leader owns: a higher ballot is out there.
            # Step down before any heartbeat could claim this slot's commit at our ballot.
            self.leader = None
            self._step_down(failed=False)
        self._settle(slot)
        self.learner.learn(slot, value)

    def _maybe_request_catchup(self, source: int | None, their_commit: int = 0) -> None:
        """Ask a peer for chosen values this node is missing, at most once per heartbeat."""
        self._catchup_target = max(self._catchup_target, their_commit)
        if self._catchup_target <= self.learner.commit:
            self._catchup_sent_at = None
            return
        due = (
            self._catchup_sent_at is None
            or self.now - self._catchup_sent_at >= self.config.heartbeat_ticks
        )
        if not due:
            return
        # Ask whoever showed it knows more (or the leader); after a request went unanswered,
        # ask a random peer, so that one broken link cannot keep a node behind for good.
        target = source if source is not None else self.leader
        unanswered = self._catchup_sent_at is not None
        if target is None or target == self.id or (source is None and unanswered):
            if not self._peers:
                return
            target = self._rng.choice(self._peers)
        self._catchup_sent_at = self.now
        self._send(CatchupRequest(self.id, target, self.learner.commit + 1))

    def _on_catchup_request(self, msg: CatchupRequest) -> None:
        snapshot = self.learner.snapshot
        if msg.from_slot <= self.learner.base and snapshot is not None:
            self._send(InstallSnapshot(self.id, msg.frm, snapshot))
            self.counters["snapshots_sent"] += 1
            return
        entries = self.learner.entries_from(
            msg.from_slot, self.config.max_entries, self.config.max_message_bytes
        )
        if entries or self.learner.commit >= msg.from_slot:
            self._send(CatchupReply(self.id, msg.frm, entries, self.learner.commit))
            self.counters["catchups_served"] += 1

    def _on_install_snapshot(self, msg: InstallSnapshot) -> None:
        installable = msg.snapshot.slot > self.learner.commit
        if self.role is Role.LEADER and installable and msg.snapshot.slot >= self._campaign_from:
            # Slots this leader owns were decided elsewhere: a higher ballot is out there.
            self.leader = None
            self._step_down(failed=False)
        if self.learner.install(msg.snapshot):
            self.acceptor.compact(msg.snapshot.slot)
            self._installed = msg.snapshot
            self.counters["snapshots_installed"] += 1
        self._catchup_sent_at = None
        self._maybe_request_catchup(msg.frm)

    def _on_catchup_reply(self, msg: CatchupReply) -> None:
        before = self.learner.commit
        for entry in msg.entries:
            self._learn(entry.slot, entry.value, own_quorum=False)
        self._catchup_sent_at = None
        # Ask the same peer again only while it helps; two laggards missing the same slot
        # must not keep asking each other (ask the leader, or anyone, instead).
        helped = self.learner.commit > before or msg.commit > self.learner.commit
        self._maybe_request_catchup(msg.frm if helped else None, msg.commit)
