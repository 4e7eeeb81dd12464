"""The asyncio client: failover across servers, exactly-once writes, a session, watches.

Every write carries ``(client id, seq)``; after a lost connection or a timeout the client retries
the same write on another server, and the cluster applies it once and answers with the first
attempt's result. When the client cannot learn a write's fate before its deadline it raises
``Indeterminate``: the write may or may not have taken effect (never "failed"). A client sends
one write at a time, so its writes are applied in the order sent. Reads are linearizable unless
``local=True``; a local read is never older than anything this client has already seen.

Writes need a session: the first write opens one (or call ``start``); with ``one_shot``, a
write that needs none (no ephemeral) goes without one while none is open, one round each (the
cluster still applies it once, statemachine/once.py). The session lives while the client
pings; its state is ``connected``, ``suspended`` (no contact: its ephemerals may or may not
still exist) or ``lost`` (the cluster expired it: they are gone). After a loss the next
write opens a new session, as kazoo does; listeners hear every transition. ``valid_until``
is the latest moment at which the session is certainly still alive (the send time of the last
acknowledged ping plus the session timeout), on this process's monotonic clock.

Losing and regaining the connection itself is told to connection listeners, session or not: a
watcher without a session wants to know when it cannot hear the cluster. A client that has
never reached any server gives up (``Unavailable``) as soon as every server has refused the
connection, rather than retrying until its timeout: nothing is coming back there. Once a
server was reached, or while a session lives, it keeps retrying: that is a failover.

Every one of those rules lives in ``ClientSession`` (session.py), a sans-I/O state machine that
the simulator's clients drive too. This module is its asyncio driver: it opens the connections
the session asks for, sends its typed requests (connection.py encodes them), feeds it every
frame, loss and timer in order, and turns its outputs into futures, watch queues and listener
calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from paxctl.client.addresses import format_server, parse_servers
from paxctl.client.calls import (
    ATTEMPT_TIMEOUT,
    children_result,
    exists_result,
    get_result,
    new_session,
    read,
)
from paxctl.client.connection import (
    ClientError,
    Connection,
    ConnectionLost,
    Indeterminate,
    Refused,
    Unavailable,
    open_stream,
)
from paxctl.client.queue_reply import Enqueued, parse_queue_reply
from paxctl.client.session_types import (
    CallFailed,
    Close,
    Completed,
    Connect,
    Delivered,
    Link,
    Send,
    SessionState,
    StateChanged,
)
from paxctl.client.watch import Watch, WatchEvent
from paxctl.protocol.admin_proof import reconfig_proof
from paxctl.protocol.codec import members_dict, members_reply
from paxctl.protocol.messages import QueueWatches, ReconfigRequest, WatchMode
from paxctl.statemachine.errors import MultiError, SessionExpired, ZnodeError
from paxctl.statemachine.ops import (
    Check,
    Create,
    Delete,
    Fence,
    Multi,
    Op,
    Put,
    SetData,
    encode_op,
    once_op,
)

log = logging.getLogger("paxctl.client")


class Client:
    """The asyncio driver of a ``ClientSession``: sockets, timers and futures; the session
    decides everything else (see session.py)."""

    def __init__(
        self,
        servers: Sequence[tuple[str, int]] | str,
        timeout: float = 10.0,
        session_timeout: float = 10.0,
        ping_interval: float | None = None,
        *,
        one_shot: bool = False,
    ) -> None:
        parsed = parse_servers(servers) if isinstance(servers, str) else list(servers)
        self.timeout = timeout
        #: Write without a session while none is open (one round each, not three for a
        #: session's open, write and close): for a command that writes once and exits.
        self.one_shot = one_shot
        self.session_timeout = session_timeout
        self.connected_to: tuple[str, int] | None = None
        self._session = new_session(parsed, session_timeout, ping_interval)
        self._servers = parsed
        self._conns: dict[int, Connection] = {}
        self._opening: dict[int, asyncio.Task[None]] = {}
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._frozen: list[Callable[[float], None]] | None = None  # a test's stopped process
        self._write_lock = asyncio.Lock()
        self._watches: dict[int, Watch] = {}
        self._listeners: list[Callable[[SessionState], None]] = []
        self._closing = False
        self._link_up = False
        self._link_listeners: list[Callable[[bool, tuple[str, int] | None], None]] = []

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ session state

    @property
    def servers(self) -> list[tuple[str, int]]:
        return self._servers

    @servers.setter
    def servers(self, servers: Sequence[tuple[str, int]]) -> None:
        self._servers = list(servers)
        self._session.servers = [format_server(s) for s in self._servers]

    @property
    def client_id(self) -> int:
        return self._session.client_id

    @property
    def last_zxid(self) -> int:
        return self._session.last_zxid

    @property
    def state(self) -> SessionState:
        return self._session.state

    @property
    def ping_interval(self) -> float | None:
        """Seconds between pings (default: a third of the granted timeout). A lock holder
        pings more often, so its deadline is renewed with room to spare."""
        ms = self._session.ping_interval_ms
        return None if ms is None else ms / 1000

    @property
    def granted_timeout(self) -> float | None:
        """Session timeout the cluster granted, in seconds (None before a session opens)."""
        ms = self._session.granted_ms
        return None if ms is None else ms / 1000

    @property
    def last_ack_sent(self) -> float | None:
        ms = self._session.last_ack_sent
        return None if ms is None else ms / 1000

    @property
    def session_id(self) -> int | None:
        return self._session.session_id

    def valid_until(self) -> float | None:
        """Monotonic time until which the session is certainly alive, if known."""
        sent, granted = self.last_ack_sent, self.granted_timeout
        if not self._session.session or sent is None or granted is None:
            return None
        return sent + granted

    def add_listener(self, listener: Callable[[SessionState], None]) -> None:
        """Call ``listener(state)`` on every session state change."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[SessionState], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def add_connection_listener(
        self, listener: Callable[[bool, tuple[str, int] | None], None]
    ) -> None:
        """Call ``listener(True, server)`` when a connection to ``server`` is ready, and
        ``listener(False, server)`` when the ready connection to ``server`` is lost (the
        client reconnects on its own while a session or a watch needs it)."""
        self._link_listeners.append(listener)

    def remove_connection_listener(
        self, listener: Callable[[bool, tuple[str, int] | None], None]
    ) -> None:
        with contextlib.suppress(ValueError):
            self._link_listeners.remove(listener)

    def _set_link(self, up: bool) -> None:
        if up is self._link_up:
            return
        self._link_up = up
        if self._closing:  # our own close: not news
            return
        for listener in list(self._link_listeners):
            try:
                listener(up, self.connected_to)
            except Exception:  # a listener's bug must not break the client
                log.exception("connection listener failed")

    def _tell(self, state: SessionState) -> None:
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:  # a listener's bug must not break the client
                log.exception("session listener failed")

    async def start(self) -> None:
        """Open a session now (writes open one on demand) and keep it alive with pings."""
        async with self._write_lock:
            await self._open_session()

    async def _open_session(self) -> None:
        # Under the temporary id; the reply names the session, whose id the session uses from
        # then on. (A retry whose first answer was lost opens a second one: it simply expires.)
        if not self._session.session:
            timeout_ms = max(1, int(self.session_timeout * 1000))
            await self._request(lambda now, t: self._session.open_session(now, timeout_ms, t))

    async def close(self) -> None:
        """End the session (its ephemerals go at once) and the connection."""
        if self._closing:
            return
        self._closing = True
        if self._session.session:
            with contextlib.suppress(ClientError, ZnodeError, OSError):
                async with self._write_lock:
                    limit = min(self.timeout, 3.0) * 1000
                    await self._request(lambda now, t: self._session.close_session(now, limit))
        conns = list(self._conns.values())
        self._session.shutdown()
        self._pump()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._opening.values()):
            task.cancel()
        for conn in conns:
            await conn.close()
        for watch in self._watches.values():
            watch.end()
        self._watches.clear()

    # ------------------------------------------------------------------ the driver

    @property
    def _conn(self) -> Connection | None:
        """The current connection, once open."""
        conn = self._session.conn
        return None if conn is None else self._conns.get(conn)

    def _now(self) -> float:
        return asyncio.get_running_loop().time() * 1000

    def _input(self, event: Callable[[float], None], now: float | None = None) -> None:
        """Feed the session one input, then act on what it asks for."""
        if self._frozen is not None:
            self._frozen.append(event)
            return
        event(self._now() if now is None else now)
        self._pump()

    def _pump(self) -> None:
        session = self._session
        for out in session.take():
            if isinstance(out, Send):
                conn = self._conns.get(out.conn)
                if conn is not None:
                    conn.send(out.request)
            elif isinstance(out, Completed | CallFailed):
                future = self._futures.pop(out.call, None)
                if future is not None and not future.done():
                    if isinstance(out, Completed):
                        future.set_result(out.value)
                    else:
                        future.set_exception(out.error)
            elif isinstance(out, Delivered):
                e = out.event
                watch = self._watches.get(e.wid)
                if watch is not None:
                    watch.deliver(WatchEvent(e.kind, e.path, e.zxid))
                    if out.last:
                        self._watches.pop(e.wid, None)
            elif isinstance(out, Connect):
                loop = asyncio.get_running_loop()
                self._opening[out.conn] = loop.create_task(self._open(out.conn, out.server))
            elif isinstance(out, Close):
                task = self._opening.pop(out.conn, None)
                if task is not None:
                    task.cancel()
                conn = self._conns.pop(out.conn, None)
                if conn is not None:
                    conn.abort()
            elif isinstance(out, Link):
                if out.up:
                    self.connected_to = self._servers[out.server % len(self._servers)]
                self._set_link(out.up)
            elif isinstance(out, StateChanged):
                self._tell(out.state)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self._session.next_deadline()
        if due is not None and self._frozen is None and not self._session.closed:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(due / 1000, self._on_timer, due)

    def _on_timer(self, due: float) -> None:
        self._timer = None
        self._input(self._session.tick, max(self._now(), due))

    async def _open(self, conn: int, server: int) -> None:
        host, port = self._servers[server % len(self._servers)]
        session = self._session
        try:
            reader, writer = await asyncio.wait_for(open_stream(host, port), ATTEMPT_TIMEOUT)
        except Refused as exc:
            reason = exc.reason
            self._opening.pop(conn, None)
            self._input(lambda now: session.connect_failed(now, conn, reason))
            return
        except (TimeoutError, OSError) as exc:
            log.debug("connect to %s:%s failed: %s", host, port, exc)
            self._opening.pop(conn, None)
            self._input(lambda now: session.connect_failed(now, conn))
            return
        self._opening.pop(conn, None)
        self._conns[conn] = Connection(
            reader,
            writer,
            lambda msg: self._input(lambda now: session.frame(now, conn, msg)),
            lambda: self._input(lambda now: session.connection_lost(now, conn)),
        )
        self._input(lambda now: session.connected(now, conn))

    async def _request(self, make: Callable[[float, float], int]) -> Any:
        """Start a call (``make(now, timeout_ms)`` returns its id) and wait for its end."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call = make(self._now(), self.timeout * 1000)
        self._futures[call] = future
        self._pump()
        try:
            return await future
        except asyncio.CancelledError:
            self._futures.pop(call, None)
            self._session.cancel(call)
            self._pump()
            raise

    def _failover(self, why: str) -> None:
        """Leave the current server for the next one (tests: as if it had gone quiet)."""
        self._input(lambda now: self._session.failover(now, why))

    def _freeze(self) -> None:
        """Tests: behave as a stopped process. No timer runs and nothing is read; the
        connection is cut (the node notices). ``_thaw`` resumes, in order."""
        frozen: list[Callable[[float], None]] = []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for cid, conn in self._conns.items():
            conn.abort()
            frozen.append(functools.partial(self._lost_while_frozen, cid))
        self._frozen = frozen

    def _lost_while_frozen(self, conn: int, now: float) -> None:
        self._session.connection_lost(now, conn)

    def _thaw(self) -> None:
        frozen, self._frozen = self._frozen or [], None
        now = self._now()
        for event in frozen:
            event(now)
        self._input(self._session.tick, now)

    async def _write(self, op: Op, queue: QueueWatches | None = None) -> Any:
        encode_op(op)  # what cannot be encoded fails here, before the session numbers it
        async with self._write_lock:  # one write at a time: applied in the order sent
            if self._closing:
                raise ConnectionLost("the client is closed")
            single = once_op(op) if self.one_shot and not self._session.session else None
            if single is not None:
                return await self._request(lambda now, t: self._session.write_once(now, single, t))
            await self._open_session()
            return await self._request(lambda now, t: self._session.write(now, op, t, queue))

    async def _read(self, kind: str, path: str, local: bool, **extra: Any) -> Any:
        return await self._request(read(self._session, kind, path, local, **extra))

    # ------------------------------------------------------------------ writes

    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        sequential: bool = False,
        parents: bool = False,
        ephemeral: bool = False,
        container: bool = False,
        ttl: float | None = None,
    ) -> str:
        """Create ``path``; ``ttl`` in seconds makes a TTL node (deleted when unchanged)."""
        ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        op = Create(path, data, sequential, parents, ephemeral, container, ttl_ms)
        return str(await self._write(op))

    async def enqueue(
        self, path: str, data: bytes = b"", *, ephemeral: bool = True, watch_prev: bool = True
    ) -> Enqueued:
        """Create the sequential node ``path``+NNNNNNNNNN and, in the same round trip, learn
        where it stands among its siblings and watch it (and, with ``watch_prev``, the sibling
        just before it): a lock's whole uncontended acquire (client/queue_reply.py)."""
        own = self._new_watch("", WatchMode.DATA)  # paths: the answer names them
        prev = self._new_watch("", WatchMode.DATA) if watch_prev else None
        queue = QueueWatches(own.wid, prev.wid if prev is not None else 0)
        reply = None
        try:
            reply = parse_queue_reply(
                await self._write(Create(path, data, True, False, ephemeral), queue)
            )
        finally:
            paths = {} if reply is None else reply.paths(queue)
            for watch in (own, prev):
                if watch is not None and watch.wid in paths:
                    watch.path, watch.armed = paths[watch.wid], True
                elif watch is not None:
                    self._watches.pop(watch.wid, None)  # never registered: nothing to tell
                    watch.end()
        assert reply is not None
        return Enqueued(reply.path, reply.listing, reply.prev, own, prev if reply.prev else None)

    async def _fenced(
        self, op: Create | SetData | Delete | Put, fence: tuple[str, int] | None
    ) -> Any:
        """``op`` alone, or guarded by a fence: applied only while ``fence = (lock path,
        token)`` names the lock's current holder, else ``FenceRejected`` (nothing changes)."""
        if fence is None:
            return await self._write(op)
        try:
            results = await self._write(Multi((Fence(*fence), op)))
        except MultiError as exc:
            raise exc.error from None  # the fence's or the operation's own error
        return results[1]

    async def set(
        self,
        path: str,
        data: bytes,
        version: int = -1,
        *,
        fence: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._fenced(SetData(path, data, version), fence)
        return result

    async def put(
        self, path: str, data: bytes, *, fence: tuple[str, int] | None = None
    ) -> dict[str, Any]:
        """Create ``path`` holding ``data``, or replace its data if it exists (any version):
        one request; returns the node's stat afterwards (its parent must exist)."""
        result: dict[str, Any] = await self._fenced(Put(path, data), fence)
        return result

    async def delete(
        self, path: str, version: int = -1, *, fence: tuple[str, int] | None = None
    ) -> None:
        await self._fenced(Delete(path, version), fence)

    async def multi(self, ops: Sequence[Create | SetData | Delete | Check | Put]) -> list[Any]:
        result: list[Any] = await self._write(Multi(tuple(ops)))
        return result

    # ------------------------------------------------------------------ reads

    async def get(self, path: str, *, local: bool = False) -> tuple[bytes, dict[str, Any]]:
        return get_result(await self._read("get", path, local))

    async def exists(self, path: str, *, local: bool = False) -> dict[str, Any] | None:
        return exists_result(await self._read("exists", path, local))

    async def stat(self, path: str, *, local: bool = False) -> dict[str, Any]:
        return dict(await self._read("stat", path, local))

    async def children(self, path: str, *, stats: bool = False, local: bool = False) -> Any:
        return children_result(await self._read("children", path, local, stats=stats), stats)

    async def ephemerals(self, session: int | None = None) -> list[str]:
        """Paths of the ephemerals ``session`` (default: this client's) owns."""
        sid = self.client_id if session is None else session
        return list(await self._read("ephemerals", "/", False, session=sid))

    async def sessions(self) -> list[dict[str, Any]]:
        """Every open session: id, timeout and how many ephemerals it owns."""
        return list(await self._read("sessions", "/", False))

    async def sync(self) -> None:
        await self._request(self._session.sync)

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(self._session.status)
        return result

    # ------------------------------------------------------------------ the configuration

    async def members(self) -> dict[str, Any]:
        """The cluster's configuration as the serving node knows it: ``epoch``, ``active``,
        ``commit``, ``leader`` (0: none known), ``next_id``, ``in_flight`` and ``members`` (a
        list of ``{"id", "voter", "peer", "client", "promote", "replaces"}``)."""
        return members_dict(members_reply(0, 0, await self._request(self._session.members)))

    async def reconfigure(
        self,
        kind: str,
        node: int,
        *,
        secret: bytes,
        peer: str = "",
        client: str = "",
        learner: bool = False,
        replaces: int = 0,
        base: int = -1,
    ) -> dict[str, Any]:
        """Change the configuration (``kind``: "add", "remove" or "replace"; see
        ``ReconfigRequest``), proving it with the cluster ``secret``; returns the new
        configuration (as ``members``) once the change is committed. Raises ``AuthFailed``
        for a wrong secret, ``ReconfigRefused`` (the reason) if the cluster refused it, and
        ``Indeterminate`` if the answer was lost (the change is never sent twice)."""
        fields: dict[str, Any] = {"peer": peer, "client": client, "learner": learner}
        fields.update(replaces=replaces, base=base)
        proof = reconfig_proof(secret, kind, node, **fields)
        req = ReconfigRequest(0, kind, node, peer, client, learner, replaces, base, proof)
        value = await self._request(lambda now, t: self._session.reconfigure(now, req, t))
        return members_dict(members_reply(0, 0, value))

    # ------------------------------------------------------------------ watches

    def _new_watch(self, path: str, mode: WatchMode) -> Watch:
        wid = self._session.new_watch(path, mode)
        watch = Watch(wid, path, str(mode), self._cancel_watch)
        self._watches[wid] = watch
        return watch

    async def _cancel_watch(self, watch: Watch) -> None:
        self._watches.pop(watch.wid, None)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call = self._session.unwatch(self._now(), watch.wid)
        if call is not None:
            self._futures[call] = future
        self._pump()
        if call is not None:
            with contextlib.suppress(ClientError, ZnodeError, OSError, TimeoutError):
                await asyncio.wait_for(future, ATTEMPT_TIMEOUT)

    async def watch(self, path: str, *, recursive: bool = False, after: int | None = None) -> Watch:
        """A persistent watch on ``path`` (``recursive``: and its whole subtree).

        ``after`` replays the changes after that zxid that the servers still remember (a
        ``resync`` event says when they do not); by default, changes from now on.
        """
        watch = self._new_watch(path, WatchMode.RECURSIVE if recursive else WatchMode.PERSISTENT)
        if after is not None:
            watch.last_zxid = after
        try:
            await self._request(lambda now, t: self._session.watch(now, watch.wid, after, t))
        except BaseException:
            self._watches.pop(watch.wid, None)
            raise
        watch.armed = True
        return watch

    async def _read_watch(
        self, kind: str, path: str, mode: WatchMode, **extra: Any
    ) -> tuple[Any, Watch]:
        watch = self._new_watch(path, mode)
        try:
            result = await self._read(kind, path, False, watch=watch.wid, **extra)
        except BaseException:
            self._watches.pop(watch.wid, None)
            raise
        watch.armed = True
        return result, watch

    async def get_watch(self, path: str) -> tuple[bytes, dict[str, Any], Watch]:
        """``get`` plus a one-shot watch for the next change of the node's data or existence."""
        result, watch = await self._read_watch("get", path, WatchMode.DATA)
        return bytes(result["data"]), dict(result["stat"]), watch

    async def exists_watch(self, path: str) -> tuple[dict[str, Any] | None, Watch]:
        """``exists`` plus a one-shot watch that fires when the node is created, changed or
        deleted (ZooKeeper's way to wait for a node to appear or to go)."""
        result, watch = await self._read_watch("exists", path, WatchMode.DATA)
        return (dict(result) if result is not None else None), watch

    async def children_watch(self, path: str) -> tuple[list[str], Watch]:
        """``children`` plus a one-shot watch for the next change of the list."""
        result, watch = await self._read_watch("children", path, WatchMode.CHILDREN)
        return list(result["children"]), watch


__all__ = [
    "Client",
    "ClientError",
    "Indeterminate",
    "SessionExpired",
    "SessionState",
    "Unavailable",
    "Watch",
    "WatchEvent",
    "ZnodeError",
]
