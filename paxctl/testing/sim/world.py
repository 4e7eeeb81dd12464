"""A whole cluster of real cores in one thread, on a virtual clock, driven by one seed.

Everything that happens is an event on one heap ordered by (virtual time, sequence number): a
node's tick, a message arriving, a crash, a restart, a partition, a client acting. Messages cross
the simulated network as bytes through the real codec, so nothing is shared by reference. Each
node is driven exactly as the real driver will: persist, send, apply, advance.

A run has two phases. In the safety phase faults come as the seed's profile says and clients keep
writing. Then the world heals (every node up, every link clean) and in the liveness phase every
command still pending must be applied within a bounded virtual time.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from paxctl.core import codec
from paxctl.core.learner import SafetyViolation
from paxctl.core.messages import Accept, CatchupReply, Message, Nack, Promise, describe
from paxctl.core.node import Node, Role
from paxctl.core.state import Config, DurableState
from paxctl.core.types import Command
from paxctl.testing.sim.faults import Faults
from paxctl.testing.sim.oracle import InvariantViolation, Oracle

TICK_MS = 10
CLIENT_TIMEOUT_MS = 400


@dataclass
class Stats:
    events: int = 0
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    crashes: int = 0
    partitions: int = 0
    elections: int = 0
    submitted: int = 0
    retries: int = 0
    completed: int = 0
    slots_chosen: int = 0
    # Rare paths, counted so a test can fail if a sweep never exercised them.
    nacks: int = 0
    catchups: int = 0
    adopted_votes: int = 0
    noops_proposed: int = 0

    def add(self, other: Stats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Client:
    id: int
    seq: int = 0
    outstanding: Command | None = None
    target: int = 0
    sent_at: int = 0
    done: int = 0


@dataclass
class SimSpec:
    """What to simulate. Everything not given is drawn from the seed."""

    seed: int
    nodes: int = 3
    clients: int = 0  # 0: drawn from the seed (3 to 10)
    max_commands_per_client: int = 10_000
    safety_ms: int = 6_000
    liveness_ms: int = 20_000
    faults: bool = True
    bugs: frozenset[str] = frozenset()
    trace: bool = False


@dataclass
class SimResult:
    spec: SimSpec
    ok: bool
    error: str | None
    stats: Stats
    faults: Faults
    virtual_ms: int
    trace: list[str] = field(default_factory=list)

    @property
    def trace_digest(self) -> str:
        return hashlib.sha256("\n".join(self.trace).encode()).hexdigest()


class World:
    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.faults = Faults.draw(self.rng, spec.nodes) if spec.faults else Faults.none()
        self.profile = self.faults
        self.voters = tuple(range(1, spec.nodes + 1))
        self.stats = Stats()
        self.oracle = Oracle(self.voters)
        self.now = 0
        self.trace: list[str] | None = [] if spec.trace else None
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self._healed = False

        self.disks = {n: DurableState() for n in self.voters}
        self.nodes: dict[int, Node | None] = {}
        self.incarnation = {n: 0 for n in self.voters}
        self.tick_ms = {
            n: TICK_MS * (1 + self.rng.uniform(-self.faults.tick_drift, self.faults.tick_drift))
            for n in self.voters
        }
        self.blocked: set[tuple[int, int]] = set()
        self.requests: dict[int, set[tuple[int, int]]] = {n: set() for n in self.voters}
        n_clients = spec.clients or self.rng.randint(3, 10)
        self.clients = [_Client(1000 + i) for i in range(n_clients)]

        for n in self.voters:
            self._start(n)
        for client in self.clients:
            self._at(self.rng.randint(0, 200), functools.partial(self._client_submit, client))
        if self.faults.crash_every_ms:
            self._at(self._exp(self.faults.crash_every_ms), self._crash_random)
        if self.faults.partition_every_ms:
            self._at(self._exp(self.faults.partition_every_ms), self._partition)
        self._at(spec.safety_ms, self._heal)

    # ------------------------------------------------------------------ event machinery

    def _at(self, delay: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + max(int(delay), 0), self._seq, action))

    def _exp(self, mean: int) -> int:
        return int(self.rng.expovariate(1 / mean)) + 1

    def _log(self, text: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.now:>7} {text}")

    def run(self) -> SimResult:
        deadline = self.spec.safety_ms + self.spec.liveness_ms
        error = None
        try:
            while self._heap:
                when, _, action = heapq.heappop(self._heap)
                self.now = when
                if self._healed and self._all_done():
                    break
                if when > deadline:
                    raise InvariantViolation(self._liveness_report())
                self.stats.events += 1
                action()
        except (InvariantViolation, SafetyViolation) as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._log(f"VIOLATION {error}")
        return SimResult(
            self.spec, error is None, error, self.stats, self.profile, self.now, self.trace or []
        )

    # ------------------------------------------------------------------ nodes

    def _start(self, n: int) -> None:
        self.incarnation[n] += 1
        rng = random.Random(f"{self.spec.seed}/{n}/{self.incarnation[n]}")
        config = Config(n, self.voters, planted_bugs=self.spec.bugs)
        state = self.disks[n].copy()
        self.oracle.restarted(n, state)
        self.nodes[n] = Node(config, rng, state)
        self.requests[n] = set()
        self._log(f"n{n} start incarnation={self.incarnation[n]} promised={state.promised}")
        self._schedule_tick(n, self.incarnation[n])

    def _schedule_tick(self, n: int, inc: int) -> None:
        self._at(self.tick_ms[n], lambda: self._tick(n, inc))

    def _tick(self, n: int, inc: int) -> None:
        node = self.nodes[n]
        if node is None or self.incarnation[n] != inc:
            return
        was_leader = node.role is Role.LEADER
        node.tick()
        self._drive(n, node, was_leader, "tick")
        self._schedule_tick(n, inc)

    def _drive(self, n: int, node: Node, was_leader: bool, what: str | Message) -> None:
        """Handle the node's Ready exactly as the real driver does."""
        ready = node.ready()
        if node.role is Role.LEADER and not was_leader:
            self.stats.elections += 1
            self._log(f"n{n} becomes leader b={node.ballot}")
        if self.trace is not None and (ready or what != "tick"):
            what = what if isinstance(what, str) else f"recv {describe(what)}"
            self._log(
                f"n{n} {what} role={node.role.value} b={node.ballot} "
                f"commit={node.learner.commit} persist={len(ready.votes)}v/{len(ready.chosen)}c"
                f"{'+hs' if ready.hard_state else ''} send={len(ready.messages)}"
            )
        if not ready:
            node.advance()
            return
        self.disks[n].persist(ready)  # 1. persist (the simulated disk syncs at once)
        self.oracle.observe(n, ready)
        for msg in ready.messages:  # 2. send
            self._count(msg)
            self._send(msg.frm, msg.to, codec.encode(msg))
        for applied in ready.committed:  # 3. apply, answering the clients waiting here
            for cmd in (*applied.commands, *applied.skipped):
                self._answer(n, cmd)
        self.stats.slots_chosen = max(self.stats.slots_chosen, len(self.oracle.chosen))
        node.advance()  # 4.

    def _count(self, msg: Message) -> None:
        if isinstance(msg, Nack):
            self.stats.nacks += 1
        elif isinstance(msg, CatchupReply):
            self.stats.catchups += 1
        elif isinstance(msg, Promise):
            self.stats.adopted_votes += len(msg.accepted)
        elif isinstance(msg, Accept):
            self.stats.noops_proposed += sum(1 for e in msg.entries if not e.value)

    def _crash_random(self) -> None:
        if not self._healed:
            up = [n for n in self.voters if self.nodes[n] is not None]
            if len(self.voters) - len(up) < self.faults.max_down and up:
                n = self.rng.choice(up)
                self.nodes[n] = None
                self.stats.crashes += 1
                self._log(f"n{n} CRASH")
                self._at(self.rng.randint(50, 2000), lambda: self._restart(n))
            self._at(self._exp(self.faults.crash_every_ms), self._crash_random)

    def _restart(self, n: int) -> None:
        if self.nodes[n] is None:
            self._start(n)

    # ------------------------------------------------------------------ network

    def _send(self, src: int, dst: int, data: bytes) -> None:
        self.stats.sent += 1
        f = self.faults
        if (src, dst) in self.blocked or self.rng.random() < f.drop:
            self.stats.dropped += 1
            return
        copies = 2 if self.rng.random() < f.duplicate else 1
        self.stats.duplicated += copies - 1
        for _ in range(copies):
            delay = self.rng.randint(f.min_delay_ms, f.max_delay_ms)
            if f.slow and self.rng.random() < f.slow:
                delay += self.rng.randint(0, f.slow_delay_ms)
            self._at(delay, lambda: self._deliver(src, dst, data))

    def _deliver(self, src: int, dst: int, data: bytes) -> None:
        node = self.nodes[dst]
        if node is None or (src, dst) in self.blocked:
            self.stats.dropped += 1
            return
        self.stats.delivered += 1
        msg = codec.decode(data)
        was_leader = node.role is Role.LEADER
        node.step(msg)
        self._drive(dst, node, was_leader, msg)

    def _partition(self) -> None:
        if self._healed:
            return
        self.blocked.clear()
        kind = self.rng.choice(["isolate", "split", "oneway", "none"])
        voters = list(self.voters)
        if kind == "isolate":
            lone = self.rng.choice(voters)
            self.blocked = {(a, b) for a in voters for b in voters if lone in (a, b) and a != b}
        elif kind == "split":
            self.rng.shuffle(voters)
            cut = self.rng.randint(1, len(voters) - 1)
            left, right = set(voters[:cut]), set(voters[cut:])
            self.blocked = {(a, b) for a in voters for b in voters if (a in left) != (b in left)}
            del right
        elif kind == "oneway":
            for a in voters:
                for b in voters:
                    if a != b and self.rng.random() < 0.3:
                        self.blocked.add((a, b))
        self.stats.partitions += kind != "none"
        self._log(f"PARTITION {kind} blocked={sorted(self.blocked)}")
        self._at(self._exp(self.faults.partition_every_ms), self._partition)

    def _heal(self) -> None:
        """End of the safety phase: every node up, every link reliable and prompt."""
        self._healed = True
        self.blocked.clear()
        self.faults = Faults(min_delay_ms=1, max_delay_ms=5)  # the drawn profile stays in result
        self._log("HEAL")
        for n in self.voters:
            if self.nodes[n] is None:
                self._start(n)

    # ------------------------------------------------------------------ clients

    def _client_submit(self, c: _Client) -> None:
        if c.outstanding is None:
            if self._healed or c.seq >= self.spec.max_commands_per_client:
                return
            c.seq += 1
            data = self.rng.randbytes(8)
            c.outstanding = Command(c.id, c.seq, data)
            self.oracle.submitted(c.outstanding)
            self.stats.submitted += 1
        else:
            self.stats.retries += 1
        up = [n for n in self.voters if self.nodes[n] is not None]
        if up:
            c.target = self.rng.choice(up)
            node = self.nodes[c.target]
            assert node is not None
            cmd = c.outstanding
            self._log(f"client {c.id} -> n{c.target} propose {cmd.client}:{cmd.seq}")
            self.requests[c.target].add((cmd.client, cmd.seq))
            if node.is_applied(cmd):  # a retry of a command that took effect: answer it
                self._answer(c.target, cmd)
            else:
                was_leader = node.role is Role.LEADER
                node.propose(cmd)
                self._drive(c.target, node, was_leader, f"propose {cmd.client}:{cmd.seq}")
        c.sent_at = self.now
        seq = c.seq
        self._at(CLIENT_TIMEOUT_MS, lambda: self._client_timeout(c, seq))

    def _client_timeout(self, c: _Client, seq: int) -> None:
        if c.outstanding is not None and c.outstanding.seq == seq:
            self._client_submit(c)  # indeterminate: retry the same command

    def _answer(self, n: int, cmd: Command) -> None:
        key = (cmd.client, cmd.seq)
        if key not in self.requests[n]:
            return
        self.requests[n].discard(key)
        client = self.clients[cmd.client - 1000]
        if client.outstanding is not None and client.outstanding.seq == cmd.seq:
            self._log(f"client {client.id} <- n{n} done {cmd.client}:{cmd.seq}")
            client.outstanding = None
            client.done += 1
            self.stats.completed += 1
            self._at(self.rng.randint(1, 100), lambda: self._client_submit(client))

    # ------------------------------------------------------------------ liveness

    def _all_done(self) -> bool:
        if any(c.outstanding is not None for c in self.clients):
            return False
        top = len(self.oracle.effective)
        return all(node is not None and node.learner.applied >= top for node in self.nodes.values())

    def _liveness_report(self) -> str:
        pending = [f"{c.id}:{c.outstanding.seq}" for c in self.clients if c.outstanding]
        views = ", ".join(
            f"n{n}={node.role.value}/b{node.ballot}/applied{node.learner.applied}"
            for n, node in sorted(self.nodes.items())
            if node is not None
        )
        return (
            f"liveness: after {self.spec.liveness_ms}ms healed, commands still pending "
            f"{pending or 'none'}; chosen prefix {len(self.oracle.effective)}; nodes {views}"
        )
