"""The znodes workload: sessions, ephemerals and watches under faults, on production code.

Each host runs the production ``NodeEngine`` (Ready loop, client requests, state machine, watch
registry, session keeper, digest audit), as ``paxctl node start`` does (see zhost.py); this
module is its shell: clocks, network, client connections. Simulated clients (zclient.py) open
sessions, ping, write, fail over and hold a recursive watch. Invariants, beyond the chain
workload's consensus checks and the per-slot state digests:

1. Expiry safety. When the reaper's ``CloseSession`` for session ``s`` is first applied, at
   virtual time ``T``: ``T >= S + timeout(s) - margin``, where ``S`` is the send time of the last
   ping of ``s`` answered "alive" (or of the first attempt to open it). ``margin`` covers clock
   rate drift only: a host's clock runs at the rate of its ticks, so a leader whose ticks are
   ``d`` fast measures a timeout ``d`` early: margin = timeout * max drift + 2 ms of rounding.
   Checked again when an "alive" answer reaches a client after its session ended.
2. Right after a replica applies a session's end, it owns no ephemeral and is not in the table
   (zhost.py), and the replicas' digests agree slot by slot.
3. Watches (watchcheck.py): per client, the log's events after registration, in order, each
   once; resync restarts; no frame with zxid ``z`` before every event up to ``z``.
4. Liveness, once healed: every write of a running client completes; every session left without
   a running client (silent, or reopened by a stale retry) is expired, a silent one within
   ``timeout + SLACK_MS`` of the later of its silence and the heal; no session of a running
   client is expired once the healed cluster had ``SETTLE_MS`` plus a timeout to hear from it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from paxctl.client.session_types import PLANTED_CLIENT_BUGS, ClientBugs
from paxctl.core import codec
from paxctl.core.messages import Message
from paxctl.core.node import Node, Role
from paxctl.core.state import Ready
from paxctl.protocol.messages import (
    FromServer,
    Request,
)
from paxctl.server.engine import PLANTED_ENGINE_BUGS, Output
from paxctl.server.replica import PLANTED_REPLICA_BUGS
from paxctl.server.requests import Frame
from paxctl.statemachine.ops import REAPER_CLIENT
from paxctl.testing.sim.garbage import Maker
from paxctl.testing.sim.oracle import InvariantViolation
from paxctl.testing.sim.world import TICK_MS, SimSpec, World
from paxctl.testing.sim.zclient import SessionRec, ZClient
from paxctl.testing.sim.zgarbage import ZnodeGarbage
from paxctl.testing.sim.zhost import MAX_PASSES, SimConn, ZnodeHost
from paxctl.testing.sim.zoracle import ZnodeOracle
from paxctl.testing.simfs import SimulatedCrash

#: Planted in the client session (``paxctl/client/session.py``, through ``ClientBugs``): it takes
#: the zxid of any frame as seen, even the answer to a hello the node refused (a real bug the
#: asyncio client once had, kept to show the simulator catches it).
CLIENT_BUGS = PLANTED_CLIENT_BUGS
#: The planted bugs the engine of this workload's hosts may carry (keeper, watches, stamping).
HOST_BUGS = PLANTED_REPLICA_BUGS | PLANTED_ENGINE_BUGS
#: The planted bugs this workload knows (in the hosts' engines and in the client session).
ZNODE_BUGS = HOST_BUGS | CLIENT_BUGS

SESSION_MS = (300, 1500)
SLACK_MS = 3000  # a silent session is expired within its timeout plus this, once healed
SETTLE_MS = 1000  # a running client is heard again this soon after the heal
LIVENESS_MIN_MS = 1500  # the liveness phase lasts at least this long (pinging sessions survive)


class ZnodeWorld(World):
    shell_bugs = ZNODE_BUGS
    oracle: ZnodeOracle

    def __init__(self, spec: SimSpec) -> None:
        self.token = 0  # numbers timers and connection attempts
        self.conns = 0
        self.sessions: dict[int, SessionRec] = {}
        #: Temporary client id -> (client index, timeout, first send) of its open_session.
        self.opening: dict[int, tuple[int, int, int]] = {}
        self.heal_at: int | None = None
        self.session_ms = SESSION_MS
        self.client_bugs = ClientBugs.from_names(spec.bugs)
        self.zclients: list[ZClient] = []
        self._conns: dict[int, SimConn] = {}  # open connections by number
        #: Hosts' wall clocks are this far apart, more than a run lasts.
        self.clock_apart_ms = max(600_000, 2 * (spec.safety_ms + spec.liveness_ms))
        super().__init__(spec)
        self.drift = max(0.0, *(1 - t / TICK_MS for t in self.tick_ms.values()))

    # ------------------------------------------------------------------ set-up

    def _make_oracle(self) -> ZnodeOracle:
        # The oracle is the first thing the base class builds: draw this world's knobs here.
        self.digest_every = self.rng.choice([5, 20, 100])
        self.break_every_ms = self.rng.choice([0, 300, 1000]) if self.spec.faults else 0
        oracle = ZnodeOracle(self.voters)
        oracle.wall_clock = lambda n: (self.wall_ms(n) - self.local_ms(n), self.wall_ms(n))
        return oracle

    def _make_host(self, n: int, core_bugs: frozenset[str], storage_bugs: frozenset[str]) -> Any:
        host = ZnodeHost(
            self,
            n,
            self.spec.bugs & HOST_BUGS,
            voters=self.voters,
            seed=self.spec.seed,
            oracle=self.oracle,
            core_bugs=core_bugs,
            storage_bugs=storage_bugs,
            segment_bytes=self.faults.segment_bytes,
            snapshot_every=self.faults.snapshot_every,
        )
        host.send_early = self._send_early
        host.digest_every = self.digest_every
        host.watch_history = self.rng.choice([4, 16, 64, 100_000])  # small: resyncs happen
        return host

    def _start_workload(self) -> None:
        rng, safety = self.rng, self.spec.safety_ms
        n = self.spec.clients or rng.randint(2, 5)
        silent_share = rng.choice([0.0, 0.3, 0.6])
        self.zclients = [ZClient(self, i) for i in range(n)]
        for c in self.zclients:
            self._at(rng.randint(0, 100), c.connect)
            self._at(rng.randint(0, 150), c.next_write)
            if rng.random() < 0.8:
                self._at(rng.randint(0, safety // 2), c.add_watch)
            if rng.random() < 0.5:
                self._at(rng.randint(0, 500), c.sync_loop)
            if rng.random() < silent_share:
                stop = rng.randint(200, max(201, safety - 300))
                self._at(stop, c.go_silent)
                if rng.random() < 0.4:
                    self._at(stop + rng.randint(100, 3000), c.resume)
            if rng.random() < 0.3:
                c.close_at = rng.randint(300, safety)
        if self.break_every_ms:
            self._at(self._exp(self.break_every_ms), self._break_random)

    # ------------------------------------------------------------------ helpers for clients

    def log(self, text: str) -> None:
        self._log(text)

    def at(self, delay: float, action: Any) -> None:
        self._at(delay, action)

    @property
    def healed(self) -> bool:
        return self._healed

    def local_ms(self, n: int) -> int:
        """Host ``n``'s clock: it runs at the rate of the host's ticks."""
        return int(self.now * TICK_MS / self.tick_ms[n])

    def _host(self, n: int) -> ZnodeHost:
        host = self.hosts[n]
        assert isinstance(host, ZnodeHost)
        return host

    # ------------------------------------------------------------------ nodes

    def wall_ms(self, n: int) -> int:
        """Host ``n``'s wall clock: its clock, set minutes apart from every other host's (see
        ``ZnodeOracle.stamped``: a command's time tells which host's clock stamped it)."""
        return self.local_ms(n) + (n - 1) * self.clock_apart_ms

    def _tick(self, n: int, inc: int) -> None:
        host = self._host(n)
        node = host.node
        if node is None or host.incarnation != inc or host.engine is None:
            return
        was_leader = node.role is Role.LEADER
        self._carry_out(host.engine.tick(self.local_ms(n), self.wall_ms(n)))
        self._drive(n, node, was_leader, "tick")
        if host.incarnation == inc and host.up:
            self._schedule_tick(n, inc)

    def _deliver(self, src: int, dst: int, data: bytes) -> None:
        host = self._host(dst)
        node = host.node
        if node is None or host.engine is None or (src, dst) in self.blocked:
            self.stats.dropped += 1
            return
        self.stats.delivered += 1
        msg = codec.decode(data)
        was_leader = node.role is Role.LEADER
        self._carry_out(host.engine.receive(msg, self.local_ms(dst), self.wall_ms(dst)))
        self._drive(dst, node, was_leader, msg)

    def _garbage_kinds(self, target: int) -> list[Maker]:
        """The engine's own kinds: Forwards posing as the reaper or the audit, Relays from a
        stranger or from a member that does not lead."""
        engine = self._host(target).engine
        if self.garbage is None or engine is None:
            return []
        return ZnodeGarbage(self.garbage, engine.machine, self.wall_ms(target)).makers

    def send_message(self, msg: Message) -> None:
        self._send_message(msg)

    def _carry_out(self, outputs: list[Output]) -> None:
        """What an engine decided, in its order: messages to peers, frames to connections."""
        for out in outputs:
            if isinstance(out, Frame):
                conn = self._conns.get(out.conn)
                if conn is not None and conn.open:
                    self.to_client(conn, out.frame)
            else:
                self._send_message(out)

    def _drive(self, n: int, node: Node, was_leader: bool, what: str | Message) -> None:
        """The host engine's Ready loop: passes while one had work (the real server runs the
        next pass in its next loop turn), each one's outputs carried out, then its snapshot
        saved. A simulated crash in the middle of a disk operation powers the host off."""
        host = self._host(n)
        engine = host.engine
        assert engine is not None
        batches: list[Ready] = []
        try:
            for _ in range(MAX_PASSES):
                done = engine.process()
                if done.ready is not None:
                    batches.append(done.ready)
                self._carry_out(done.outputs)
                if done.snapshot is not None:
                    host.save_snapshot(done.snapshot)
                if not done.more:
                    break
        except SimulatedCrash as exc:
            self._crashed_in_drive(n, exc)
            return

        def work() -> str:
            done = " ".join(
                f"{len(r.votes)}v/{len(r.chosen)}c/{len(r.committed)}a/{len(r.messages)}m"
                for r in batches
            )
            return f"[{done}]"

        self._driven(n, node, was_leader, what, bool(batches), work)

    def _power_off(self, n: int) -> None:
        inc = self.hosts[n].incarnation
        for c in self.zclients:
            conn = c.conn
            if conn is not None and conn.node == n and conn.inc == inc and conn.open:
                conn.open = False
                self._at(self.rng.randint(1, 20), functools.partial(c.conn_lost, conn))
        super()._power_off(n)

    def _tell_link(self, m: int, node: Node, n: int, up: bool) -> None:
        engine = self._host(m).engine
        if engine is not None:
            self._carry_out(engine.peer_linked(n) if up else engine.peer_lost(n))

    def _heal(self) -> None:
        super()._heal()
        self.heal_at = self.now

    # ------------------------------------------------------------------ client connections

    def _client_delay(self) -> int:
        f = self.faults
        delay = self.rng.randint(f.min_delay_ms, f.max_delay_ms)
        if f.slow and self.rng.random() < f.slow:
            delay += self.rng.randint(0, f.slow_delay_ms)
        return delay

    def open_conn(self, c: ZClient, n: int) -> SimConn | None:
        host = self._host(n)
        if not host.up or host.engine is None:
            return None
        self.conns += 1
        conn = self._conns[self.conns] = SimConn(self.conns, c.index, n, host.incarnation)
        host.engine.connection_opened(conn.id)
        return conn

    def close_conn(self, conn: SimConn) -> None:
        """The client closed ``conn``: nothing more crosses it; the node notices soon."""
        if conn.open:
            conn.open = False
            self._at(self.rng.randint(1, 5), lambda: self._node_sees_close(conn))

    def _node_sees_close(self, conn: SimConn) -> None:
        host = self._host(conn.node)
        self._conns.pop(conn.id, None)
        if host.incarnation == conn.inc and host.engine is not None:
            host.engine.connection_closed(conn.id)

    def to_node(self, conn: SimConn, req: Request) -> None:
        due = max(self.now + self._client_delay(), conn.c2n_at)
        conn.c2n_at = due
        self._at(due - self.now, lambda: self._at_node(conn, req))

    def _at_node(self, conn: SimConn, req: Request) -> None:
        host = self._host(conn.node)
        node, engine = host.node, host.engine
        if not conn.open or host.incarnation != conn.inc or node is None or engine is None:
            return
        was_leader = node.role is Role.LEADER
        self._carry_out(engine.request(conn.id, req, self.wall_ms(conn.node)))
        self._drive(conn.node, node, was_leader, f"{conn} {type(req).__name__}")

    def to_client(self, conn: SimConn, frame: FromServer) -> None:
        due = max(self.now + self._client_delay(), conn.n2c_at)
        conn.n2c_at = due
        client = self.zclients[conn.client]
        self._at(due - self.now, lambda: client.on_frame(conn, frame))

    def _break_random(self) -> None:
        if self._healed:
            return
        running = [c for c in self.zclients if c.conn is not None and not c.silent]
        if running:
            self.rng.choice(running).failover("the connection broke")
        self._at(self._exp(self.break_every_ms), self._break_random)

    # ------------------------------------------------------------------ sessions

    def session_opening(self, c: ZClient) -> None:
        """An attempt to open a session under ``c``'s temporary id; the first one starts the
        clock of every session it opens (a retry whose first answer was lost opens another:
        the cluster names sessions, and the unanswered one expires, owned by nobody)."""
        self.opening.setdefault(c.cid, (c.index, c.timeout, self.now))

    def session_created(self, session: int, temp: int, first: bool) -> None:
        """A replica applied the open of ``session`` issued under the temporary id ``temp``."""
        if first:
            index, timeout, sent = self.opening[temp]
            self.sessions[session] = SessionRec(session, index, timeout, alive_sent=sent)

    def session_opened(self, c: ZClient) -> None:
        rec = self.sessions[c.cid]
        rec.opened, rec.open_acked_at = True, self.now
        self.stats.sessions_opened += 1

    def client_silent(self, c: ZClient) -> None:
        self.stats.silent_clients += 1
        rec = self.sessions.get(c.cid)
        if rec is not None and c.session:
            rec.silent_since = self.now

    def ping_alive(self, session: int, sent: int) -> None:
        rec = self.sessions[session]
        rec.alive_sent = max(rec.alive_sent, sent)
        if rec.by_reaper:
            self._check_expiry(rec)

    def margin(self, timeout: int) -> int:
        return math.ceil(timeout * self.drift) + 2

    def session_ended(self, n: int, session: int, closer: int, first: bool) -> None:
        """Replica ``n`` applied the end of ``session`` (``first``: the first replica to)."""
        if not first:
            return
        rec = self.sessions[session]
        by_reaper = closer == REAPER_CLIENT
        self._log(f"n{n} ends session {session:#x} ({'expired' if by_reaper else 'closed'})")
        rec.ended_at, rec.by_reaper = self.now, by_reaper
        if not by_reaper:
            return
        self.stats.sessions_expired += 1
        self._check_expiry(rec)
        c = self.zclients[rec.client]
        if c.cid != session or not c.session:
            return
        if c.silent:
            since = max(rec.silent_since or 0, self.heal_at or 0)
            if self.heal_at is not None and self.now > since + rec.timeout + SLACK_MS:
                raise InvariantViolation(
                    f"liveness: silent session {session:#x} (timeout {rec.timeout} ms) expired "
                    f"only at {self.now} ms, silent since {rec.silent_since} ms, healed at "
                    f"{self.heal_at} ms"
                )
        elif self.heal_at is not None:
            heard_by = max(self.heal_at, c.active_since) + SETTLE_MS + rec.timeout
            if self.now > heard_by:
                raise InvariantViolation(
                    f"liveness: session {session:#x} (timeout {rec.timeout} ms) of a running, "
                    f"pinging client expired at {self.now} ms, healed at {self.heal_at} ms"
                )

    def _check_expiry(self, rec: SessionRec) -> None:
        assert rec.ended_at is not None
        promised = rec.alive_sent + rec.timeout
        margin = self.margin(rec.timeout)
        if rec.ended_at < promised - margin:
            raise InvariantViolation(
                f"expiry safety: session {rec.id:#x} (timeout {rec.timeout} ms) expired at "
                f"{rec.ended_at} ms, but a ping sent at {rec.alive_sent} ms was answered alive, "
                f"promising it until {promised} ms (margin {margin} ms for clock drift)"
            )

    # ------------------------------------------------------------------ the end

    def _owned(self) -> set[int]:
        """Sessions a running client holds, or may hold (its open is in flight)."""
        owned = set()
        for c in self.zclients:
            opening = c.write == "open_session"
            if c.active and (c.session or opening):
                owned.add(c.cid)
        return owned

    def _all_done(self) -> bool:
        if self.heal_at is None or self.now < self.heal_at + LIVENESS_MIN_MS:
            return False
        if any(c.active and c.write is not None for c in self.zclients):
            return False
        top = len(self.oracle.effective)
        hosts = [self._host(n) for n in self.voters]
        if not all(h.node is not None and h.node.learner.applied >= top for h in hosts):
            return False
        engine = hosts[0].engine
        assert engine is not None
        return not set(engine.machine.sessions()) - self._owned()

    def _liveness_report(self) -> str:
        pending = [f"client {c.index}: {c.write}" for c in self.zclients if c.active and c.write]
        views = []
        for n in self.voters:
            host = self._host(n)
            if host.node is not None and host.engine is not None:
                node = host.node
                views.append(
                    f"n{n}={node.role.value}/b{node.ballot}/applied{node.learner.applied}"
                    f"/sessions{sorted(host.engine.machine.sessions())}"
                )
        return (
            f"liveness: after {self.spec.liveness_ms}ms healed: writes pending {pending or 'none'}"
            f"; sessions that should have expired: {sorted(self._stray())}; nodes {views}"
        )

    def _stray(self) -> set[int]:
        engine = self._host(self.voters[0]).engine
        table = set(engine.machine.sessions()) if engine is not None else set()
        return table - self._owned()
