"""A whole cluster of real cores in one thread, on a virtual clock, driven by one seed.

Everything that happens is an event on one heap ordered by (virtual time, sequence number): a
node's tick, a message arriving, a crash, a restart, a partition, a client acting. Messages cross
the simulated network as bytes through the real codec, so nothing is shared by reference. Each
node is driven exactly as the real driver will: persist, send, apply, advance.

A run has two phases. In the safety phase faults come as the seed's profile says and clients keep
writing. Then the world heals (every node up, every link clean) and in the liveness phase every
command still pending must be applied within a bounded virtual time.

This module's workload ("chain") checks the consensus core with a hash-chain application; the
"znodes" workload (znodes.py) runs the production replica with sessions and watches instead.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass

from paxctl.core import codec
from paxctl.core.learner import SafetyViolation
from paxctl.core.messages import Message, Nack, describe
from paxctl.core.node import Node, Role
from paxctl.core.state import PLANTED_BUGS, Ready
from paxctl.core.types import Command
from paxctl.storage.framing import CorruptionError
from paxctl.testing.sim.app import Answer, Served
from paxctl.testing.sim.faults import Faults
from paxctl.testing.sim.garbage import GarbagePeer, Maker
from paxctl.testing.sim.host import SimHost
from paxctl.testing.sim.nemesis import Nemesis
from paxctl.testing.sim.nemesis import draw as draw_nemesis
from paxctl.testing.sim.oracle import InvariantViolation, Oracle
from paxctl.testing.sim.reconfig import Reconfig
from paxctl.testing.sim.spec import SimResult as SimResult  # re-exported: the runner's types
from paxctl.testing.sim.spec import SimSpec as SimSpec
from paxctl.testing.sim.spec import Stats as Stats
from paxctl.testing.simfs import SimulatedCrash

TICK_MS = 10
CLIENT_TIMEOUT_MS = 400


@dataclass
class _Client:
    id: int
    seq: int = 0
    outstanding: Command | None = None
    target: int = 0
    sent_at: int = 0
    done: int = 0


class World:
    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.faults = Faults.draw(self.rng, spec.nodes) if spec.faults else Faults.none()
        self.profile = self.faults
        self.voters = tuple(range(1, spec.nodes + 1))
        self.stats = Stats()
        self.oracle = self._make_oracle()
        self.now = 0
        self.trace: list[str] | None = [] if spec.trace else None
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self._healed = False
        self.garbage = GarbagePeer(spec.seed, self.voters) if spec.garbage else None
        self.nemesis: Nemesis | None = None  # (drawn last, with the reconfiguration operator)

        self.core_bugs = spec.bugs & PLANTED_BUGS
        self.storage_bugs = spec.bugs - self.core_bugs - self.shell_bugs
        self.hosts = {n: self._make_host(n, self.core_bugs, self.storage_bugs) for n in self.voters}
        for host in self.hosts.values():
            host.snapshot_chunk = spec.snapshot_chunk
        #: The hosts that run (or will restart): not those retired after their removal, nor
        #: those powered off for good. Hosts join it as the membership grows.
        self.live = list(self.voters)
        self.tick_ms = {
            n: TICK_MS * (1 + self.rng.uniform(-self.faults.tick_drift, self.faults.tick_drift))
            for n in self.voters
        }
        self.blocked: set[tuple[int, int]] = set()
        self.requests: dict[int, set[tuple[int, int]]] = {n: set() for n in self.voters}
        self.acked_floor = 0  # the highest slot of any write acknowledged so far
        self.pending_reads: dict[int, int] = {}  # read ctx -> acked_floor when it began
        self._read_ctx = 0

        for n in self.voters:
            self._start(n)
        self._start_workload()
        if self.faults.crash_every_ms:
            self._at(self._exp(self.faults.crash_every_ms), self._crash_random)
        if self.faults.partition_every_ms:
            self._at(self._exp(self.faults.partition_every_ms), self._partition)
        self._at(spec.safety_ms, self._heal)
        if self.garbage is not None:
            self._at(self.garbage.next_delay(), self._inject_garbage)
        self.reconfig = Reconfig(self) if spec.reconfig else None
        if spec.reconfig and spec.faults:
            self.nemesis = draw_nemesis(self)

    #: Planted bugs of the shell around the core (the znodes workload's), not storage's.
    shell_bugs: frozenset[str] = frozenset()

    def _make_oracle(self) -> Oracle:
        return Oracle(self.voters)

    def _make_host(
        self, n: int, core_bugs: frozenset[str], storage_bugs: frozenset[str]
    ) -> SimHost:
        host = SimHost(
            n,
            self.voters,
            self.spec.seed,
            self.oracle,
            core_bugs,
            storage_bugs,
            self.faults.segment_bytes,
            self.faults.snapshot_every,
        )
        host.send_early = self._send_early
        return host

    def _send_early(self, msgs: tuple[Message, ...]) -> None:
        """A leader's Accepts, sent before its fsync (a crash in it does not call them back)."""
        for msg in msgs:
            self._send_message(msg)

    def _start_workload(self) -> None:
        """The chain workload: clients writing random commands, and a linearizable reader."""
        n_clients = self.spec.clients or self.rng.randint(3, 10)
        self.clients = [_Client(1000 + i) for i in range(n_clients)]
        for client in self.clients:
            self._at(self.rng.randint(0, 200), functools.partial(self._client_submit, client))
        self._at(self.rng.randint(0, 200), self._read)

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
        except (InvariantViolation, SafetyViolation, CorruptionError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._log(f"VIOLATION {error}")
        except Exception as exc:  # a crash of a node or of the simulator is a failure too
            error = f"unexpected {type(exc).__name__}: {exc}"
            self._log(f"CRASH {error}")
        for host in self.hosts.values():
            host.crash(None)  # folds the live nodes' counters into the totals
            for name, count in host.counters.items():
                if name in Stats.__dataclass_fields__:  # counters the summary reports
                    setattr(self.stats, name, getattr(self.stats, name) + count)
        return SimResult(
            self.spec, error is None, error, self.stats, self.profile, self.now, self.trace or []
        )

    # ------------------------------------------------------------------ nodes

    def _start(self, n: int) -> None:
        host = self.hosts[n]
        host.start()
        assert host.node is not None
        self.requests[n] = set()
        for warning in host.warnings:
            self.stats.torn_tails_cut += "torn tail" in warning
            self._log(f"n{n} recovery: {warning}")
        host.warnings.clear()
        self._log(
            f"n{n} start incarnation={host.incarnation} promised={host.node.acceptor.promised}"
            f" commit={host.node.learner.commit}"
        )
        self._schedule_tick(n, host.incarnation)
        # Its links to the live peers come up, and theirs to it (``SimSpec.links``; the
        # production shell calls ``peer_linked`` once a connection to a member authenticates).
        for m in self.live if self.spec.links else ():
            if m != n and self.hosts[m].up and not {(n, m), (m, n)} & self.blocked:
                for a, b in ((n, m), (m, n)):
                    inc = self.hosts[a].incarnation
                    self._at(1, functools.partial(self._link_changed, a, inc, b, True))

    def _link_changed(self, m: int, inc: int, n: int, up: bool) -> None:
        """Host ``m``'s connection to ``n`` authenticated (``up``), or closed (``n`` crashed)."""
        node = self._node(m)
        if node is None or self.hosts[m].incarnation != inc or (up and not self.hosts[n].up):
            return
        was_leader = node.role is Role.LEADER
        self._tell_link(m, node, n, up)
        self._drive(m, node, was_leader, f"linked to n{n}" if up else f"lost n{n}")

    def _tell_link(self, m: int, node: Node, n: int, up: bool) -> None:
        if up:
            node.peer_linked(n)
        else:
            node.peer_lost(n)

    def _node(self, n: int) -> Node | None:
        return self.hosts[n].node

    def _schedule_tick(self, n: int, inc: int) -> None:
        self._at(self.tick_ms[n], lambda: self._tick(n, inc))

    def _tick(self, n: int, inc: int) -> None:
        node = self._node(n)
        if node is None or self.hosts[n].incarnation != inc:
            return
        was_leader = node.role is Role.LEADER
        node.tick()
        self._drive(n, node, was_leader, "tick")
        if self.hosts[n].incarnation == inc and self.hosts[n].up:
            self._schedule_tick(n, inc)

    def _drive(self, n: int, node: Node, was_leader: bool, what: str | Message) -> None:
        """One pass of the host's Ready loop (the production ``Driver``); carry out what it
        returns, in order: messages, replies, served reads; then save its snapshot."""
        host = self.hosts[n]
        assert host.driver is not None
        try:
            done = host.driver.run()
            for out in done.outputs:
                if isinstance(out, Answer):
                    self._answer(n, out.cmd)
                elif isinstance(out, Served):
                    self._served(n, out.ctx, out.slot)
                else:
                    self._send_message(out)
            if done.snapshot is not None:
                host.save_snapshot(done.snapshot)
        except SimulatedCrash as exc:
            self._crashed_in_drive(n, exc)
            return
        ready = done.ready or Ready()
        self._driven(
            n,
            node,
            was_leader,
            what,
            done.ready is not None,
            lambda: (
                f"persist={len(ready.votes)}v/{len(ready.chosen)}c"
                f"{'+hs' if ready.hard_state else ''} send={len(ready.messages)}"
            ),
        )

    def _crashed_in_drive(self, n: int, exc: SimulatedCrash) -> None:
        """Host ``n`` crashed in the middle of a disk operation while driving its node."""
        self._log(f"n{n} CRASH in the middle of a disk operation ({exc})")
        self.stats.mid_write_crashes += 1
        self._power_off(n)

    def _driven(
        self,
        n: int,
        node: Node,
        was_leader: bool,
        what: str | Message,
        worked: bool,
        detail: Callable[[], str],
    ) -> None:
        """After a drive of host ``n``: count an election, trace (``detail`` says what the
        drive did; only ``worked`` drives are traced for a tick), follow the chosen slots."""
        if node.role is Role.LEADER and not was_leader:
            self.stats.elections += 1
            self._log(f"n{n} becomes leader b={node.ballot}")
        if self.trace is not None and (worked or what != "tick"):
            what = what if isinstance(what, str) else f"recv {describe(what)}"
            self._log(
                f"n{n} {what} role={node.role.value} b={node.ballot} "
                f"commit={node.learner.commit} {detail()}"
            )
        self.stats.slots_chosen = max(self.stats.slots_chosen, len(self.oracle.chosen))
        if self.reconfig is not None:
            self.reconfig.driven(n, node)
        if self.nemesis is not None:
            self.nemesis.driven()

    def _send_message(self, msg: Message) -> None:
        if isinstance(msg, Nack):
            self.stats.nacks += 1
        if self.nemesis is not None and self.nemesis.drops(msg):
            self.stats.sent += 1
            self.stats.dropped += 1
            self.stats.nemesis_dropped += 1
            return
        self._send(msg.frm, msg.to, codec.encode(msg))

    def _crash_random(self) -> None:
        if not self._healed:
            up = [n for n in self.live if self.hosts[n].up]
            if len(self.live) - len(up) < self.faults.max_down and up:
                n = self.rng.choice(up)
                if self.rng.random() < self.faults.mid_write_crash:
                    # Not now: in the middle of one of its next disk operations.
                    self.hosts[n].arm_crash(self.rng.randint(1, 8))
                    self._log(f"n{n} will crash during a coming disk operation")
                else:
                    self._log(f"n{n} CRASH")
                    self._power_off(n)
            self._at(self._exp(self.faults.crash_every_ms), self._crash_random)

    def _power_off(self, n: int) -> None:
        self.hosts[n].crash(self.rng)
        self.stats.crashes += 1
        # A crashed process's connections close: each peer that can reach it hears so at once
        # (the production shell calls ``peer_lost`` when its link to a peer closes).
        for m in self.live:
            if m != n and self.hosts[m].up and (n, m) not in self.blocked:
                inc = self.hosts[m].incarnation
                self._at(1, functools.partial(self._link_changed, m, inc, n, False))
        if not self._healed:
            self._at(self.rng.randint(50, 2000), lambda: self._restart(n))
        else:
            self._at(1, lambda: self._restart(n))

    def _restart(self, n: int) -> None:
        if not self.hosts[n].up and n in self.live:
            self._start(n)

    def add_host(self, host: SimHost) -> None:
        """A new host joins the world (reconfig.py made it for a node being added), and boots."""
        n = host.id
        host.snapshot_chunk = self.spec.snapshot_chunk
        self.hosts[n] = host
        self.tick_ms[n] = TICK_MS * (
            1 + self.rng.uniform(-self.faults.tick_drift, self.faults.tick_drift)
        )
        self.live.append(n)
        self._start(n)

    def power_off_for_good(self, n: int, why: str) -> None:
        """Host ``n`` stops and never runs again (retired after its removal, or its disk died)."""
        if n in self.live:
            self.live.remove(n)
        if self.hosts[n].up:
            self.hosts[n].crash(None)
        self._log(f"n{n} OFF FOR GOOD ({why})")

    # ------------------------------------------------------------------ network

    def _send(self, src: int, dst: int, data: bytes) -> None:
        self.stats.sent += 1
        if dst not in self.hosts:  # an answer to the garbage peer's stranger
            self.stats.dropped += 1
            return
        if self.garbage is not None:
            self.garbage.overheard(src, dst, data)
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
        node = self._node(dst)
        if node is None or (src, dst) in self.blocked:
            self.stats.dropped += 1
            return
        msg = codec.decode(data)
        if self.nemesis is not None and self.nemesis.arriving(msg):
            self.stats.dropped += 1
            self.stats.nemesis_dropped += 1
            return
        self.stats.delivered += 1
        was_leader = node.role is Role.LEADER
        node.step(msg)
        self._drive(dst, node, was_leader, msg)

    def _inject_garbage(self) -> None:
        """The garbage peer hands one node one invalid message, delivered at once (so that
        what made it invalid still holds when it arrives); it goes on through the whole run."""
        assert self.garbage is not None
        up = [n for n in self.live if self.hosts[n].up]
        target = self.garbage.pick_target(up)
        node = self._node(target) if target is not None else None
        if target is not None and node is not None:
            made = self.garbage.make(node, self._garbage_kinds(target))
            if made is not None:
                src, dst, data = made
                self.stats.garbage += 1
                self._log(f"GARBAGE n{src}->n{dst} {describe(codec.decode(data))}")
                self._deliver(src, dst, data)
        self._at(self.garbage.next_delay(), self._inject_garbage)

    def _garbage_kinds(self, target: int) -> list[Maker]:
        """Kinds of garbage only this workload's hosts understand (none in the chain one)."""
        return []

    def _partition(self) -> None:
        if self._healed:
            return
        self.blocked.clear()
        kinds = ["isolate", "split", "oneway", "none"] if len(self.live) > 1 else ["none"]
        kind = self.rng.choice(kinds)
        voters = list(self.live)
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
        # Links reliable and prompt; snapshots and log segments go on as drawn.
        self.faults = Faults(
            min_delay_ms=1,
            max_delay_ms=5,
            snapshot_every=self.profile.snapshot_every,
            segment_bytes=self.profile.segment_bytes,
        )
        self._log("HEAL")
        if self.nemesis is not None:
            self.nemesis.stop("the world heals")
        for n in self.live:
            self.hosts[n].fs.hook = None  # no more crashes armed for later
            if not self.hosts[n].up:
                self._start(n)
        if self.reconfig is not None:
            self.reconfig.healed()

    # ------------------------------------------------------------------ clients

    def _client_submit(self, c: _Client, final: bool = False) -> None:
        """Send the client's next command (or retry its outstanding one) to a random node;
        ``final``: one more once healed (the healed cluster must commit it)."""
        if c.outstanding is None:
            if (self._healed and not final) or c.seq >= self.spec.max_commands_per_client:
                return
            c.seq += 1
            data = self.rng.randbytes(8)
            c.outstanding = Command(c.id, c.seq, data)
            self.oracle.submitted(c.outstanding)
            self.stats.submitted += 1
        else:
            self.stats.retries += 1
        up = [n for n in self.live if self.hosts[n].up]
        if up:
            c.target = self.rng.choice(up)
            node = self._node(c.target)
            assert node is not None
            cmd = c.outstanding
            self._log(f"client {c.id} -> n{c.target} propose {cmd.client}:{cmd.seq}")
            self.requests[c.target].add((cmd.client, cmd.seq))
            if self.hosts[c.target].app.is_applied(cmd):  # a retry that took effect: answer it
                self._answer(c.target, cmd)
            else:
                was_leader = node.role is Role.LEADER
                node.propose(cmd)
                self._drive(c.target, node, was_leader, f"propose {cmd.client}:{cmd.seq}")
        c.sent_at = self.now
        seq = c.seq
        self._at(CLIENT_TIMEOUT_MS, lambda: self._client_timeout(c, seq))

    def final_write(self) -> None:
        """One more write once healed, which the cluster (in whatever shape) must commit."""
        client = self.clients[0]
        if client.outstanding is None:
            self._client_submit(client, final=True)

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
            self.acked_floor = max(self.acked_floor, self.oracle.slot_of[key])
            client.done += 1
            self.stats.completed += 1
            self._at(self.rng.randint(1, 100), lambda: self._client_submit(client))

    # ------------------------------------------------------------------ readers

    def _read(self) -> None:
        """A reader asks a random node for a linearizable read, and will check its answer."""
        if self._healed:
            return
        up = [n for n in self.live if self.hosts[n].up]
        if up:
            n = self.rng.choice(up)
            node = self._node(n)
            assert node is not None
            self._read_ctx += 1
            self.pending_reads[self._read_ctx] = self.acked_floor
            self._log(f"reader -> n{n} read ctx={self._read_ctx} floor={self.acked_floor}")
            was_leader = node.role is Role.LEADER
            node.read_index(self._read_ctx)
            self._drive(n, node, was_leader, f"read ctx={self._read_ctx}")
        self._at(self.rng.randint(10, 100), self._read)

    def _served(self, n: int, ctx: int, slot: int | None) -> None:
        """Linearizability of reads: every write acknowledged before the read began is seen."""
        floor = self.pending_reads.pop(ctx, None)
        if floor is None:
            return
        if slot is None:
            self.stats.reads_failed += 1
            return
        self._log(f"reader <- n{n} read ctx={ctx} served at slot {slot}")
        if slot < floor:
            raise InvariantViolation(
                f"stale read: node {n} served read {ctx} from slot {slot}, but a write at slot "
                f"{floor} was acknowledged before the read began"
            )
        self.stats.reads_served += 1

    # ------------------------------------------------------------------ liveness

    def _all_done(self) -> bool:
        if any(c.outstanding is not None for c in self.clients):
            return False
        if self.reconfig is not None:
            return self.reconfig.done()
        top = len(self.oracle.effective)
        return all(
            h.node is not None and h.node.learner.applied >= top for h in self.hosts.values()
        )

    def _liveness_report(self) -> str:
        pending = [f"{c.id}:{c.outstanding.seq}" for c in self.clients if c.outstanding]
        views = ", ".join(
            f"n{n}={h.node.role.value}/b{h.node.ballot}/applied{h.node.learner.applied}"
            for n, h in sorted(self.hosts.items())
            if h.node is not None
        )
        return (
            f"liveness: after {self.spec.liveness_ms}ms healed, commands still pending "
            f"{pending or 'none'}; chosen prefix {len(self.oracle.effective)}; nodes {views}"
            + (self.reconfig.report() if self.reconfig is not None else "")
        )
