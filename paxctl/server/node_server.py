"""One paxctl node as a process: the asyncio shell around the core, storage and znode tree.

One event loop owns everything (no locks). Inputs (peer messages, client requests, ticks) are
handed to the core as they arrive; the work they cause is collected once per loop turn and
handled in the order the Ready contract fixes: persist (one fsync) -> send -> apply in slot
order -> reply to clients and serve reads -> advance. Everything that arrived in the same turn
shares that fsync (group commit).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import random
import signal
import time
from collections.abc import Callable

import msgpack

from paxctl.core import codec
from paxctl.core.messages import Forward, Message, Relay
from paxctl.core.node import Node, Role
from paxctl.core.state import Config, Ready
from paxctl.core.types import Command
from paxctl.protocol.framing import MAX_PEER_FRAME
from paxctl.server.client_service import ClientService
from paxctl.server.config import NodeConfig
from paxctl.server.liveness import Duties
from paxctl.server.replica import Replica
from paxctl.server.transport import FramedProtocol, PeerLink
from paxctl.server.zxid import zxid_of
from paxctl.statemachine.machine import StateMachine
from paxctl.statemachine.ops import FIRST_CLIENT_ID, restamp_command
from paxctl.storage.fs import OsFileSystem
from paxctl.storage.store import Identity, Storage, StorageError

log = logging.getLogger("paxctl.node")


class NodeServer:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        os.makedirs(config.data_dir, exist_ok=True)
        identity = Identity(config.cluster_id, config.node_id)
        self.storage, recovered = Storage.open(
            OsFileSystem(config.data_dir),
            identity,
            bootstrap=config.bootstrap,
            label=config.data_dir,
        )
        for warning in recovered.warnings:
            log.warning("recovery: %s", warning)
        state = recovered.state
        snap = state.snapshot
        core = Config(
            config.node_id,
            tuple(sorted(config.peers)),
            election_ticks=config.election_ticks,
            heartbeat_ticks=max(1, config.election_ticks // 5),
        )
        self.node = Node(core, random.Random(os.urandom(16)), state)
        self.clients = ClientService(self)
        self.replica = Replica(
            config.node_id,
            tuple(sorted(config.peers)),
            StateMachine.restore(snap.app) if snap else StateMachine(),
            zxid_of(snap.slot, 0) if snap else 0,
            self.clients,
            incarnation=int.from_bytes(os.urandom(4), "big"),
            digest_every=config.digest_every,
            watch_history=config.watch_history,
        )
        self.keeper = self.replica.keeper
        self.watches = self.replica.watches
        self.audit = self.replica.audit
        self._links: dict[int, PeerLink] = {}
        self._servers: list[asyncio.Server] = []
        self._scheduled = False
        # Reads (and hellos) waiting for a slot: a heap of (slot, seq, serve, connection).
        self._reads: list[tuple[int, int, Callable[[], None], FramedProtocol | None]] = []
        self._reads_seq = 0
        self._reads_purge_due = False
        self._read_waiters: dict[int, Callable[[int | None], None]] = {}
        self._next_ctx = 1
        self._stopping: asyncio.Event | None = None
        self.started = time.time()
        log.info(
            "node %d: recovered promise %s, commit %d, snapshot %s",
            config.node_id,
            self.node.acceptor.promised,
            self.node.learner.commit,
            snap.slot if snap else "none",
        )

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        listen = self.config.listen
        assert listen is not None
        self._servers.append(
            await loop.create_server(
                lambda: FramedProtocol(
                    self._on_peer_payload, label="peer inbound", max_frame=MAX_PEER_FRAME
                ),
                *listen,
            )
        )
        self._servers.append(
            await loop.create_server(
                lambda: FramedProtocol(
                    self.clients.on_payload, self.clients.on_lost, label="client"
                ),
                *self.config.client,
            )
        )
        hello = msgpack.packb(
            {"node": self.config.node_id, "cluster": self.config.cluster_id}, use_bin_type=True
        )
        rng = random.Random(os.urandom(8))
        for peer, (host, port) in sorted(self.config.peers.items()):
            if peer != self.config.node_id:
                link = PeerLink(peer, host, port, hello, self._on_peer_payload, rng)
                link.start()
                self._links[peer] = link
        log.info(
            "node %d: peers on %s:%d, clients on %s:%d",
            self.config.node_id,
            *listen,
            *self.config.client,
        )
        ticker = loop.create_task(self._tick_forever())
        try:
            await self._stopping.wait()
        finally:
            log.info("node %d: shutting down", self.config.node_id)
            ticker.cancel()
            for server in self._servers:
                server.close()
            for link in self._links.values():
                await link.stop()
            self.storage.close()

    @property
    def machine(self) -> StateMachine:
        return self.replica.machine

    @property
    def applied_zxid(self) -> int:
        return self.replica.applied_zxid

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def _tick_forever(self) -> None:
        period = self.config.tick_ms / 1000
        while True:
            await asyncio.sleep(period)
            self.node.tick()
            now_ms = int(time.monotonic() * 1000)
            self._do(self.keeper.tick(self.node, self.machine, now_ms, int(time.time() * 1000)))
            self.kick()

    def _do(self, duties: Duties) -> None:
        """Carry out what the session keeper asked for."""
        self._send(tuple(duties.messages))
        for cmd in duties.proposals:
            self.node.propose(cmd)
        for token, alive in duties.answers:
            self.clients.ping_answered(token, alive)
        if duties.messages or duties.proposals:
            self.kick()

    # ------------------------------------------------------------------ inputs

    def _on_peer_payload(self, conn: FramedProtocol, payload: bytes) -> None:
        if conn.state is None:  # the first frame names the peer
            try:
                hello = msgpack.unpackb(payload, raw=False)
                peer, cluster = hello["node"], hello["cluster"]
                if type(peer) is not int or type(cluster) is not bytes:
                    raise TypeError
            except Exception:  # any malformed hello: this is not a peer of ours
                conn.close("peer connection without a valid hello")
                return
            if cluster != self.config.cluster_id or peer not in self.config.peers:
                conn.close(f"hello from node {peer} of another cluster or not a member")
                return
            conn.state = peer
            return
        try:
            msg = codec.decode(payload)
        except codec.CodecError as exc:
            conn.close(f"undecodable message from node {conn.state}: {exc}")
            return
        if msg.frm != conn.state:
            conn.close(f"node {conn.state} sent a message signed as node {msg.frm}")
            return
        if isinstance(msg, Relay):  # the shell's own traffic; the core never sees it
            if msg.to == self.config.node_id:
                now_ms = int(time.monotonic() * 1000)
                self._do(self.keeper.on_relay(msg, self.node, self.machine, now_ms))
            return
        if isinstance(msg, Forward) and self.node.role is Role.LEADER:
            msg = Forward(msg.frm, msg.to, tuple(self.stamp(c) for c in msg.commands))
        self.node.step(msg)
        self.kick()

    def stamp(self, cmd: Command) -> Command:
        """Stamp a client command with this node's clock: the leader's, when it is proposed
        here, so znode times and TTLs do not depend on the clock of the node a client used."""
        if cmd.client < FIRST_CLIENT_ID:
            return cmd
        return Command(cmd.client, cmd.seq, restamp_command(cmd.data, int(time.time() * 1000)))

    def propose(self, command: Command) -> bool:
        accepted = self.node.propose(command)
        self.kick()
        return accepted

    def read_index(self, on_index: Callable[[int | None], None]) -> None:
        """Ask for a linearizable read point; ``on_index(slot or None)`` is called later."""
        ctx = self._next_ctx
        self._next_ctx += 1
        self._read_waiters[ctx] = on_index
        self.node.read_index(ctx)
        self.kick()

    def when_applied(
        self, slot: int, serve: Callable[[], None], conn: FramedProtocol | None = None
    ) -> None:
        """Call ``serve`` once ``slot`` is applied here. A waiter whose connection closes is
        dropped (a client may ask for a slot this node never reaches: a bogus zxid)."""
        if self.node.learner.applied >= slot:
            serve()
        else:
            self._reads_seq += 1
            heapq.heappush(self._reads, (slot, self._reads_seq, serve, conn))

    def connection_closed(self) -> None:
        """Some client connection closed: drop its waiting reads at the next Ready."""
        self._reads_purge_due = True

    # ------------------------------------------------------------------ the Ready loop

    def kick(self) -> None:
        """Handle the core's work at the end of this loop turn (once, however many inputs)."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._process)

    def _process(self) -> None:
        self._scheduled = False
        try:
            self._handle_ready()
        except Exception:
            # A node must never sit frozen with its loop alive: stop loudly, restart from disk.
            log.critical(
                "node %d: unexpected error in the Ready loop", self.config.node_id, exc_info=True
            )
            os._exit(70)

    def _handle_ready(self) -> None:
        ready = self.node.ready()
        if not ready:
            self.node.advance()
            return
        try:
            self.storage.persist(ready)  # 1. durable before anything leaves
        except StorageError as exc:
            log.critical("%s", exc)
            os._exit(70)  # never retry a failed fsync; the supervisor restarts us from disk
        self._send(ready.messages)  # 2.
        if ready.snapshot is not None:  # 3. apply
            self.replica.install(ready.snapshot.app, ready.snapshot.slot)
        self.replica.apply(self.node, ready.committed)
        for read in ready.reads:
            if self.keeper.is_confirmation(read.ctx):
                self._do(self.keeper.confirmed(read.ctx, read.index is not None, self.machine))
                continue
            waiter = self._read_waiters.pop(read.ctx, None)
            if waiter is not None:
                waiter(read.index)
        self._serve_reads()
        self.node.advance()  # 4.
        self._maybe_snapshot()
        if ready.messages or ready.committed:
            self.kick()  # more may be ready (e.g. pending proposals waiting for the window)

    def _send(self, messages: tuple[Message, ...]) -> None:
        for msg in messages:
            link = self._links.get(msg.to)
            if link is not None:
                link.send(codec.encode(msg))

    def _serve_reads(self) -> None:
        if self._reads_purge_due:
            self._reads_purge_due = False
            self._reads = [r for r in self._reads if r[3] is None or r[3].open]
            heapq.heapify(self._reads)
        applied = self.node.learner.applied
        while self._reads and self._reads[0][0] <= applied:
            _, _, serve, conn = heapq.heappop(self._reads)
            if conn is None or conn.open:
                serve()

    def _maybe_snapshot(self) -> None:
        learner = self.node.learner
        if learner.applied - learner.base < self.config.snapshot_every:
            return
        snap = self.node.compact(learner.applied, self.machine.snapshot())
        try:
            self.storage.save_snapshot(snap)
        except StorageError as exc:
            log.critical("%s", exc)
            os._exit(70)
        log.info("snapshot at slot %d (%d bytes)", snap.slot, len(snap.app))

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, object]:
        node = self.node
        listen = self.config.listen
        assert listen is not None
        return {
            "id": self.config.node_id,
            "role": node.role.value,
            "leader": node.leader if node.role is not Role.LEADER else node.id,
            "ballot": str(node.ballot),
            "promised": str(node.acceptor.promised),
            "chosen": node.learner.commit,
            "applied": node.learner.applied,
            "compacted": node.acceptor.compacted,
            "zxid": self.applied_zxid,
            "peer_address": f"{listen[0]}:{listen[1]}",
            "client_address": f"{self.config.client[0]}:{self.config.client[1]}",
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 1),
            "digest": self.machine.digest().hex()[:16],
            "counters": dict(sorted(node.counters.items())),
            "digest_checks": self.audit.checks,
            "digest_mismatches": self.audit.mismatches,
            "sessions": len(self.machine.sessions()),
            "watches": self.watches.count(),
            "waiting_reads": len(self._reads),
            "sessions_expired": self.keeper.expired_proposed,
        }


def run_node(config: NodeConfig) -> None:
    """Run a node in the foreground until SIGTERM/SIGINT."""
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    server = NodeServer(config)
    asyncio.run(server.run())


__all__ = ["NodeServer", "Ready", "run_node"]
