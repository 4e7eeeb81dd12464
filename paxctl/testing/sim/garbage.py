"""The garbage peer: well-typed but invalid node messages, as a confused or hostile peer sends.

``paxctl sim --garbage`` adds it to a run. Every few milliseconds it hands one node a message
that decodes fine but must not be acted upon: rounds no cluster could go above (2**63 - 1
included), ballots their sender cannot have issued, votes far beyond the node's window, chosen
values nobody asked for (for the next slot, and for slot 10**9), read points for reads never
asked, a refusal naming a promise of 2**63 - 1, snapshot offers and chunks nobody asked for, a
Forward posing as the reaper or the digest
audit, a Relay from a stranger, replays of real messages. It signs them as members or as a
stranger.

It looks at its target's state to make each message invalid at the moment it arrives (it is
delivered at once, not through the faulty network), never to decide what the node does: the
node's own checks (``core/validate.py``, ``server/peercheck.py``) must drop it. It never
forges what a member could validly say (a Byzantine member can break any Paxos); safety
against forged valid messages is peer authentication's job.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

from paxctl.core import codec
from paxctl.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndexReply,
    SnapshotChunk,
    SnapshotOffer,
)
from paxctl.core.node import Node, Role
from paxctl.core.types import AcceptedEntry, Ballot, ChosenEntry, Command
from paxctl.core.validate import MAX_ROUND, MAX_ROUND_JUMP

#: The largest round the codec carries.
TOP_ROUND = codec.MAX_UINT

#: A kind of garbage: given the target, a message (or None when the target's state gives no
#: chance for this kind now).
Maker = Callable[[Node], Message | None]


class GarbagePeer:
    def __init__(self, seed: int, voters: tuple[int, ...]) -> None:
        #: Its own random stream, so runs without it are unchanged.
        self.rng = random.Random(f"{seed}/garbage")
        self.voters = voters
        self.stranger = max(voters) + 100  # an id no member has
        self.mean_ms = self.rng.choice([20, 60, 200])
        self._recent: deque[tuple[int, int, bytes]] = deque(maxlen=64)
        self.makers: list[Maker] = [
            self._absurd_round,
            self._not_its_ballot,
            self._far_accept,
            self._unsolicited_catchup,
            self._catchup_far_slot,
            self._read_never_asked,
            self._absurd_refusal,
            self._future_heartbeat,
            self._promise_not_ours,
            self._bad_pre_vote,
            self._from_itself,
            self._unsolicited_snapshot,
            self._stray_chunk,
        ]

    # ------------------------------------------------------------------ the world's side

    def overheard(self, src: int, dst: int, data: bytes) -> None:
        """A real message crossed the network: it may be replayed, stale, later."""
        self._recent.append((src, dst, data))

    def next_delay(self) -> int:
        return int(self.rng.expovariate(1 / self.mean_ms)) + 1

    def pick_target(self, up: list[int]) -> int | None:
        return self.rng.choice(up) if up else None

    def make(self, node: Node, extra: list[Maker]) -> tuple[int, int, bytes] | None:
        """One message for ``node`` as ``(from, to, bytes)``; ``extra``: the workload's kinds."""
        if self._recent and self.rng.random() < 0.1:
            src, dst, data = self.rng.choice(self._recent)  # a stale duplicate, as it was
            return (src, dst, data) if dst == node.id else None
        msg = self.rng.choice(self.makers + extra)(node)
        return None if msg is None else (msg.frm, msg.to, codec.encode(msg))

    # ------------------------------------------------------------------ helpers

    def member(self, node: Node) -> int:
        """A member other than the target (or a stranger in a one-node cluster)."""
        others = [v for v in self.voters if v != node.id]
        return self.rng.choice(others) if others else self.stranger

    def value(self) -> tuple[Command, ...]:
        return (Command(0xBAD, self.rng.randrange(1 << 32), self.rng.randbytes(8)),)

    def _huge_round(self, node: Node) -> int:
        known = node.known_round()
        return self.rng.choice(
            [TOP_ROUND, MAX_ROUND + 1, known + MAX_ROUND_JUMP + 1 + self.rng.randrange(1000)]
        )

    # ------------------------------------------------------------------ the kinds

    def _absurd_round(self, node: Node) -> Message:
        """The issue's attack: one Prepare with round 2**63 - 1 wedged a cluster for good."""
        m = self.member(node)
        return Prepare(m, node.id, Ballot(self._huge_round(node), m), node.learner.commit + 1)

    def _not_its_ballot(self, node: Node) -> Message:
        """A ballot its sender cannot have issued (ballots carry their node's id)."""
        m = self.member(node)
        other = self.rng.choice([v for v in (*self.voters, self.stranger) if v != m])
        ballot = Ballot(node.known_round() + 1, other)
        if self.rng.random() < 0.5:
            return Prepare(m, node.id, ballot, node.learner.commit + 1)
        entry = ChosenEntry(node.learner.commit + 1, self.value())
        return Accept(m, node.id, ballot, (entry,), node.learner.commit + 1)

    def _far_accept(self, node: Node) -> Message | None:
        """Votes asked for slots far beyond the window, at the ballot the target follows (the
        entries must be ignored; the rest is a heartbeat claiming nothing chosen)."""
        promised = node.acceptor.promised
        if promised.node == node.id or promised.node not in self.voters:
            return None
        first = node.learner.commit + node.config.accept_window + 1
        slots = sorted({first + self.rng.randrange(10_000) for _ in range(3)})
        entries = tuple(ChosenEntry(s, self.value()) for s in slots)
        return Accept(promised.node, node.id, promised, entries, 0)

    def _unsolicited_catchup(self, node: Node) -> Message:
        """Chosen values for the next slot, from a peer nobody asked (the issue: it applied an
        arbitrary create on every node)."""
        unasked = [v for v in self.voters if v != node.id and v not in node.catchup.asked]
        frm = self.rng.choice(unasked) if unasked else self.stranger
        nxt = node.learner.commit + 1
        return CatchupReply(frm, node.id, (ChosenEntry(nxt, self.value()),), nxt)

    def _catchup_far_slot(self, node: Node) -> Message:
        """A value for slot 10**9 (the issue: the next leader grew past 1.5 GB filling up to it)."""
        frm = self.member(node)
        slot = 10**9 + self.rng.randrange(1000)
        return CatchupReply(frm, node.id, (ChosenEntry(slot, self.value()),), slot)

    def _read_never_asked(self, node: Node) -> Message:
        """A read point for a read never asked, or asked of another node."""
        frm = self.member(node)
        wrong = [ctx for ctx, asked in node.read_asks.items() if asked != frm]
        ctx = self.rng.choice(wrong) if wrong else (1 << 61) + self.rng.randrange(1 << 20)
        while ctx in node.read_asks and node.read_asks[ctx] == frm:
            ctx += 1
        return ReadIndexReply(frm, node.id, ctx, 0, 1)

    def _absurd_refusal(self, node: Node) -> Message:
        """A refusal naming a promise of 2**63 - 1, or of a ballot the target never issued."""
        m = self.member(node)
        if node.ballot.node == node.id and self.rng.random() < 0.5:
            return Nack(m, node.id, node.ballot, Ballot(self._huge_round(node), m))
        never = Ballot(node.max_round + 1 + self.rng.randrange(100), node.id)
        return Nack(m, node.id, never, Ballot(never.round + 1, m))

    def _future_heartbeat(self, node: Node) -> Message | None:
        """An acknowledgement of a heartbeat round the leader has not sent (it would confirm
        every later read without a quorum)."""
        if node.role is not Role.LEADER:
            return None
        hb = node.heartbeat_round + 1 + self.rng.randrange(1000)
        return Accepted(self.member(node), node.id, node.ballot, (), 0, hb)

    def _promise_not_ours(self, node: Node) -> Message:
        """A promise for a ballot the target never issued, with a vote for slot 10**9."""
        m = self.member(node)
        ballot = Ballot(node.max_round + 1 + self.rng.randrange(100), node.id)
        vote = AcceptedEntry(10**9, ballot, self.value())
        return Promise(m, node.id, ballot, 1, (vote,), 10**9)

    def _bad_pre_vote(self, node: Node) -> Message:
        m = self.member(node)
        if self.rng.random() < 0.5:
            return PreVote(m, node.id, TOP_ROUND)
        return PreVoteReply(m, node.id, node.known_round() + 1, 2 + self.rng.randrange(100))

    def _from_itself(self, node: Node) -> Message:
        """A message claiming to come from its own receiver."""
        return Prepare(node.id, node.id, Ballot(node.known_round() + 1, node.id), 1)

    def _unsolicited_snapshot(self, node: Node) -> Message:
        """A snapshot offer from a peer nobody asked, of a made-up tree (the issue: a forged
        InstallSnapshot replaced every node's tree, and a garbage one made nodes exit 70)."""
        unasked = [v for v in self.voters if v != node.id and v not in node.catchup.asked]
        frm = self.rng.choice(unasked) if unasked else self.stranger
        slot = node.learner.commit + self.rng.choice([1, 10, 10**9])
        size = self.rng.choice([1, 1 << 20, TOP_ROUND])
        configs = tuple(node.members.configs)
        return SnapshotOffer(frm, node.id, slot, configs, size, self.rng.randbytes(32))

    def _stray_chunk(self, node: Node) -> Message:
        """Bytes of a snapshot transfer the target never started (or at an offset off it)."""
        frm = self.member(node)
        slot = node.learner.commit + self.rng.choice([1, 10**9])
        offset = self.rng.choice([0, 7, 1 << 40])
        return SnapshotChunk(frm, node.id, slot, offset, self.rng.randbytes(16))
