"""Node engines on a perfect in-memory network, with the checks every engine fuzz test makes.

``FuzzCluster`` is plumbing, not a second engine: it hands each ``NodeEngine`` (the production
class, as ``paxctl node start`` and the simulator drive it) ticks, peer messages and client
requests, and runs its Ready loop, as ``server/node_server.py`` does. Client payloads go through
the real ``decode_request`` first, so handlers see only what a node would let through; a
``NotARequest`` closes the connection, a ``BadRequest`` is answered through ``reject``.

On the way it checks what must hold for any input: no engine call raises; every peer message
out encodes and decodes to itself (a node never sends what a peer cannot read); every frame to a
client encodes and decodes to itself; every reply answers a request of that connection that was
not yet answered (so none is answered twice), and nothing reaches a connection after it closed.
``unanswered`` lists the requests still waiting, for the end-of-run check.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from paxctl.core.codec import decode, encode
from paxctl.core.messages import Message
from paxctl.core.node import Node, Role
from paxctl.core.state import Config, Ready
from paxctl.protocol.codec import (
    BadRequest,
    NotARequest,
    decode_from_server,
    decode_request,
    encode_push,
    encode_reply,
)
from paxctl.protocol.messages import SEQUENCED, Failed, Hello, Ok, SessionGranted
from paxctl.server.engine import EngineConfig, NodeEngine, Output
from paxctl.server.requests import Frame
from paxctl.statemachine.machine import StateMachine

WALL = 1_700_000_000_000  # the wall clock at virtual time 0
TICK_MS = 10


class MemoryDisk:
    """The ``Disk`` port: remembers nothing (the fuzz restarts no node)."""

    def persist(self, ready: Ready) -> None:
        pass


@dataclass
class Conn:
    """A client connection as the fuzz sees it: where it is, what it asked, what it got."""

    node: int
    open: bool = True
    client: int | None = None  # the id its last successful hello or open_session gave it
    waiting: dict[int, Any] = field(default_factory=dict)  # xid -> request (None: undecoded)
    answered: set[int] = field(default_factory=set)
    frames: list[Any] = field(default_factory=list)


class FuzzCluster:
    def __init__(self, size: int, seed: int = 1, snapshot_every: int = 0) -> None:
        voters = tuple(range(1, size + 1))
        self.engines: dict[int, NodeEngine] = {}
        for n in voters:
            core = Config(n, voters, election_ticks=2, heartbeat_ticks=1, pre_vote=size > 1)
            node = Node(core, random.Random(seed * 100 + n), None)
            config = EngineConfig(
                n, voters, snapshot_every=snapshot_every, digest_every=5, min_session_ms=1
            )
            self.engines[n] = NodeEngine(config, node, MemoryDisk(), None)
        self.now = 0
        self.network: list[Message] = []
        self.conns: dict[int, Conn] = {}
        self._next_conn = 0
        self._next_xid = 0
        #: Session ids and other values replies carried, for later requests to echo.
        self.seen: dict[str, list[Any]] = {}
        self.seqs: dict[int, int] = {}  # the highest seq sent per client id
        self.settled = False
        self.settle_limit = 20_000
        self.storms_allowed = False
        self.storms = 0

    # ------------------------------------------------------------------ outputs

    def _carry_out(self, node: int, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Frame):
                self._deliver_frame(node, out)
            else:
                assert isinstance(out, Message), out
                assert out.frm == node, f"node {node} sent {out} signed by another"
                assert decode(encode(out)) == out, f"node {node} sent an unreadable {out}"
                self.network.append(out)

    def _deliver_frame(self, node: int, out: Frame) -> None:
        conn = self.conns.get(out.conn)
        assert conn is not None and conn.node == node, f"node {node} wrote to a stranger: {out}"
        assert conn.open, f"a frame after the connection closed: {out}"
        frame = out.frame
        payload = encode_reply(frame) if isinstance(frame, Ok | Failed) else encode_push(frame)
        assert decode_from_server(payload) == frame, f"a frame the client cannot read: {frame}"
        conn.frames.append(frame)
        if not isinstance(frame, Ok | Failed):
            return
        assert frame.xid not in conn.answered, f"xid {frame.xid} answered twice: {frame}"
        assert frame.xid in conn.waiting, f"an answer to no request: {frame}"
        req = conn.waiting.pop(frame.xid)
        conn.answered.add(frame.xid)
        if isinstance(frame, Ok):
            self._learn(conn, req, frame.value)

    def _learn(self, conn: Conn, req: Any, value: Any) -> None:
        if isinstance(req, Hello):
            conn.client = req.client
        if isinstance(value, dict):
            if "session" in value and "timeout_ms" in value:
                conn.client = SessionGranted(value["session"], value["timeout_ms"]).session
            for key, v in value.items():
                if isinstance(key, str) and isinstance(v, int | bytes | str):
                    pool = self.seen.setdefault(key, [])
                    if v not in pool:
                        pool.append(v)

    # ------------------------------------------------------------------ inputs

    def run(self, node: int, call: Any, *args: Any) -> list[Output]:
        """One engine input (``call`` bound to that node's engine); its outputs carried out."""
        outputs: list[Output] = call(*args)
        self._carry_out(node, outputs)
        self.settled = False
        return outputs

    def process(self, node: int) -> bool:
        done = self.engines[node].process()
        self._carry_out(node, done.outputs)
        self.settled = False
        return done.more

    def settle(self) -> None:
        """Run Ready loops and deliver messages until nothing moves. A cluster that keeps
        messaging without a tick fails the test, unless ``storms_allowed`` (forged messages
        may start an exchange that only their validation ends): then it stops after
        ``settle_limit`` deliveries, and ``storms`` counts it."""
        for _ in range(self.settle_limit):
            more = False
            for n in self.engines:
                while self.process(n):
                    more = True
            if self.network:
                msg, self.network = self.network[0], self.network[1:]
                self.receive(msg)
                more = True
            if not more:
                self.settled = True
                return
        if not self.storms_allowed:
            raise AssertionError("the cluster never settled")
        self.storms += 1

    def receive(self, msg: Message) -> None:
        engine = self.engines.get(msg.to)
        if engine is not None:
            self.run(msg.to, engine.receive, msg, self.now, WALL + self.now)

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.now += TICK_MS
            for node, engine in self.engines.items():
                self.run(node, engine.tick, self.now, WALL + self.now)
            self.settle()

    def elect(self, limit: int = 200) -> int:
        for _ in range(limit):
            for n, engine in self.engines.items():
                if engine.node.role is Role.LEADER and engine.node.leader_ready:
                    return n
            self.tick()
        raise AssertionError("no leader")

    # ------------------------------------------------------------------ clients

    def open(self, node: int) -> int:
        self._next_conn += 1
        self.conns[self._next_conn] = Conn(node)
        self.engines[node].connection_opened(self._next_conn)
        self.settled = False
        return self._next_conn

    def close(self, number: int) -> None:
        conn = self.conns[number]
        if conn.open:
            conn.open = False
            conn.waiting.clear()  # nobody is left to answer
            self.engines[conn.node].connection_closed(number)
        self.settled = False

    def next_xid(self) -> int:
        self._next_xid += 1
        return self._next_xid

    def send(self, number: int, payload: bytes) -> tuple[str, list[Output]]:
        """A client's payload on connection ``number``, as the shell hands it to the engine;
        returns what became of it ("request", "rejected", "closed", or "skipped" for an xid
        this connection already used: the fuzz could not tell its answers apart) and the
        engine's immediate outputs."""
        conn = self.conns[number]
        engine = self.engines[conn.node]
        try:
            req = decode_request(payload)
        except NotARequest:
            self.close(number)
            return "closed", []
        except BadRequest as exc:
            if exc.xid in conn.waiting or exc.xid in conn.answered:
                return "skipped", []
            conn.waiting[exc.xid] = None
            return "rejected", self.run(conn.node, engine.reject, number, exc.xid, exc.error)
        if req.xid in conn.waiting or req.xid in conn.answered:
            return "skipped", []
        conn.waiting[req.xid] = req
        if isinstance(req, SEQUENCED) and conn.client is not None:
            self.seqs[conn.client] = max(self.seqs.get(conn.client, 0), req.seq)
        return "request", self.run(conn.node, engine.request, number, req, WALL + self.now)

    def unanswered(self) -> list[tuple[int, Any]]:
        """Requests on open connections still waiting (none may wait for ever: a hello or
        local read naming a zxid no node reached is refused once the leader says so)."""
        return [(n, req) for n, conn in self.conns.items() for req in conn.waiting.values()]

    # ------------------------------------------------------------------ replicas

    def check_replicas(self) -> None:
        """Every replica agrees with itself (incremental digest, snapshot) and with the others
        at the same applied slot, and the digest audit saw no mismatch."""
        by_slot: dict[int, bytes] = {}
        for n, engine in self.engines.items():
            machine = engine.machine
            digest = machine.digest()
            assert digest == machine.digest_from_scratch(), f"node {n}: incremental digest"
            assert StateMachine.restore(engine.snapshot()).digest() == digest, f"node {n}"
            assert engine.status()["digest_mismatches"] == 0, f"node {n}: audit mismatch"
            applied = engine.node.learner.applied
            assert by_slot.setdefault(applied, digest) == digest, f"node {n} diverged"

    def digests(self) -> dict[int, bytes]:
        return {n: e.machine.digest() for n, e in self.engines.items()}
