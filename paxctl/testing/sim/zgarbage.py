"""The garbage peer's kinds for the znodes workload: what only the node engine acts upon.

A ``Forward`` carrying a command under the reaper's client id (closing a live session, with a
sequence number of 2**63 - 1 so that every later expiry would look like a duplicate) or the
digest audit's; a ``Relay`` of heartbeats from a stranger (the issue: it kept a dead session
alive); an acknowledgement of heartbeats from a member the target does not follow.
"""

from __future__ import annotations

from paxctl.core.messages import Forward, Message, Relay
from paxctl.core.node import Node
from paxctl.core.types import Command
from paxctl.server.audit import SYSTEM_CLIENT
from paxctl.server.liveness import TOUCH, TOUCH_ACK, encode_touch
from paxctl.statemachine.machine import StateMachine
from paxctl.statemachine.ops import REAPER_CLIENT, CloseSession, Reap, encode_command
from paxctl.testing.sim.garbage import TOP_ROUND, GarbagePeer, Maker


class ZnodeGarbage:
    def __init__(self, peer: GarbagePeer, machine: StateMachine, wall_ms: int) -> None:
        self.peer = peer
        self.sessions = sorted(machine.sessions())
        self.wall_ms = wall_ms
        self.makers: list[Maker] = [self._posing_reaper, self._stranger_relay, self._stray_ack]

    def _posing_reaper(self, node: Node) -> Message:
        rng = self.peer.rng
        if self.sessions and rng.random() < 0.7:
            op: CloseSession | Reap = CloseSession(rng.choice(self.sessions))
        else:
            op = Reap(())
        client = REAPER_CLIENT if rng.random() < 0.8 else SYSTEM_CLIENT
        seq = rng.choice([TOP_ROUND, rng.randrange(1 << 40)])
        cmd = Command(client, seq, encode_command(self.wall_ms, op))
        return Forward(self.peer.member(node), node.id, (cmd,))

    def _stranger_relay(self, node: Node) -> Message:
        rng = self.peer.rng
        sessions = rng.sample(self.sessions, min(len(self.sessions), 3))
        kind = rng.choice([TOUCH, TOUCH_ACK])
        return Relay(self.peer.stranger, node.id, kind, encode_touch(rng.randrange(100), sessions))

    def _stray_ack(self, node: Node) -> Message | None:
        others = [v for v in self.peer.voters if v not in (node.id, node.leader)]
        if not others:
            return None
        rng = self.peer.rng
        body = encode_touch(rng.randrange(1 << 40), self.sessions[:3])
        return Relay(rng.choice(others), node.id, TOUCH_ACK, body)
