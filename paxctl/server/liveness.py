"""Session liveness as a node runs it: relay heartbeats, confirm them, expire through the log.

Pure (no clock, no sockets): the driver passes times in and sends what comes out, so the asyncio
server and the simulator run this same code.

The guarantee a client relies on (and ``paxctl lock`` builds its kill deadline on): when a ping
sent at time ``s`` is answered "alive", no expiry of that session can be chosen before
``s + timeout``. Three rules make it hold:

1. The node answers a ping only after the leader has recorded the heartbeat (followers relay
   their clients' heartbeats to every peer; only a ready leader acknowledges).
2. The leader acknowledges only after a read-index round that began after it recorded the
   heartbeat: a quorum confirmed it was still the leader then, so any later leader was elected
   after the heartbeat and counts a full timeout from its own start.
3. A leader expires nothing until it is ``leader_ready`` (older leaders' proposals are applied),
   then gives every session a fresh full timeout (``LivenessTracker.lead``).
4. An expiry is valid only in the term that decided it. A deposed leader's proposals are not
   lost: the core hands them to the next leader (``Forward``), or proposes them again if it
   leads again, possibly long after a newer leader answered that session "alive" (found by the
   simulator). So reaper sequence numbers grow with the ballot, and a new leader first gets a
   fence (an empty ``Reap``) applied, answering no ping "alive" before: every older term's
   reaper command is then below the reaper's highest applied ``seq``, and the state machine's
   exactly-once table skips it wherever it lands in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from paxctl.core.codec import MAX_UINT
from paxctl.core.messages import Message, Relay
from paxctl.core.node import Node
from paxctl.core.types import Command
from paxctl.server.sessions import LivenessTracker, TouchRelay
from paxctl.statemachine.machine import StateMachine
from paxctl.statemachine.ops import REAPER_CLIENT, CloseSession, Reap, encode_command

#: Relay kinds (the body is msgpack ``[round, [session, ...]]``).
TOUCH, TOUCH_ACK = 1, 2

#: Read-index contexts of liveness confirmations carry this bit, so the driver can tell them
#: from its client reads.
CONFIRM_BIT = 1 << 62

#: Most sessions named in one relay message (about 9 MB, well inside a peer frame); plain
#: heartbeats beyond it wait for the next tick. Pinged sessions always go (see TouchRelay.take).
MAX_TOUCH = 1_000_000

#: Test only: bugs the simulator plants to prove its session invariants bite. None is ever set
#: outside ``paxctl sim --plant-bug``; with none planted the keeper behaves exactly as documented.
PLANTED_KEEPER_BUGS = frozenset(
    {
        "ack_unrecorded",  # the leader acknowledges heartbeats it did not record (rule 1)
        "no_fresh_timeout",  # a new leader counts from heartbeats it saw before (rule 3)
        "no_reaper_fence",  # a new leader proposes no fence: older terms' expiries apply (rule 4)
    }
)


class RelayError(ValueError):
    """A relay body that is not what this module sends."""


def encode_touch(round_: int, sessions: Iterable[int]) -> bytes:
    out: bytes = msgpack.packb([round_, list(sessions)], use_bin_type=True)
    return out


def decode_touch(body: bytes) -> tuple[int, tuple[int, ...]]:
    """``(round, sessions)``; ``RelayError`` for anything malformed (a peer's bytes)."""
    try:
        x = msgpack.unpackb(body, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise RelayError(f"undecodable relay: {type(exc).__name__}") from None
    if type(x) is not list or len(x) != 2 or type(x[1]) is not list or len(x[1]) > MAX_TOUCH:
        raise RelayError("a relay body is [round, [session, ...]]")
    if not all(type(v) is int and 0 <= v <= MAX_UINT for v in (x[0], *x[1])):
        raise RelayError("relay round and sessions must be non-negative integers")
    return x[0], tuple(x[1])


@dataclass
class Duties:
    """What the driver must do: send ``messages``, propose ``proposals``, answer pings."""

    messages: list[Message] = field(default_factory=list)
    proposals: list[Command] = field(default_factory=list)
    answers: list[tuple[Any, bool]] = field(default_factory=list)  # (ping token, alive)

    def extend(self, other: Duties) -> None:
        self.messages += other.messages
        self.proposals += other.proposals
        self.answers += other.answers


class SessionKeeper:
    """One node's share of session liveness; see the module docstring for the rules."""

    def __init__(
        self,
        node_id: int,
        peers: Iterable[int],
        *,
        incarnation: int = 0,
        reap_every: int = 10,
        retry_ms: int = 1000,
        planted_bugs: frozenset[str] = frozenset(),
    ) -> None:
        unknown = planted_bugs - PLANTED_KEEPER_BUGS
        if unknown:
            raise ValueError(f"unknown planted keeper bugs: {sorted(unknown)}")
        self._bugs = planted_bugs
        self._observed: dict[int, int] = {}  # only with the planted bug no_fresh_timeout
        self.id = node_id
        self.peers = tuple(sorted(p for p in peers if p != node_id))
        self.tracker = LivenessTracker(retry_ms=retry_ms)
        self.relay = TouchRelay()
        self.reap_every = reap_every
        # Relay rounds on the wire are offset by a number new to each process start, so an
        # acknowledgement meant for a previous run of this node cannot answer this run's pings.
        self._offset = (incarnation % (1 << 31)) << 32
        self._ticks = 0
        self._next_ctx = 0
        # ctx -> (who asked: a peer id, or None for this node's own relay, round, sessions)
        self._confirming: dict[int, tuple[int | None, int, tuple[int, ...]]] = {}
        self._fence: Command | None = None  # this term's first reaper command (rule 4)
        self._fenced: Callable[[StateMachine], bool] = lambda machine: False
        self._reaper_term = -1
        self._reaper_k = 0
        self.expired_proposed = 0
        self.reaps_proposed = 0
        self._empty_seen: dict[str, int] = {}  # container -> its cversion at the last sweep

    # ------------------------------------------------------------------ inputs

    def ping(self, session: int, token: Any) -> None:
        """A client pinged: answer it (through ``Duties.answers``) once the leader confirmed."""
        self.relay.ping(session, token)

    def touch(self, session: int) -> None:
        """Any other request on a session is a heartbeat too (nobody waits for it)."""
        self.relay.touch(session)

    def discard(self, dead: Any) -> None:
        """Forget waiting pings whose token satisfies ``dead`` (their connection closed)."""
        self.relay.discard(dead)

    def tick(self, node: Node, machine: StateMachine, now_ms: int, wall_ms: int) -> Duties:
        """Once per tick: follow leadership, relay heartbeats, expire and reap (leader only)."""
        duties = Duties()
        self._ticks += 1
        ready = self._follow_leadership(node, now_ms, wall_ms)
        if ready and self._fence is not None and not self._fenced(machine):
            node.propose(self._fence)  # again, in case it did not fit (a no-op if pending)
        taken = self.relay.take(MAX_TOUCH)
        if taken is not None:
            round_, sessions = taken
            if ready:
                self._confirm(node, None, round_, sessions, now_ms)
            else:
                body = encode_touch(self._offset + round_, sessions)
                duties.messages += [Relay(self.id, p, TOUCH, body) for p in self.peers]
        if ready:
            table = machine.sessions()
            for session in self.tracker.due(now_ms, table):
                duties.proposals.append(self._reaper(node, wall_ms, CloseSession(session)))
                self.expired_proposed += 1
            if self._ticks % self.reap_every == 0:
                candidates = self._settled(machine, machine.reap_candidates(wall_ms, 1000))
                if candidates:
                    duties.proposals.append(self._reaper(node, wall_ms, Reap(tuple(candidates))))
                    self.reaps_proposed += 1
        return duties

    def _settled(self, machine: StateMachine, candidates: list[str]) -> list[str]:
        """The candidates worth a ``Reap``: a container only once two sweeps in a row found it
        empty with no child change in between (same cversion). A lock in use is empty for a
        moment at every release; reaping it then costs its next contender two more writes
        (NoNode, then the container again) and the cluster a round for the reap. TTL nodes keep
        their own clock. Only what this leader proposes changes: ``Reap`` re-checks at apply."""
        tree = machine.tree
        seen: dict[str, int] = {}
        ripe: list[str] = []
        for path in candidates:
            if tree.kind(path)[0] != "container":
                ripe.append(path)
                continue
            seen[path] = tree.stat(path).cversion
            if self._empty_seen.get(path) == seen[path]:
                ripe.append(path)
        self._empty_seen = seen
        return ripe

    def on_relay(self, msg: Relay, node: Node, machine: StateMachine, now_ms: int) -> Duties:
        """A peer's relay message. Malformed bodies are dropped (the peer gains nothing)."""
        duties = Duties()
        try:
            round_, sessions = decode_touch(msg.body)
        except RelayError:
            return duties
        if msg.kind == TOUCH and "no_fresh_timeout" in self._bugs:  # planted: overheard
            self._observed.update((s, now_ms) for s in sessions)
        if msg.kind == TOUCH and self._follow_leadership(node, now_ms, 0):
            self._confirm(node, msg.frm, round_, sessions, now_ms)
        elif msg.kind == TOUCH_ACK and round_ > self._offset:
            duties.answers += self.relay.acked(round_ - self._offset, sessions)
        return duties

    def confirmed(self, ctx: int, ok: bool, machine: StateMachine) -> Duties:
        """The read-index round for ``ctx`` ended: ``ok`` if this node was still leader."""
        duties = Duties()
        asked = self._confirming.pop(ctx, None)
        if asked is None or not ok or not self._fenced(machine):
            return duties  # the asker's pings go unanswered; they are relayed and asked again
        frm, round_, sessions = asked
        # A session this leader is expiring is not alive, even if it pinged since: the expiry
        # may be chosen any moment, long before the ping's send time plus the timeout.
        expired = [s for s in sessions if not machine.has_session(s) or self.tracker.expiring(s)]
        if frm is None:
            duties.answers += self.relay.acked(round_, expired)
        else:
            duties.messages.append(Relay(self.id, frm, TOUCH_ACK, encode_touch(round_, expired)))
        return duties

    @staticmethod
    def is_confirmation(ctx: int) -> bool:
        return bool(ctx & CONFIRM_BIT)

    # ------------------------------------------------------------------ internals

    def _follow_leadership(self, node: Node, now_ms: int, wall_ms: int) -> bool:
        """Start or end a term of this node's leadership; True if it is a ready leader."""
        ready = node.leader_ready
        if ready and not self.tracker.active:
            self.tracker.lead(now_ms)
            if "no_fresh_timeout" in self._bugs:  # planted: resume from the old observations
                for session, seen in sorted(self._observed.items()):
                    self.tracker.touch((session,), seen)
            if "no_reaper_fence" in self._bugs:  # planted: as if rule 4 did not exist
                self._fenced = lambda machine: True
                return ready
            fence = self._fence = self._reaper(node, wall_ms, Reap(()))
            self._fenced = lambda machine: machine.is_applied(fence.client, fence.seq)
            node.propose(fence)
        elif not ready and self.tracker.active:
            self.tracker.follow()
            self._fence, self._fenced = None, lambda machine: False
        return ready

    @property
    def fence(self) -> Command | None:
        """This term's fence, which the keeper proposes itself (so a test harness sees it)."""
        return self._fence

    def _confirm(
        self, node: Node, frm: int | None, round_: int, sessions: tuple[int, ...], now_ms: int
    ) -> None:
        if "ack_unrecorded" not in self._bugs:
            self.tracker.touch(sessions, now_ms)
        if "no_fresh_timeout" in self._bugs:
            self._observed.update((s, now_ms) for s in sessions)
        self._next_ctx += 1
        ctx = CONFIRM_BIT | self._next_ctx
        self._confirming[ctx] = (frm, round_, sessions)
        node.read_index(ctx)

    def _reaper(self, node: Node, wall_ms: int, op: CloseSession | Reap) -> Command:
        """A command of the cluster's own, numbered above every earlier term's (rule 4).

        The machine's exactly-once table keeps the highest ``seq`` per client (the reaper's for
        good: it is one of the cluster's own ids), so the high bits are this
        leader's ballot (round, then node id): every term's numbers exceed all older terms'.
        """
        ballot = node.ballot
        term = (min(ballot.round, (1 << 23) - 1) << 16) | (ballot.node & 0xFFFF)
        if term != self._reaper_term:
            self._reaper_term, self._reaper_k = term, 0
        self._reaper_k += 1
        seq = (term << 24) | min(self._reaper_k, (1 << 24) - 1)
        return Command(REAPER_CLIENT, seq, encode_command(wall_ms, op))
