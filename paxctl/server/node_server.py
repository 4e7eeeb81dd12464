"""One paxctl node as a process: the asyncio shell around the node engine.

Everything a node decides lives in ``engine.py`` (sans-I/O, also driven by the simulator); this
adapter only does what needs the operating system: sockets (peer hello and authentication,
client framing), the clock (ticks, the times it hands the engine), the disk (``Storage``, the
engine's ``Disk`` port, and saving the snapshots it returns), bytes (the peer codec, and the
client protocol's ``decode_request``/``encode_reply``/``encode_push``) and process facts for
status (pid, uptime). One event loop owns everything (no locks). Inputs are handed to the engine
as they arrive and what it returns is sent at once; the Ready loop runs once per loop turn
(``kick``), so everything that arrived in the same turn shares one fsync (group commit).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from collections.abc import Callable

from paxctl.core import codec
from paxctl.core.messages import Message, SnapshotChunk, SnapshotOffer, SnapshotRequest
from paxctl.core.node import Node
from paxctl.core.snapshot_transfer import REFUSALS
from paxctl.core.state import Config, Ready
from paxctl.protocol.codec import (
    BadRequest,
    NotARequest,
    decode_request,
    encode_reply,
)
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.messages import Failed, Ok, OpenSessionRequest
from paxctl.protocol.peer_auth import SECRET_SIZE
from paxctl.protocol.pushes import encode_pushes
from paxctl.server import descriptors, heap
from paxctl.server.client_conn import ClientConnection, ClientPort
from paxctl.server.config import ConfigError, NodeConfig, parse_address
from paxctl.server.engine import EngineConfig, NodeEngine, Output
from paxctl.server.exposure import unencrypted_warnings
from paxctl.server.logthrottle import Throttle
from paxctl.server.peers import PeerAuth, PeerConnection
from paxctl.server.requests import Frame
from paxctl.server.transport import FramedProtocol, PeerLink
from paxctl.storage.framing import CorruptionError
from paxctl.storage.fs import OsFileSystem
from paxctl.storage.store import Identity, Storage, StorageError

log = logging.getLogger("paxctl.node")


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class NodeServer:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        os.makedirs(config.data_dir, exist_ok=True)
        identity = Identity(config.cluster_id, config.node_id)
        self.storage, recovered = Storage.open(
            OsFileSystem(config.data_dir),
            identity,
            bootstrap=config.bootstrap,
            # Used only if the directory is empty: a joiner's data is named by a fresh disk id.
            join_disk=random.SystemRandom().randrange(1, 2**63) if config.join else 0,
            label=config.data_dir,
        )
        for warning in recovered.warnings:
            log.warning("recovery: %s", warning)
        state = recovered.state
        snap = state.snapshot
        # A directory made by joining (nonzero disk) is a joiner's for good, with or without
        # --join on a later start; --peers are then seeds, whom to ask for the cluster's state.
        joined = self.storage.disk != 0
        seeds = {i: a for i, a in config.peers.items() if not joined or i != config.node_id}
        if config.node_id not in seeds and not joined:
            raise CorruptionError(
                f"{config.data_dir}: this data directory founded the cluster (it was "
                f"bootstrapped), so node {config.node_id} must be in --peers"
            )
        peers = tuple(sorted(seeds))
        core = Config(
            config.node_id,
            peers,
            election_ticks=config.election_ticks,
            heartbeat_ticks=max(1, config.election_ticks // 5),
            disk=self.storage.disk,
            join=joined,
            addresses=tuple((i, f"{h}:{p}") for i, (h, p) in sorted(seeds.items())),
        )
        node = Node(core, random.Random(os.urandom(16)), state)
        engine_config = EngineConfig(
            config.node_id,
            peers,
            snapshot_every=config.snapshot_every,
            digest_every=config.digest_every,
            watch_history=config.watch_history,
            min_session_ms=config.min_session_ms,
            max_session_ms=config.max_session_ms,
            max_watches_per_connection=config.limits.max_watches_per_connection,
            incarnation=int.from_bytes(os.urandom(4), "big"),
            secret=config.secret,
        )
        self.engine = NodeEngine(
            engine_config,
            node,
            self.storage,
            snap,
            describe=self._describe,
            send_early=self._send_all,  # a leader's Accepts leave while its own fsync runs
        )
        self.node = node
        self._links: dict[int, PeerLink] = {}
        #: Each peer's latest authenticated connection to this node (answers to a former
        #: member go there: no link follows it any more).
        self._inbound: dict[int, PeerConnection] = {}
        self._auth: PeerAuth | None = None
        self._rng = random.Random(os.urandom(8))
        self._members_seen: object = None  # what the peer links were last made to follow
        self._stopping_links: set[asyncio.Task[None]] = set()
        self._told: set[str] = set()  # once-only warnings already logged
        self._servers: list[asyncio.Server] = []
        self._clients: dict[int, ClientConnection] = {}  # connection number -> its transport
        self._next_conn = 0
        self.client_port: ClientPort | None = None
        self._scheduled = False
        self._role_seen: tuple[object, ...] = ()
        self._throttle = Throttle(log)  # lines a peer's messages can cause
        self._stopping: asyncio.Event | None = None
        self.started = time.time()
        self._rejections = Throttle(log)  # a peer can send thousands of bad messages a second
        self.storage.hand_over(node)  # the recovered snapshot is served from its file
        log.info(
            "node %d: recovered promise %s, commit %d, snapshot %s",
            config.node_id,
            node.acceptor.promised,
            node.learner.commit,
            snap.slot if snap else "none",
        )

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        if len(self.config.secret) != SECRET_SIZE:  # `paxctl node start` loads it before this
            raise ValueError("a node needs the cluster secret to authenticate its peers")
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        listen = self.config.listen
        assert listen is not None
        auth = self._auth = PeerAuth(
            self.config.secret, self.config.cluster_id, self.config.node_id, self.config.peers
        )
        self._servers.append(
            await loop.create_server(
                lambda: PeerConnection(
                    auth, self._on_peer_payload, self._inbound_lost, on_ready=self._inbound_ready
                ),
                *listen,
            )
        )
        self.client_port = ClientPort(
            self.config.limits,
            # Room for a few members added while it runs (each holds a link or two).
            descriptors.budget(self.config.limits, len(self.config.peers) + 4),
            self._on_client_payload,
            self._on_client_lost,
            session_slack_ms=self.config.max_session_ms,
            refusal=_refusal,
        )
        descriptors.quiet_accept_errors(loop, self.client_port.throttle)
        self.client_port.listen(*self.config.client)
        self._follow_members()
        log.info(
            "node %d: peers on %s:%d, clients on %s:%d",
            self.config.node_id,
            *listen,
            *self.config.client,
        )
        for warning in unencrypted_warnings(listen, self.config.client):
            log.warning("%s", warning)
        ticker = loop.create_task(self._tick_forever())
        try:
            await self._stopping.wait()
        finally:
            log.info("node %d: shutting down", self.config.node_id)
            ticker.cancel()
            for server in self._servers:
                server.close()
            if self.client_port is not None:
                self.client_port.close()
            for link in self._links.values():
                await link.stop()
            for task in list(self._stopping_links):
                await task
            self.storage.close()

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def _tick_forever(self) -> None:
        period = self.config.tick_ms / 1000
        while True:
            await asyncio.sleep(period)
            self._carry_out(self.engine.tick(_now_ms(), _wall_ms()))
            self.kick()

    # ------------------------------------------------------------------ inputs

    def _outbound(self, auth: PeerAuth, peer: int) -> Callable[[], PeerConnection]:
        def connection() -> PeerConnection:
            link = self._links[peer]

            def lost(_: FramedProtocol) -> None:
                link.connection_lost()
                self._carry_out(self.engine.peer_lost(peer))
                self.kick()

            def ready(_: PeerConnection) -> None:
                self._carry_out(self.engine.peer_linked(peer))
                self.kick()

            return PeerConnection(auth, self._on_peer_payload, lost, peer, ready)

        return connection

    def _inbound_ready(self, conn: PeerConnection) -> None:
        """A member's own connection to this node authenticated: it is up, so the link to it
        stops waiting out its back-off (``PeerLink.poke``)."""
        peer = conn.state
        assert isinstance(peer, int)
        self._inbound[peer] = conn
        link = self._links.get(peer)
        if link is not None:
            link.poke()

    def _inbound_lost(self, conn: FramedProtocol) -> None:
        peer = conn.state
        if isinstance(peer, int) and self._inbound.get(peer) is conn:
            del self._inbound[peer]

    def _on_peer_payload(self, conn: FramedProtocol, payload: bytes) -> None:
        """A message from an authenticated member: ``conn.state`` is its node id."""
        try:
            msg = codec.decode(payload)
        except codec.CodecError as exc:
            conn.close(f"undecodable message from node {conn.state}: {exc}")
            return
        if msg.frm != conn.state:
            conn.close(f"node {conn.state} sent a message signed as node {msg.frm}")
            return
        transfer = isinstance(msg, SnapshotOffer | SnapshotRequest | SnapshotChunk)
        before = self._transfer_refusals() if transfer else {}
        self._carry_out(self.engine.receive(msg, _now_ms(), _wall_ms()))
        for bad, why in self.engine.take_rejections():
            kind = type(bad).__name__
            self._rejections.warning(
                ("rejected", kind, why.code, bad.frm),
                "rejected %s from node %d (%s): %s",
                kind,
                bad.frm,
                why.code,
                why.detail,
            )
        if transfer:
            self._log_transfer_refusals(before, msg)
        self.kick()

    def _transfer_refusals(self) -> dict[str, int]:
        counters = self.node.counters
        return {name: counters[name] for name in REFUSALS}

    def _log_transfer_refusals(self, before: dict[str, int], msg: Message) -> None:
        """A state-transfer message the core dropped: say so, at most once per interval."""
        for name, count in self._transfer_refusals().items():
            if count > before[name]:
                self._throttle.log(
                    logging.INFO,
                    ("transfer", name, msg.frm),
                    "dropped a %s from node %d (%s)",
                    type(msg).__name__,
                    msg.frm,
                    name,
                )

    def _on_client_payload(self, conn: ClientConnection, payload: bytes) -> None:
        if conn.state is None:  # its first request: number the connection
            self._next_conn += 1
            conn.state = self._next_conn
            self._clients[self._next_conn] = conn
            self.engine.connection_opened(self._next_conn)
        number = conn.state
        assert isinstance(number, int)
        try:
            req = decode_request(payload)
        except NotARequest as exc:  # bytes that are not a request at all: nobody to answer
            conn.close(f"malformed client request: {exc}", key="malformed", tell=True)
            return
        except BadRequest as exc:
            self._carry_out(self.engine.reject(number, exc.xid, exc.error))
            return
        # A hello lifts the pre-hello limits only once the engine accepts it (``_to_client``):
        # a refused or never-answered one leaves the connection under them.
        if isinstance(req, OpenSessionRequest):
            conn.opening_session()
        self._carry_out(self.engine.request(number, req, _wall_ms()))
        self.kick()

    def _on_client_lost(self, conn: ClientConnection) -> None:
        number = conn.state
        if isinstance(number, int) and self._clients.pop(number, None) is conn:
            self.engine.connection_closed(number)

    # ------------------------------------------------------------------ outputs

    def _carry_out(self, outputs: list[Output]) -> None:
        """Send what the engine decided, in its order on each connection, and all of it that
        goes to one peer, or to one client connection, with one write: a send call costs
        more than the framing and sealing of a message."""
        if len(outputs) == 1:
            out = outputs[0]
            if isinstance(out, Frame):
                self._to_client(out.conn, [out])
            else:
                self._send_to(out.to, [out])
            return
        peers: dict[int, list[Message]] = {}
        clients: dict[int, list[Frame]] = {}
        for out in outputs:
            if isinstance(out, Frame):
                clients.setdefault(out.conn, []).append(out)
            else:
                peers.setdefault(out.to, []).append(out)
        for to, msgs in peers.items():
            self._send_to(to, msgs)
        for number, frames in clients.items():
            self._to_client(number, frames)

    def _send_all(self, msgs: tuple[Message, ...]) -> None:
        self._carry_out(list(msgs))

    def _send_to(self, to: int, msgs: list[Message]) -> None:
        link = self._links.get(to)
        if link is None:
            self._send_unlinked(to, msgs)
        elif len(msgs) == 1:
            link.send(codec.encode(msgs[0]))
        else:
            link.send_many([codec.encode(msg) for msg in msgs])

    def _send_unlinked(self, to: int, msgs: list[Message]) -> None:
        """No link: a node removed from the cluster (links follow the members) that asks for
        the log to learn its removal is decided. It is answered on its own connection, or it
        could never stop (the core serves a former member only a CatchupRequest's reply)."""
        conn = self._inbound.get(to)
        if conn is not None and conn.open:
            for msg in msgs:
                conn.send(codec.encode(msg))

    def _to_client(self, number: int, frames: list[Frame]) -> None:
        conn = self._clients.get(number)
        if conn is None or not conn.open:
            return
        payloads: list[bytes] = []
        for out in frames:
            if out.greets is not None:  # its hello accepted: the full frame limit from now on
                conn.hello(out.greets)
            frame = out.frame
            # A reply too large for a frame becomes DataTooLarge rather than a frame the
            # client would wait for until its timeout (e.g. the stats of ~26,000 children); a
            # push too large is split into several frames.
            if isinstance(frame, Ok | Failed):
                payloads.append(encode_reply(frame))
            else:
                payloads.extend(encode_pushes(frame))
        # Dropped if it does not read: it resumes from its last zxid elsewhere.
        conn.send_many(payloads)

    # ------------------------------------------------------------------ the Ready loop

    def kick(self) -> None:
        """Run the engine's Ready loop at the end of this loop turn (once, however many
        inputs arrived: they share one fsync)."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._process)

    def _process(self) -> None:
        self._scheduled = False
        try:
            done = self.engine.process()  # persists through self.storage: one fsync
            if done.ready is not None and done.ready.snapshot is not None:
                snap = done.ready.snapshot
                log.info(
                    "installed a peer's snapshot at slot %d (%d bytes)", snap.slot, len(snap.app)
                )
            self._carry_out(done.outputs)
            if done.snapshot is not None:
                self.storage.save_snapshot(done.snapshot)
                log.info(
                    "snapshot at slot %d (%d bytes)", done.snapshot.slot, len(done.snapshot.app)
                )
            self.storage.hand_over(self.node)  # a snapshot saved or installed: serve it from disk
        except StorageError as exc:
            log.critical("%s", exc)
            os._exit(70)  # never retry a failed fsync; the supervisor restarts us from disk
        except Exception:
            # A node must never sit frozen with its loop alive: stop loudly, restart from disk.
            log.critical(
                "node %d: unexpected error in the Ready loop", self.config.node_id, exc_info=True
            )
            os._exit(70)
        if done.more:
            self.kick()  # more may be ready (e.g. pending proposals waiting for the window)
        self._log_role()
        self._follow_members()

    def _log_role(self) -> None:
        """Say when this node's role or known leader changes: failovers can be read (and
        timed) from the logs."""
        node = self.node
        seen = (node.role, node.leader, node.ballot, node.counters["pre_votes"])
        if self._role_seen[3:] != seen[3:] and log.isEnabledFor(logging.DEBUG):
            log.debug("node %d: pre-vote %d sent", self.config.node_id, seen[3])
        if seen != self._role_seen:
            if seen[:2] != self._role_seen[:2]:
                log.info(
                    "node %d: %s at ballot %s, leader %s",
                    self.config.node_id,
                    node.role.value,
                    node.ballot,
                    node.leader if node.leader is not None else "unknown",
                )
            self._role_seen = seen

    # ------------------------------------------------------------------ membership

    def _follow_members(self) -> None:
        """Keep the peer links and the handshake's accepted ids on the members of every
        configuration this node keeps (and on the seeds until a joiner knows them), and act
        on what the configuration says of this node."""
        members = self.node.members
        seen = (members.known, tuple((c.epoch, c.active) for c in members.configs))
        if seen != self._members_seen and self._auth is not None:
            self._members_seen = seen
            self._relink(self._auth, self._addresses())
        if members.known:
            self._about_me()

    def _addresses(self) -> dict[int, tuple[str, int]]:
        """Every other member's peer address; the seeds' while the configuration is unknown."""
        me, members = self.config.node_id, self.node.members
        wanted = {} if members.known else dict(self.config.peers)
        for config in members.configs:
            for m in config.members:
                try:
                    wanted[m.id] = parse_address(m.peer, f"node {m.id}'s peer address")
                except ConfigError as exc:  # the cluster refuses such changes; never fatal
                    self._once(f"address {m.id}", "%s", exc)
        wanted.pop(me, None)
        return wanted

    def _relink(self, auth: PeerAuth, wanted: dict[int, tuple[str, int]]) -> None:
        # This node too: a hello claiming to be it is then refused as exactly that.
        auth.members = frozenset(wanted) | {self.config.node_id}
        for peer, link in list(self._links.items()):
            if wanted.get(peer) != (link.host, link.port):
                del self._links[peer]
                task = asyncio.get_running_loop().create_task(link.stop())
                self._stopping_links.add(task)
                task.add_done_callback(self._stopping_links.discard)
                log.info("node %d: no longer linked to node %d", self.config.node_id, peer)
        for peer, (host, port) in sorted(wanted.items()):
            if peer not in self._links:
                link = PeerLink(peer, host, port, self._outbound(auth, peer), self._rng)
                link.start()
                self._links[peer] = link
                log.info(
                    "node %d: linked to node %d at %s:%d", self.config.node_id, peer, host, port
                )

    def _about_me(self) -> None:
        """What the configuration says of this node: removed (stop), a voter bound to another
        disk (it never votes: say so, once), a voter though started as a learner (warn)."""
        me, members = self.config.node_id, self.node.members
        if self.node.removed:
            log.info(
                "node %d was removed from the cluster (configuration epoch %d); shutting down",
                me,
                members.latest.epoch,
            )
            self.stop()
            return
        member = members.latest.member(me)
        if member is None or not member.voter:
            return
        if member.disk != self.storage.disk:
            self._once(
                "disk",
                "node %d is a voter of the configuration (epoch %d) with another data directory "
                "than this one, which started empty: it will NOT vote. Replace it: `paxctl "
                "cluster replace %d NEW -s SERVERS` (or `paxctl cluster replace %d` on a cluster "
                "made by `paxctl cluster up`), then stop this process.",
                me,
                members.latest.epoch,
                me,
                me,
                level=logging.ERROR,
            )
        elif self.config.learner:
            self._once(
                "learner",
                "node %d was started with --learner but the configuration (epoch %d) makes it "
                "a voter",
                me,
                members.latest.epoch,
            )

    def _once(self, key: str, message: str, *args: object, level: int = logging.WARNING) -> None:
        if key not in self._told:
            self._told.add(key)
            log.log(level, message, *args)

    # ------------------------------------------------------------------ status

    def _describe(self) -> dict[str, object]:
        """What only the process knows, for the engine's status."""
        listen = self.config.listen
        assert listen is not None
        return {
            "peer_address": f"{listen[0]}:{listen[1]}",
            "client_address": f"{self.config.client[0]}:{self.config.client[1]}",
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 1),
            **self._connection_counts(),
        }

    def _connection_counts(self) -> dict[str, object]:
        """Client connections open, refused at accept and dropped for a limit (README
        "Limits"), once the client port is up."""
        port = self.client_port
        if port is None:
            return {}
        conns = port.connections
        return {
            "client_connections": conns.total,
            "client_refused": conns.refused,
            "client_dropped": port.dropped,
        }

    def status(self) -> dict[str, object]:
        return self.engine.status()


def _refusal(message: str) -> bytes:
    """What a refused client connection is told before it is closed (xid 0: no request)."""
    return encode_reply(Failed(0, 0, ErrorCode.UNAVAILABLE, message))


def run_node(config: NodeConfig) -> None:
    """Run a node in the foreground until SIGTERM/SIGINT."""
    soft, hard = descriptors.raise_open_file_limit()
    heap.pin_mmap_threshold()  # before the state is loaded: see paxctl.server.heap
    loop_name, loop_factory = _event_loop()
    server = NodeServer(config)
    # Said once the data directory has opened: a node that cannot start says only why.
    log.info("open-file limit %d (hard limit %d)", soft, hard)
    log.info("event loop: %s", loop_name)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(server.run())


def _event_loop() -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """Run on uvloop when the ``fast`` extra installed it, unless ``PAXCTL_UVLOOP=0`` asks
    for plain asyncio (to compare the two, or to rule uvloop out). It is no default
    dependency: measured side by side it did not change a node's throughput or CPU per
    request, which Python work in the node dominates (benchmarks/RESULTS.md). The loop's
    name, for the log, and its factory (None: asyncio's own)."""
    if os.environ.get("PAXCTL_UVLOOP", "1").strip().lower() in {"0", "no", "false", "off"}:
        return "asyncio (PAXCTL_UVLOOP=0)", None
    try:
        import uvloop
    except ImportError:
        return "asyncio (uvloop is not installed)", None
    return "uvloop", uvloop.new_event_loop


__all__ = ["NodeServer", "Ready", "run_node"]
