"""The Multi-Paxos node: proposer, acceptor and learner behind one sans-I/O facade.

The driver feeds it ``tick()``, ``step(message)`` and ``propose(command)``, collects the work that
follows with ``ready()`` and reports it done with ``advance()``. Nothing in here reads a clock,
touches a socket or a file, or draws randomness from anywhere but the ``random.Random`` it is
given, so a seeded simulator can replay any run exactly.

Leadership (the distinguished proposer) works as in Paxos Made Simple, section 3: a node whose
election timer runs out campaigns with a ballot above every round it has seen, runs phase 1 once
for every slot from its first unchosen one, adopts what ``adoption.adopt`` says, and then runs
phase 2 for new commands within a window of slots. Role, leader, election timer and per-role
state change only in ``become_follower``, ``become_candidate`` and ``become_leader``.
"""

from __future__ import annotations

from paxctl.core import validate
from paxctl.core.learning import Learning
from paxctl.core.membership import ALPHA, CONFIG_CLIENT, Promote, encode_change
from paxctl.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    CatchupRequest,
    Forward,
    Handover,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndex,
    ReadIndexReply,
    SnapshotChunk,
    SnapshotOffer,
    SnapshotRequest,
)
from paxctl.core.quorum import has_quorum
from paxctl.core.roles import Role as Role  # re-exported: drivers check a node's role
from paxctl.core.state import HardState, ReadState, Ready
from paxctl.core.types import (
    COMMAND_OVERHEAD,
    AcceptedEntry,
    Ballot,
    Command,
    Snapshot,
    SnapshotBytes,
    chunks,
)

#: The most slots a follower checks against a leader's commit index per message, so that a node
#: far behind does bounded work per heartbeat and catches up by request instead.
_MAX_COMMIT_SCAN = 1024

#: Sequence numbers of the promotions a leader proposes (clients' changes use lower ones).
_PROMOTE_SEQ = 1 << 62


def _command_size(command: Command) -> int:
    return len(command.data) + COMMAND_OVERHEAD


class Node(Learning):
    """One member of the cluster, driven by its shell (see the module docstring)."""

    # ------------------------------------------------------------------ public facade

    def tick(self) -> None:
        """One unit of time passed: drive timers, heartbeats and retransmissions."""
        self.now += 1
        if self.role is Role.LEADER:
            self._tick_leader()
        elif self._timer.tick():
            self.become_candidate()
            if not self.may_campaign:
                # No leader heard, and this node may not campaign; but it may be a voter that
                # has not learned of its promotion yet, whose promise candidates need: ask a
                # member for the slots after its commit index.
                peer = self.catchup.poll(self.now, self.learner.commit)
                if peer is not None and not self._snap_in.active:
                    self._send(CatchupRequest(self.id, peer, self.learner.commit + 1))
        elif self.role is Role.CANDIDATE and self._timer.elapsed % self.config.heartbeat_ticks == 0:
            self._send_prepares(p for p in self._voter_peers() if p not in self.proposer.promises)
        for req in self._snap_in.tick(self.now):
            self._send(req)
        self._snap_out.tick(self.now, self.learner.snapshot)
        self._maybe_request_catchup(None)
        self._drain_local()

    def peer_lost(self, peer: int) -> None:
        """The shell's connection to ``peer`` closed (a killed process's sockets close at once).

        If ``peer`` is the leader this node follows, it no longer counts as heard (so this node
        grants others' pre-votes) and the election timer runs out within a heartbeat interval
        rather than a full timeout. Nothing else changes: the campaign still starts with a
        pre-vote that a majority grants only if each of them hears no leader either, then
        phase 1; a connection that broke under a live leader costs at most a refused pre-vote.
        """
        self._linked.discard(peer)
        if self.role is not Role.FOLLOWER or peer != self.leader or peer == self.id:
            return
        self.counters["leader_links_lost"] += 1
        self._heard_leader_at = None
        self._timer.hurry(self.config.heartbeat_ticks)

    def peer_linked(self, peer: int) -> None:
        """The shell's connection to ``peer`` is up (the peer proved it is a member).

        A follower that knows no leader campaigns once it can reach a quorum, within a
        heartbeat interval rather than a whole election timeout: a new cluster elects its first
        leader as soon as a majority of it runs (as ZooKeeper's servers look for a leader at
        once on start), and a restarted cluster does not sit out a timeout first. Only the
        timer moves: the campaign still opens with a pre-vote that nodes hearing a leader
        refuse, so a node restarting into a live cluster costs at most one refused pre-vote.
        """
        if peer == self.id:
            return
        self._linked.add(peer)
        if (
            self.role is Role.FOLLOWER
            and self.leader is None
            and self.may_campaign
            and self._quorum_in(self._linked | {self.id}, self._campaign_configs())
        ):
            self.counters["quorum_linked"] += 1
            self._timer.hurry(self.config.heartbeat_ticks)

    def step(self, msg: Message) -> None:
        """Handle one message from a peer (the shell has decoded it and checked its sender).

        It is checked against this node's state first (``validate.check``): a message that
        makes no sense here is dropped, counted and kept in ``rejections`` for the shell to
        log. A peer's bytes never stop the node.
        """
        if not self._bugs.no_peer_checks:
            rejection = validate.check(self, msg)
            if rejection is not None:
                self.reject(msg, rejection)
                if isinstance(msg, Accept) and validate.may_be_newer_member(self, msg.frm):
                    # A leader this node does not know of yet: it is behind; ask that leader
                    # for the log (whose answers are taken from it), nothing else.
                    self._maybe_request_catchup(msg.frm, msg.commit)
                return
        elif msg.to != self.id or (
            msg.frm not in self.members.member_ids() and not isinstance(msg, Forward)
        ):
            return
        self._note_commit(msg)
        self._handle(msg)
        self._drain_local()

    def reject(self, msg: Message, rejection: validate.Rejection) -> None:
        """Count a dropped peer message and keep why for the shell (the engine's checks too)."""
        self.counters["rejected"] += 1
        self.counters[f"rejected_{type(msg).__name__}"] += 1
        self.rejections.append((msg, rejection))

    def take_rejections(self) -> list[tuple[Message, validate.Rejection]]:
        """The rejections since the last call (the most recent 64), oldest first."""
        out = list(self.rejections)
        self.rejections.clear()
        return out

    def propose(self, command: Command) -> bool:
        """Ask the cluster to decide ``command``; False if this node cannot take it now.

        Acceptance is not a promise: a proposal can still be lost (a leader crashes, a message is
        dropped), so clients retry with the same ``(client, seq)`` until they see it applied.
        """
        return self._offer(command, fresh=True)

    def propose_again(self, command: Command) -> bool:
        """``propose`` a command that may have left this node already (forwarded to a leader
        that then vanished): the same, except that a copy queued now is never withdrawn, since
        the one that left may still be decided."""
        return self._offer(command)

    def withdraw(self, client: int, seq: int) -> bool:
        """Take back the command ``(client, seq)`` given to ``propose`` if it is still waiting
        here and never left this node (no leader took it): then it can never be decided, and
        the shell may tell its client so ("unavailable", not "outcome unknown"). False if it
        went out, or is not waiting here."""
        return self.proposer.withdraw((client, seq))

    def read_index(self, ctx: int) -> None:
        """Ask for a linearizable read point for the read ``ctx`` (a number the driver picks).

        The answer comes in a later Ready's ``reads``: serve the read once that slot is applied.
        The leader answers after one round of heartbeats that a quorum acknowledged at its
        ballot, so no other leader can have decided anything it does not know of (etcd's
        ReadOnlySafe). Reads that arrive while a round is in flight share the next one
        (``reads.py``); a follower asks the leader once per batch for all its reads since the
        last one (``_ask_for_reads``).
        """
        if self._bugs.stale_reads:
            self._read_results.append(ReadState(ctx, self.learner.commit))
        elif self.role is Role.LEADER:
            self._queue_read(ctx, self.id)
        elif self.leader is not None and self.leader != self.id:
            self._read_batch.append(ctx)
        else:
            self._read_results.append(ReadState(ctx, None))
        self._drain_local()

    def ready(self) -> Ready:
        """Close the batch (``_end_batch``), then collect what to persist, send and apply."""
        if self._in_ready:
            raise RuntimeError("ready() called again before advance()")
        self._end_batch()
        promise_changed, votes = self.acceptor.take_changes()
        hard_state = None
        if promise_changed or self._max_round_changed:
            hard_state = HardState(self.acceptor.promised, self.max_round)
            self._max_round_changed = False
        if self._bugs.reply_before_persist:
            (hard_state, votes), self._deferred = self._deferred, (hard_state, votes)
        sync_chosen = self._crossed_activation()
        early = 0
        messages = tuple(self._outbox)
        if hard_state is None and self._installed is None and not sync_chosen:
            accepts = [m for m in messages if type(m) is Accept]
            early = len(accepts)
            if early and early < len(messages):  # the Accepts first, then the rest
                messages = (*accepts, *(m for m in messages if type(m) is not Accept))
        ready = Ready(
            hard_state=hard_state,
            snapshot=self._installed,
            votes=tuple(votes),
            chosen=tuple(self.learner.take_new_chosen()),
            messages=messages,
            committed=tuple(self.learner.take_committed()),
            reads=tuple(self._read_results),
            sync_chosen=sync_chosen,
            early=early,
        )
        self._read_results = []
        self._outbox = []
        self._installed = None
        self._own_acks_persisting, self._own_acks = self._own_acks, []
        self._in_ready = bool(ready)
        return ready

    def advance(self) -> bool:
        """The driver persisted, sent and applied the last Ready. This node's own votes in it
        are durable now and count from here (see ``Ready.early``); True if that made more
        work for another ``ready()``."""
        self._in_ready = False
        acks, self._own_acks_persisting = self._own_acks_persisting, []
        if not acks:
            return False
        self._local.extend(acks)
        self._drain_local()
        return True

    def compact(self, slot: int, app: bytes) -> Snapshot:
        """Sum up the log up to ``slot`` (the last applied slot) in a snapshot of ``app``.

        The node forgets its votes and chosen values up to there; the driver stores the snapshot
        it returns, then may drop the log behind it. Laggards get this snapshot by catch-up.
        """
        self._snap_out.replaced(self.now, self.learner.snapshot)
        self.members.prune(slot + 1)
        snapshot = self.learner.compact(slot, app, self.members.as_of(slot))
        self.acceptor.compact(slot)
        return snapshot

    def snapshot_stored(self, slot: int, stored: SnapshotBytes) -> bool:
        """The snapshot held for peers (``slot``'s) is on disk as ``stored``: serve its chunks
        from there and let go of its bytes, which cost as much memory as the whole state.

        Its digest is taken first, from the bytes in memory, so what peers check the chunks
        against is what was taken, not what the disk returns later. False (nothing changes) if
        another snapshot is held, it is stored already, or ``stored`` is not its size.
        """
        held = self.learner.snapshot
        if held is None or held.slot != slot or held.stored is not None:
            return False
        if len(stored) != len(held.app):
            return False
        self._snap_out.digest(held)
        self.learner.snapshot = Snapshot(slot, held.configs, b"", stored)
        return True

    @property
    def leader_ready(self) -> bool:
        """Leader, and everything an earlier leader may have had chosen is applied here.

        From this point no command proposed under a lower ballot can still be chosen (a quorum
        promised this ballot, and phase 1 adopted every value such a quorum had voted for), so
        decisions the shell makes from the applied state, such as expiring a session, cannot
        be overtaken by an older leader's decision still in flight.
        """
        return self.role is Role.LEADER and self.learner.applied >= self.proposer.ready_slot

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
            "pending": len(self.proposer.pending),
            "inflight": len(self.proposer.inflight),
            "epoch": self.members.latest.epoch,
            "voters": sorted(self.members.latest.voters),
            "learners": sorted(self.members.latest.learners),
            "in_flight": self.members.in_flight(self.learner.commit),
            "voter": self.may_campaign,
            "known": self.members.known,
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
                self._offer(cmd)
        elif isinstance(msg, CatchupRequest):
            self._on_catchup_request(msg)
        elif isinstance(msg, CatchupReply):
            self._on_catchup_reply(msg)
        elif isinstance(msg, SnapshotOffer):
            self._on_snapshot_offer(msg)
        elif isinstance(msg, SnapshotRequest):
            self._on_snapshot_request(msg)
        elif isinstance(msg, SnapshotChunk):
            self._on_snapshot_chunk(msg)
        elif isinstance(msg, PreVote):
            alive = self.role is Role.LEADER or (self._leader_is_fresh() and self.leader != msg.frm)
            # Granted by a voter of a configuration in force (a voter the latest one removes
            # still counts for the slots before it governs), to a voter of the latest one.
            mine = any(c.votes_here(self.id, self.disk) for c in self._p1_configs())
            voter = msg.frm in self.members.latest.voters and mine and self.members.known
            self._send(PreVoteReply(self.id, msg.frm, msg.round, int(voter and not alive)))
        elif isinstance(msg, PreVoteReply):
            self._on_pre_vote_reply(msg)
        elif isinstance(msg, ReadIndex):
            if self.role is Role.LEADER:
                self._queue_read(msg.ctx, msg.frm)
            else:
                self._send(ReadIndexReply(self.id, msg.frm, msg.ctx, 0, 0))
        elif isinstance(msg, ReadIndexReply):
            index = msg.index if msg.ok else None
            for ctx in self._answered_ask(msg.ctx):
                self._read_results.append(ReadState(ctx, index))
        elif isinstance(msg, Handover):
            self._handover = (msg.target, self.now)
            if msg.target == self.id and self.role is not Role.LEADER:
                self.counters["handovers_taken"] += 1
                self.become_candidate(pre_voted=True)

    def _drain_local(self) -> None:
        while self._local:
            self._handle(self._local.popleft())

    # ------------------------------------------------------------------ elections

    def _leader_is_fresh(self) -> bool:
        """Whether a live leader was heard recently enough that a campaign would only disrupt it."""
        return (
            self._heard_leader_at is not None
            and self.now - self._heard_leader_at < self.config.election_ticks
        )

    def _on_pre_vote_reply(self, msg: PreVoteReply) -> None:
        if not msg.granted or msg.round != self._prevote_round or self.role is Role.LEADER:
            return
        self._prevotes.add(msg.frm)
        if self._quorum_in(self._prevotes, self._campaign_configs()):
            self.become_candidate(pre_voted=True)

    def _on_promise(self, msg: Promise) -> None:
        if self.role is not Role.CANDIDATE or msg.ballot != self.ballot:
            return
        top = max([msg.commit, *(v.slot for v in msg.accepted)])
        far = top > self.learner.commit + self.config.accept_window
        if msg.compacted >= self.proposer.campaign_from or (far and not self._bugs.no_peer_checks):
            # That acceptor dropped votes we would need to see, or learned so much more that
            # adopting it would mean proposing thousands of slots: this node is too far behind
            # to lead. Catch up first; a later campaign starts above the gap.
            self.become_follower(None)
            self._maybe_request_catchup(msg.frm, max(msg.commit, msg.compacted))
            return
        self.proposer.promises[msg.frm] = msg
        if msg.commit > self.learner.commit:
            # Learn what that acceptor knows is chosen, whatever this campaign's fate: the
            # quorum it needs may be out of reach (a voter of an older configuration removed
            # and stopped) until this node learns the slots that put a newer one in force.
            self._maybe_request_catchup(msg.frm, msg.commit)
        if self._quorum_in(self.proposer.promises, self._campaign_configs()):
            self.become_leader()

    def _on_nack(self, msg: Nack) -> None:
        if msg.promised.round > self.max_round:
            self.max_round = msg.promised.round  # the next campaign must go above it
            self._max_round_changed = True
        if (
            self.role is not Role.FOLLOWER
            and msg.ballot == self.ballot
            and msg.promised > self.ballot
        ):
            self.become_follower(None, failed=True)

    # ------------------------------------------------------------------ acceptor side

    def _on_prepare(self, msg: Prepare) -> None:
        configs = self._p1_configs()
        if not any(c.votes_here(self.id, self.disk) for c in configs) or not self.members.known:
            return  # a learner (or a voter without its disk) promises nothing
        if msg.ballot.node not in {i for c in configs for i in c.ids}:
            self.counters["prepare_from_non_voter"] += 1  # R-cfg6: never for a non-member
            return
        if msg.frm != self.id and (
            self.role is Role.LEADER
            or (self._leader_is_fresh() and self.leader != msg.frm and not self._handed_to(msg.frm))
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
                self.become_follower(None)
            # Give the candidate we promised time to finish its campaign.
            self.become_follower(self.leader)
        votes = self.acceptor.votes_from(msg.from_slot)
        commit, compacted = self.learner.commit, self.acceptor.compacted
        self._send(Promise(self.id, msg.frm, msg.ballot, msg.from_slot, votes, commit, compacted))

    def _on_accept(self, msg: Accept) -> None:
        entries = msg.entries
        limit = self.learner.commit + self.config.accept_window
        if not self._bugs.no_peer_checks and any(e.slot > limit for e in entries):
            # No vote so far ahead (a flood of them would fill memory): the leader retransmits
            # what is not acknowledged, and this node catches up by request meanwhile.
            entries = tuple(e for e in entries if e.slot <= limit)
            self.counters["accepts_beyond_window"] += len(msg.entries) - len(entries)
        slots: tuple[int, ...] | None = ()
        members = self.members
        if members.known and msg.ballot.node not in {i for c in self._p1_configs() for i in c.ids}:
            # A node no configuration in force names (one removed, say) leads nothing here:
            # its heartbeats raise no promise and win no follower (as its prepares, R-cfg6).
            self.counters["accepts_from_non_member"] += 1
            return
        if members.known:
            # R-cfg6: no vote for a ballot of a node that is no member of the slot's
            # configuration (as far as this node knows it). A learner of it may lead: it is a
            # voter of the next one (promoted, or replacing a voter), and its phase 1 had a
            # majority of both.
            mine = [e for e in entries if msg.ballot.node in members.config_for(e.slot).ids]
            self.counters["accepts_from_non_voter"] += len(entries) - len(mine)
            entries = tuple(mine)
        voting = tuple(e for e in entries if self._votes_at(e.slot))
        if voting or any(c.votes_here(self.id, self.disk) for c in self._p1_configs()):
            slots = self.acceptor.accept(msg.ballot, voting)
        if slots is None:
            self._send(Nack(self.id, msg.frm, msg.ballot, self.acceptor.promised))
            return
        commit = self.learner.commit
        for e in entries:  # a learner's copy of the rest, to learn them from the commit index
            if e.slot > commit and not self._votes_at(e.slot):
                self._tentative[e.slot] = AcceptedEntry(e.slot, msg.ballot, e.value)
        if msg.frm != self.id:
            if self.role is not Role.FOLLOWER and msg.ballot > self.ballot:
                self.become_follower(None)  # a higher ballot leads now
            self.become_follower(msg.frm, msg.ballot)
            self._learn_from_commit(msg.ballot, msg.commit)
            self._maybe_request_catchup(msg.frm, msg.commit)
        commit = self.learner.commit
        self._send(Accepted(self.id, msg.frm, msg.ballot, slots, commit, msg.hb, self.disk))

    def _learn_from_commit(self, ballot: Ballot, commit: int) -> None:
        """Slots up to a leader's commit that we voted for at its ballot hold the chosen value."""
        votes = self.acceptor.votes
        hi = min(commit, self.learner.commit + _MAX_COMMIT_SCAN)
        for slot in range(self.learner.commit + 1, hi + 1):
            vote = votes.get(slot) or self._tentative.get(slot)
            if vote is not None and (vote.ballot == ballot or self._bugs.count_across_ballots):
                self._learn(slot, vote.value, own_quorum=False)

    # ------------------------------------------------------------------ leader side

    def _end_batch(self) -> None:
        """What closing a batch sets off: waiting commands are batched into slots (or forwarded),
        a read round that is due starts, and followers hear of a new commit index at once (so a
        client waiting on one of them is answered now rather than at the next heartbeat)."""
        if self.role is Role.LEADER and self._released < self.learner.commit + ALPHA:
            # Before new commands: their slots come after these (see ``_send_accepts``).
            limit = self.learner.commit + ALPHA
            held = {s: p for s, p in self.proposer.inflight.items() if self._released < s <= limit}
            self._released = limit
            if held:  # adopted in phase 1 beyond the window: their configuration is known now
                self._send_accepts(held, (self.id, *self._peers))
        self._batch_commands()
        self._ask_for_reads()
        if self._reads.broadcast_due:
            self.counters["read_rounds"] += 1
            self._heartbeat()
        elif self.role is Role.LEADER and self.learner.commit > self._commit_sent:
            self._send_accepts({}, self._peers)
        self._drain_local()

    def _batch_commands(self) -> None:
        """Give the commands waiting since the last batch slots (leader), or forward them."""
        if not self.proposer.pending:
            return
        cfg = self.config
        if self.role is Role.LEADER:
            last = self.learner.commit + cfg.window
            new = self.proposer.batch(last, cfg.max_batch, cfg.max_batch_bytes)
            if new:  # (none while the window is full: no empty round on every reply)
                self._send_accepts(new, (self.id, *self._peers))
        elif self.leader is not None and self.leader != self.id:
            commands = self.proposer.take_pending()
            for run in chunks(commands, cfg.max_batch, cfg.max_message_bytes, _command_size):
                self._send(Forward(self.id, self.leader, tuple(run)))

    def _heartbeat(self) -> None:
        """One round of heartbeats. Each carries the proposals its peer has not voted for yet,
        so one message keeps followers quiet, retransmits what was lost and confirms reads."""
        self._heartbeat_elapsed = 0
        self._reads.next_round()
        for peer in self._peers:
            self._send_accepts(self.proposer.missing(peer), (peer,))
        self._confirm_reads()

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat()
        # Check quorum: a leader cut off from a majority steps down instead of lingering.
        e = self.config.election_ticks
        if self.now - self._leader_since >= e:
            alive = [p for p, at in self._heard.items() if self.now - at < e]
            if not self._quorum_in((self.id, *alive), self._p1_configs()):
                self.become_follower(None)
                return
        self._activate_idle_change()
        self._maybe_promote()

    def _on_accepted(self, msg: Accepted) -> None:
        if msg.commit > self.learner.commit:
            self._maybe_request_catchup(msg.frm, msg.commit)  # a follower knows more than we do
        if self.role is not Role.LEADER:
            return
        if msg.ballot != self.ballot and not self._bugs.count_across_ballots:
            return
        self._heard[msg.frm] = self.now  # only replies to this ballot prove we still lead
        self._progress[msg.frm] = msg.commit
        self._disks[msg.frm] = msg.disk
        if self._reads.acknowledge(msg.frm, msg.hb):
            self._confirm_reads()
        for slot in msg.slots:
            proposal = self.proposer.inflight.get(slot)
            if proposal is None or self.role is not Role.LEADER:
                continue
            config, voters = self._slot_voters(slot)
            if not config.votes_here(msg.frm, msg.disk) and not self._bugs.count_removed:
                continue  # not a voter of that slot (or not with the disk it was made one with)
            proposal.acks.add(msg.frm)
            if has_quorum(proposal.acks, voters, self._majority(config)):
                self._learn(slot, proposal.value, own_quorum=True)

    def _confirm_reads(self) -> None:
        configs = self._p1_configs()
        for read in self._reads.confirmed(self.id, lambda acks: self._quorum_in(acks, configs)):
            self._release_read(read, read.index)

    def _maybe_promote(self) -> None:
        """Propose making a caught-up learner a voter (one that asked to be promoted), with
        the disk it reports: one change at a time, only once this leader is ready."""
        commit, members = self.learner.commit, self.members
        if not self.leader_ready or members.in_flight(commit):
            return
        if (
            self._promote_at is not None
            and self.now - self._promote_at < 2 * self.config.election_ticks
        ):
            return
        latest = members.latest
        for m in latest.members:
            disk, seen = self._disks.get(m.id, 0), self._progress.get(m.id)
            if m.voter or not m.promote or not disk or seen is None:
                continue
            if seen < latest.epoch or seen + self.config.max_entries < commit:
                continue  # still catching up (it has not even learned of its own addition)
            change = Promote(latest.epoch, m.id, disk, m.replaces)
            seq = _PROMOTE_SEQ | (latest.epoch % (1 << 40)) << 20 | (m.id % (1 << 20))
            self._promote_at = self.now
            self.counters["promotions_proposed"] += 1
            self._offer(Command(CONFIG_CLIENT, seq, encode_change(change)))
            return
