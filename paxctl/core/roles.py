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
from paxctl.core.adoption import Adoption, adopt
from paxctl.core.catchup import CatchUp
from paxctl.core.election import ElectionTimer
from paxctl.core.learner import Learner
from paxctl.core.membership import ALPHA, Membership, founding
from paxctl.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    Handover,
    Message,
    Prepare,
    PreVote,
    Promise,
    ReadIndex,
    ReadIndexReply,
)
from paxctl.core.proposer import Proposal, Proposer
from paxctl.core.quorum import has_quorum, majority
from paxctl.core.reads import PendingRead, ReadTracker
from paxctl.core.snapshot_transfer import SnapshotReceiver, SnapshotSender
from paxctl.core.state import Config, DurableState, HardState, ReadState
from paxctl.core.timeline import Timeline
from paxctl.core.types import (
    NOOP,
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


#: Reads asked of a leader and not answered yet, remembered at most (the oldest go first).
_MAX_READ_ASKS = 65536


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
        self.disk = config.disk
        self._bugs = config.planted_bugs
        #: The configurations this node knows of, slot by slot (``core/timeline.py``).
        self.members = _timeline(config, state)
        #: Every voter any configuration this node knew named (for a planted bug only).
        self._ever_voters = set(self.members.latest.voters)

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
        self._linked: set[int] = set()  # peers the shell has a live connection to
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
        # Membership (issue 15). A learner keeps the leader's proposals here, not as votes, to
        # learn them from the commit index; a leader tracks how far each member has learned
        # and with which disk (to promote learners), and the last slot it sent (alpha window).
        self._tentative: dict[int, AcceptedEntry] = {}
        self._progress: dict[int, int] = {}
        self._disks: dict[int, int] = {}
        self._released = 0
        #: The highest commit index a voter of the latest configuration showed this node: a
        #: removed node stops only once one that stays knows every slot it governed is decided.
        self._members_commit = 0
        self._commit_readied = 0  # the commit index when the last batch was closed
        self._promote_at: int | None = None
        self._handover: tuple[int, int] | None = None  # (the node a leader named, when)
        #: A peer asked for the log from slot 1 and this node has no snapshot: the driver
        #: takes one now, so that a node that joined empty starts from the cluster's state.
        self.snapshot_wanted = False
        #: Ask ctx -> the node a ReadIndex for it went to (a reply is taken only from there).
        self.read_asks: dict[int, int] = {}
        #: Ask ctx -> the reads it asked for (a follower asks once per batch, for all of them:
        #: the ask is named after the first), and the reads waiting for the next ask.
        self._asked_reads: dict[int, list[int]] = {}
        self._read_batch: list[int] = []
        #: Peer messages dropped by ``validate.check``, with why, for the shell to log.
        self.rejections: deque[tuple[Message, Rejection]] = deque(maxlen=64)

        #: How often each rare path ran: for status pages, and for tests that must see them run.
        self.counters: Counter[str] = Counter()
        # State transfer in chunks, both sides (``snapshot_transfer.py``).
        self._snap_out = SnapshotSender(config.max_message_bytes - 1024, 4 * config.election_ticks)
        self._snap_in = SnapshotReceiver(
            self.id,
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
        # This node's acceptor's answers to its own proposer's Accepts: counted only once the
        # votes they acknowledge are durable (``_own_acks`` until the next ``ready()`` takes
        # them, ``_own_acks_persisting`` until ``advance()`` delivers them).
        self._own_acks: list[Accepted] = []
        self._own_acks_persisting: list[Accepted] = []
        self._outbox: list[Message] = []
        self._in_ready = False
        self._installed: Snapshot | None = None  # a peer's snapshot for the next Ready
        self._deferred: tuple[HardState | None, list[AcceptedEntry]] = (None, [])  # planted bug
        self._judge_commits()

    def _offer(self, command: Command, fresh: bool = False) -> bool:
        """Queue ``command`` for a slot (or for the leader); False if the queue is full.

        An identical ``(client, seq)`` already waiting or in flight adds nothing. One already
        applied is not filtered here: the state machine answers it from its table if it is
        chosen again (the core keeps no exactly-once table of its own).
        """
        if self.proposer.has(command):
            return True
        if len(self.proposer.pending) >= self.config.max_pending:
            return False
        self.proposer.queue(command, fresh)
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
        if leader != self.leader:
            self._fail_read_asks(leader)
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
        if (
            self.role is Role.FOLLOWER
            and self.leader is not None
            and (not self.may_campaign or self._prevote_round)
        ):
            # Silent for an election timeout (a node that may not campaign), or for two with a
            # pre-vote that got nowhere between them (a voter: a pre-vote that wins keeps the
            # old leader until the new one shows itself): not known to lead any more, so
            # commands wait here (and may be withdrawn) rather than go to it.
            self._fail_read_asks(None)
            self.leader = None
        if not self.may_campaign:
            self._timer.restart()  # a learner, a removed node, or a voter without its disk
            return
        if not pre_voted:
            if self._prevote_round or self.role is Role.CANDIDATE:
                self._timer.failed_campaigns += 1  # the last attempt got nowhere: back off
            self._timer.restart()
            self._prevote_round = self._next_round()
            self._prevotes = {self.id}
            self.counters["pre_votes"] += 1
            if self.config.pre_vote and not self._quorum_in(
                self._prevotes, self._campaign_configs()
            ):
                for peer in self._voter_peers():
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
        self._fail_read_asks(None)
        self.leader = None
        self._heard_leader_at = None
        self.proposer.campaign(self.learner.commit + 1)
        self.counters["campaigns"] += 1
        self._timer.restart()
        self._send_prepares((self.id, *self._voter_peers()))

    def become_leader(self) -> None:
        """A quorum promised our ballot: adopt what it voted for and start phase 2."""
        self.role = Role.LEADER
        self.leader = self.id
        self._timer.failed_campaigns = 0
        self._leader_since = self.now
        self._heard = {}
        self._progress = {}
        self._released = 0
        self._reads.new_term()
        for cmd in self.proposer.take_undecided():  # (none: a candidate has nothing in flight)
            self._offer(cmd)
        promises = self.proposer.promises.values()
        votes = () if self._bugs.skip_adoption else (v for p in promises for v in p.accepted)
        learner = self.learner
        first = self.proposer.campaign_from
        plan = self._fill_to_activation(
            adopt(votes, first, learner.commit, learner.chosen.keys(), learner.base)
        )
        self.counters["elected"] += 1
        if plan.adopted:
            self.counters["adopted"] += plan.adopted
        if plan.filled:
            self.counters["noop_fills"] += plan.filled
        self.proposer.lead(plan)
        self._send_accepts(self.proposer.inflight, (self.id, *self._peers))

    # ------------------------------------------------------------------ membership

    @property
    def _peers(self) -> tuple[int, ...]:
        """Every other member of a configuration in force from the commit index on: they hear
        the leader's proposals and heartbeats (a learner too; a member being removed until the
        slots it governs are decided)."""
        commit = self.learner.commit
        ids = {i for c in self.members.in_force(commit, commit + ALPHA) for i in c.ids}
        ids.discard(self.id)
        return tuple(sorted(ids))

    def _p1_configs(self) -> list[Membership]:
        """The configurations a leader's phase 1 (and a pre-vote, a read's confirmation, the
        check that a leader still leads) needs a majority of each of: every one in force over
        the slots a new leader may touch, from the first unchosen slot to the alpha window's
        end (at most two: one change is in flight at a time)."""
        lo = self.learner.commit + 1
        return self.members.in_force(lo, lo + ALPHA - 1)

    def _campaign_configs(self) -> list[Membership]:
        """Whose majorities a campaign needs (``_p1_configs``; a planted bug asks fewer)."""
        configs = self._p1_configs()
        return configs[-1:] if self._bugs.p1_new_config_only else configs

    def _voter_peers(self) -> tuple[int, ...]:
        ids = {v for c in self._p1_configs() for v in c.voters}
        ids.discard(self.id)
        return tuple(sorted(ids))

    def _majority(self, config: Membership) -> int:
        n = len(config.voters)
        return n // 2 if self._bugs.minority_quorum else majority(n)

    def _quorum_in(self, acks: Iterable[int], configs: Iterable[Membership]) -> bool:
        """Whether ``acks`` hold a majority of the voters of every one of ``configs``."""
        have = frozenset(acks)
        return all(has_quorum(have, c.voters, self._majority(c)) for c in configs)

    def _slot_voters(self, slot: int) -> tuple[Membership, frozenset[int]]:
        """The configuration of ``slot`` and whose acknowledgements count toward it."""
        config = self.members.config_for(slot)
        if self._bugs.count_removed:
            return config, frozenset(self._ever_voters)
        return config, config.voters

    def _votes_at(self, slot: int) -> bool:
        """Whether this node (with its disk) is a voter of ``slot``'s configuration."""
        return self.members.known and self.members.config_for(slot).votes_here(self.id, self.disk)

    @property
    def may_campaign(self) -> bool:
        """A voter of the latest configuration, with the disk it was made a voter with."""
        return self.members.known and self.members.latest.votes_here(self.id, self.disk)

    @property
    def removed(self) -> bool:
        """This node is in no configuration in force any more: every slot of one that named it
        is decided, and a voter of the latest configuration showed it knows so (it made that
        durable before saying it: ``Ready.sync_chosen``). The shell may stop it. Knowing it
        alone is not enough: the nodes that stay may not know those slots are chosen, and
        without this node's vote they could never learn it (a configuration of two voters).
        A node whose id is not given out yet, as far as it knows, is a joiner that has not
        learned of its own addition (it started from an older snapshot): not removed."""
        m = self.members
        return (
            m.known
            and self.id < m.latest.next_id
            and self.id not in m.latest.ids
            and self.learner.commit + 1 >= m.latest.active
            and self._members_commit + 1 >= m.latest.active
        )

    def _note_commit(self, msg: Message) -> None:
        """Keep the highest commit index a voter of the latest configuration showed."""
        if isinstance(msg, Accept | Accepted | Promise | CatchupReply) and (
            msg.frm in self.members.latest.voters
        ):
            self._members_commit = max(self._members_commit, msg.commit)

    def _crossed_activation(self) -> bool:
        """Whether the commit index passed the last slot before a configuration governs since
        the last batch: that batch is synced (``Ready.sync_chosen``), so a node never forgets,
        in a crash, that the slots of the configuration before are decided once it said so."""
        before, commit = self._commit_readied, self.learner.commit
        self._commit_readied = commit
        return any(before < c.active - 1 <= commit for c in self.members.configs)

    def _judge_commits(self) -> None:
        """Judge the configuration changes of newly committed slots, in slot order, as every
        replica does; react if one took effect."""
        members, learner = self.members, self.learner
        if not members.known:
            return
        before = members.latest
        took = False
        while members.through < learner.commit:
            slot = members.through + 1
            value = learner.chosen.get(slot)
            if value is None:  # behind the snapshot: its configurations cover it
                members.skip_to(learner.base)
                continue
            took = members.commit(slot, value) or took
        members.prune(learner.applied + 1)
        if self._tentative:
            self._tentative = {s: e for s, e in self._tentative.items() if s > learner.commit}
        if took:
            self._configuration_changed(before)

    def _configuration_changed(self, before: Membership) -> None:
        latest = self.members.latest
        self.counters["configurations"] += 1
        self._ever_voters |= latest.voters
        self.catchup.set_peers(tuple(sorted(self.members.member_ids() - {self.id})))
        if self.role is Role.LEADER and latest.voters == before.voters:
            self._fill_now()  # learners changed: quorums did not; let the change govern soon
            return
        if self.role is Role.FOLLOWER or latest.voters == before.voters:
            return
        # Phase 1 covered the configurations known when it ran; the slots from the new one's
        # activation on need a majority of its voters too: run phase 1 again, at once (or hand
        # over, when this node is no voter of it).
        if self.may_campaign:
            self.become_candidate(pre_voted=True)
        elif self.role is Role.LEADER:
            self._hand_over()
        else:
            self.become_follower(None)

    def _hand_over(self) -> None:
        """Step down, naming the most caught-up voter of the latest configuration."""
        voters = sorted(self.members.latest.voters - {self.id})
        target = max(voters, key=lambda v: (self._progress.get(v, -1), -v), default=None)
        peers = self._peers
        self.become_follower(None)
        self.counters["handovers"] += 1
        if target is not None:
            for peer in peers:
                self._send(Handover(self.id, peer, target))

    def _handed_to(self, node: int) -> bool:
        """The leader named ``node`` to take over, recently."""
        h = self._handover
        return h is not None and h[0] == node and self.now - h[1] < self.config.election_ticks

    def _fill_now(self) -> None:
        """Propose no-ops up to the slot before the latest change governs (a leader)."""
        proposer, active = self.proposer, self.members.latest.active
        new = {}
        while proposer.next_slot < active:
            proposer.propose(proposer.next_slot, NOOP)
            new[proposer.next_slot] = proposer.inflight[proposer.next_slot]
            proposer.next_slot += 1
        if new:
            self.counters["noop_fills"] += len(new)
            self._send_accepts(new, (self.id, *self._peers))

    def _activate_idle_change(self) -> None:
        """An idle leader with a change in flight fills the slots up to the one it governs from
        with no-ops: else a change made in a quiet cluster waits for the next ALPHA writes (and
        the promotion after it, and the shutdown of the node it removed)."""
        commit, proposer = self.learner.commit, self.proposer
        busy = proposer.pending or proposer.inflight or not self.members.in_flight(commit)
        if busy or self.role is not Role.LEADER or self.learner.applied < proposer.ready_slot:
            return
        last = min(self.members.latest.active - 1, commit + self.config.window)
        new = {}
        for slot in range(proposer.next_slot, last + 1):
            proposer.propose(slot, NOOP)
            new[slot] = proposer.inflight[slot]
        if new:
            proposer.next_slot = last + 1
            self.counters["idle_fills"] += len(new)
            self._send_accepts(new, (self.id, *self._peers))

    def _fill_to_activation(self, plan: Adoption) -> Adoption:
        """With a change in flight, propose no-ops up to the slot before it governs, so that it
        takes effect now rather than after the next alpha commands."""
        active = self.members.latest.active
        if active - 1 <= plan.top:
            return plan
        proposals = dict(plan.proposals)
        filled = 0
        for slot in range(plan.top + 1, active):
            if not self.learner.is_chosen(slot):
                proposals[slot] = NOOP
                filled += 1
        return Adoption(proposals, plan.adopted, plan.filled + filled, active - 1)

    # ------------------------------------------------------------------ what the transitions use

    def _send(self, msg: Message) -> None:
        if msg.to == self.id:
            if isinstance(msg, Accepted) and not self._bugs.reply_before_persist:
                self._own_acks.append(msg)  # see ``Ready.early``
            else:
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
        # Only slots whose configuration this node knows: up to its commit + ALPHA. Those
        # beyond (adopted in phase 1) wait until the commit index moves up.
        limit = self.learner.commit + ALPHA
        entries = [ChosenEntry(s, proposals[s].value) for s in sorted(proposals) if s <= limit]
        if entries and not self._skips_held(entries):
            self._released = max(self._released, entries[-1].slot)
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

    def _skips_held(self, entries: list[ChosenEntry]) -> bool:
        """Whether sending ``entries`` passes over a slot still held back (adopted beyond the
        window, not sent yet). ``_released`` must then stay below it: else it is never sent
        to this leader's own acceptor (retransmissions go to peers), whose vote a quorum may
        need."""
        top, sent = entries[-1].slot, {e.slot for e in entries}
        return any(self._released < s < top and s not in sent for s in self.proposer.inflight)

    def _ask_for_reads(self) -> None:
        """Close the batch of reads that came since the last: a follower asks the leader for
        one read point for all of them, with one message (every one of them arrived before
        it left, so the leader's round for it begins after each did); reads that found this
        node leading by now join its next round, and without a leader they fail."""
        batch, self._read_batch = self._read_batch, []
        if not batch:
            return
        if self.role is Role.LEADER:
            for ctx in batch:
                self._queue_read(ctx, self.id)
        elif self.leader is not None and self.leader != self.id:
            ask = batch[0]
            self._send(ReadIndex(self.id, self.leader, ask))
            self.read_asks[ask] = self.leader
            self._asked_reads[ask] = batch
            if len(self.read_asks) > _MAX_READ_ASKS:  # the oldest is given up: fail its reads
                oldest = next(iter(self.read_asks))
                self._fail_reads(self._answered_ask(oldest))
        else:
            self._fail_reads(batch)

    def _queue_read(self, ctx: int, requester: int) -> None:
        index = max(self.learner.commit, self.proposer.next_slot - 1)  # all we may know chosen
        self._reads.queue(ctx, index, requester)

    def _answered_ask(self, ask: int) -> list[int]:
        """Forget the ask ``ask``; the reads it was for."""
        self.read_asks.pop(ask, None)
        return self._asked_reads.pop(ask, [])

    def _fail_reads(self, ctxs: list[int]) -> None:
        self._read_results.extend(ReadState(ctx, None) for ctx in ctxs)

    def _fail_read_asks(self, keep: int | None) -> None:
        """Reads asked of a node no longer followed will never be answered by it: fail them
        (the caller retries), except those asked of ``keep``."""
        lost = [ask for ask, asked in self.read_asks.items() if asked != keep]
        for ask in lost:
            self._fail_reads(self._answered_ask(ask))
        if lost:
            self.counters["read_asks_failed"] += len(lost)

    def _release_read(self, read: PendingRead, index: int | None) -> None:
        if read.requester == self.id:
            self._read_results.append(ReadState(read.ctx, index))
        else:
            ok = int(index is not None)
            self._send(ReadIndexReply(self.id, read.requester, read.ctx, index or 0, ok))


def _timeline(config: Config, state: DurableState) -> Timeline:
    """The configurations a node starts with: its snapshot's, else the founding one (for a
    node that joins, a stand-in naming only whom to ask: it knows nothing yet)."""
    one_at_a_time = not config.planted_bugs.two_changes_in_flight
    if state.snapshot is not None:
        return Timeline(state.snapshot.configs, state.snapshot.slot, one_at_a_time=one_at_a_time)
    addresses = dict(config.addresses)
    start = founding({v: addresses.get(v, "") for v in config.voters})
    return Timeline([start], 0, known=not config.join, one_at_a_time=one_at_a_time)
