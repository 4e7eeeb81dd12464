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
"""

from __future__ import annotations

from collections.abc import Iterable
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

#: Most sessions named in one relay message; more wait for the next tick.
MAX_TOUCH = 10_000


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
    ) -> None:
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
        self._reaper_base = -1
        self._reaper_k = 0
        self.expired_proposed = 0
        self.reaps_proposed = 0

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
        ready = node.leader_ready
        if ready and not self.tracker.active:
            self.tracker.lead(now_ms)
        elif not ready and self.tracker.active:
            self.tracker.follow()
        taken = self.relay.take()
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
                candidates = machine.reap_candidates(wall_ms, 1000)
                if candidates:
                    duties.proposals.append(self._reaper(node, wall_ms, Reap(tuple(candidates))))
                    self.reaps_proposed += 1
        return duties

    def on_relay(self, msg: Relay, node: Node, machine: StateMachine, now_ms: int) -> Duties:
        """A peer's relay message. Malformed bodies are dropped (the peer gains nothing)."""
        duties = Duties()
        try:
            round_, sessions = decode_touch(msg.body)
        except RelayError:
            return duties
        if msg.kind == TOUCH and node.leader_ready:
            self._confirm(node, msg.frm, round_, sessions, now_ms)
        elif msg.kind == TOUCH_ACK and round_ > self._offset:
            duties.answers += self.relay.acked(round_ - self._offset, sessions)
        return duties

    def confirmed(self, ctx: int, ok: bool, machine: StateMachine) -> Duties:
        """The read-index round for ``ctx`` ended: ``ok`` if this node was still leader."""
        duties = Duties()
        asked = self._confirming.pop(ctx, None)
        if asked is None or not ok:
            return duties  # the asker's pings go unanswered; its clients ping again
        frm, round_, sessions = asked
        table = machine.sessions()
        expired = [s for s in sessions if s not in table]
        if frm is None:
            duties.answers += self.relay.acked(round_, expired)
        else:
            duties.messages.append(Relay(self.id, frm, TOUCH_ACK, encode_touch(round_, expired)))
        return duties

    @staticmethod
    def is_confirmation(ctx: int) -> bool:
        return bool(ctx & CONFIRM_BIT)

    # ------------------------------------------------------------------ internals

    def _confirm(
        self, node: Node, frm: int | None, round_: int, sessions: tuple[int, ...], now_ms: int
    ) -> None:
        self.tracker.touch(sessions, now_ms)
        self._next_ctx += 1
        ctx = CONFIRM_BIT | self._next_ctx
        self._confirming[ctx] = (frm, round_, sessions)
        node.read_index(ctx)

    def _reaper(self, node: Node, wall_ms: int, op: CloseSession | Reap) -> Command:
        """A command of the cluster's own, with a sequence number no earlier leader used.

        The exactly-once table keeps the highest ``seq`` per client, so the reaper's numbers
        must grow across leaders: the high bits are this leader's applied slot, which is past
        every slot an earlier leader's reaper command was chosen in (``leader_ready``).
        """
        base = node.learner.applied
        if base != self._reaper_base:
            self._reaper_base, self._reaper_k = base, 0
        self._reaper_k += 1
        seq = (base << 20) | min(self._reaper_k, (1 << 20) - 1)
        return Command(REAPER_CLIENT, seq, encode_command(wall_ms, op))
