"""What a node learns, and how it gets what it is missing: chosen values (from a leader's
commit index, its own quorum or a catch-up reply), catch-up requests and replies for the log, and
snapshot transfer when the slots asked for are compacted away. ``Node`` builds on it; it changes
no role itself except through the transitions of ``Roles``.
"""

from __future__ import annotations

from paxctl.core.messages import (
    CatchupReply,
    CatchupRequest,
    SnapshotChunk,
    SnapshotOffer,
    SnapshotRequest,
)
from paxctl.core.roles import Role, Roles
from paxctl.core.timeline import Timeline
from paxctl.core.types import Snapshot, Value


class Learning(Roles):
    """The learner side of a node: learning chosen values and catching up."""

    def _learn(self, slot: int, value: Value, own_quorum: bool) -> None:
        proposal = self.proposer.inflight.get(slot)
        if (
            self.role is Role.LEADER
            and not own_quorum
            and slot >= self.proposer.campaign_from
            and not self.learner.is_chosen(slot)
            and (proposal is None or proposal.value != value)
        ):
            # Another ballot decided a slot this leader owns: a higher ballot is out there.
            # Step down before any heartbeat could claim this slot's commit at our ballot.
            self.become_follower(None)
        if not self.members.known:
            return  # joined empty: only a snapshot tells it the configurations to judge by
        self.proposer.settle(slot)
        if self.learner.learn(slot, value):
            self._judge_commits()

    def _maybe_request_catchup(self, source: int | None, their_commit: int = 0) -> None:
        commit = self.learner.commit
        self._snap_in.cancel_through(commit)
        if self._snap_in.active:  # a snapshot is on its way: the log after it comes next
            return
        peer = self.catchup.request(self.now, commit, self.leader, source, their_commit)
        if peer is not None:
            self._send(CatchupRequest(self.id, peer, commit + 1))

    def _on_catchup_request(self, msg: CatchupRequest) -> None:
        snapshot = self.learner.snapshot
        if msg.from_slot <= self.learner.base and snapshot is not None:
            # Those slots are compacted away: offer the snapshot; the asker pulls it in chunks.
            self._send(self._snap_out.offer(self.id, msg.frm, snapshot))
            self.counters["snapshots_sent"] += 1
            return
        entries = self.learner.entries_from(
            msg.from_slot, self.config.max_entries, self.config.max_message_bytes
        )
        if msg.from_slot == 1 and snapshot is None and self.learner.applied > 0:
            # The asker knows nothing: it may have joined empty, and needs the configurations
            # a snapshot carries before it can judge the log. Have one made; it asks again.
            self.snapshot_wanted = True
        if entries or self.learner.commit >= msg.from_slot:
            self._send(CatchupReply(self.id, msg.frm, entries, self.learner.commit))
            self.counters["catchups_served"] += 1

    # ------------------------------------------------------------------ state transfer

    def _on_snapshot_request(self, msg: SnapshotRequest) -> None:
        answer = self._snap_out.answer(self.now, msg, self.learner.snapshot)
        if isinstance(answer, str):
            self.counters[answer] += 1
            return
        self._send(answer)
        self.counters[
            "snapshot_chunks_sent" if isinstance(answer, SnapshotChunk) else "snapshots_sent"
        ] += 1

    def _on_snapshot_offer(self, msg: SnapshotOffer) -> None:
        """Only the peer this node asked (or the one it pulls from) may offer a snapshot."""
        catchup = self.catchup
        asked = msg.frm if msg.frm in catchup.asked else None
        step = self._snap_in.on_offer(self.now, msg, asked, self.learner.commit)
        if step is not None:
            catchup.answered(msg.frm)
            self._transfer_step(step, msg.frm)

    def _on_snapshot_chunk(self, msg: SnapshotChunk) -> None:
        step = self._snap_in.on_chunk(self.now, msg)
        if step is not None:
            self.counters["snapshot_chunks_received"] += 1
            self._transfer_step(step, msg.frm)

    def _transfer_step(self, step: list[SnapshotRequest] | Snapshot, source: int) -> None:
        if isinstance(step, Snapshot):
            self._install(step, source)
        else:
            for req in step:
                self._send(req)

    def _install(self, snapshot: Snapshot, source: int) -> None:
        """A whole snapshot pulled from ``source``, its digest checked: install it if it is
        still news and the application accepts its bytes (decoded and checked, before it is
        persisted or applied)."""
        if snapshot.slot <= self.learner.commit:
            self.counters["snapshot_stale"] += 1
        elif not self.check_snapshot(snapshot):
            self.counters["snapshot_rejected"] += 1
        else:
            if self.role is Role.LEADER and snapshot.slot >= self.proposer.campaign_from:
                # Slots this leader owns were decided elsewhere: a higher ballot is out there.
                self.become_follower(None)
            self._snap_out.replaced(self.now, self.learner.snapshot)
            self.learner.install(snapshot)
            self.acceptor.compact(snapshot.slot)
            before = self.members.latest
            self.members = Timeline(
                snapshot.configs,
                snapshot.slot,
                one_at_a_time=not self._bugs.two_changes_in_flight,
            )
            self._judge_commits()
            if before.voters != self.members.latest.voters:
                self._configuration_changed(before)
            self.catchup.set_peers(tuple(sorted(self.members.member_ids() - {self.id})))
            self._installed = snapshot
            self.counters["snapshots_installed"] += 1
        self._maybe_request_catchup(source)

    def _on_catchup_reply(self, msg: CatchupReply) -> None:
        if not self.members.known:
            # Joined empty: only a snapshot can tell it the configurations; the peer makes one
            # on being asked from slot 1, and the next request (on the timer) gets its offer.
            self.catchup.answered(msg.frm)
            self.catchup.sent_at = self.now
            return
        before = self.learner.commit
        for entry in msg.entries:
            self._learn(entry.slot, entry.value, own_quorum=False)
        # Ask the same peer again only while it helps; two laggards missing the same slot
        # must not keep asking each other (ask the leader, or anyone, instead).
        helped = self.learner.commit > before or msg.commit > self.learner.commit
        self.catchup.answered(msg.frm)
        self._maybe_request_catchup(msg.frm if helped else None, msg.commit)
