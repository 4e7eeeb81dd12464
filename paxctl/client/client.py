"""The asyncio client: failover across servers, exactly-once writes, a session, watches.

Every write carries ``(client id, seq)``; after a lost connection or a timeout the client retries
the same write on another server, and the cluster applies it once and answers with the first
attempt's result. When the client cannot learn a write's fate before its deadline it raises
``Indeterminate``: the write may or may not have taken effect (never "failed"). A client sends
one write at a time, so its writes are applied in the order sent. Reads are linearizable unless
``local=True``; a local read is never older than anything this client has already seen.

Writes need a session: the first write opens one (or call ``start``). The session lives while
the client pings; its state is ``connected``, ``suspended`` (no contact: its ephemerals may or
may not still exist) or ``lost`` (the cluster expired it: they are gone). After a loss the next
write opens a new session, as kazoo does; listeners hear every transition. ``valid_until``
is the latest moment at which the session is certainly still alive (the send time of the last
acknowledged ping plus the session timeout), on this process's monotonic clock.

Losing and regaining the connection itself is told to connection listeners, session or not: a
watcher without a session wants to know when it cannot hear the cluster. A client that has
never reached any server gives up (``Unavailable``) as soon as every server has refused the
connection, rather than retrying until its timeout: nothing is coming back there. Once a
server was reached, or while a session lives, it keeps retrying: that is a failover.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import random
import struct
from collections.abc import Callable, Sequence
from typing import Any

from paxctl.client.addresses import format_server, parse_servers
from paxctl.client.connection import (
    ClientError,
    Connection,
    ConnectionLost,
    Indeterminate,
    Refused,
    Unavailable,
    all_refused,
    open_stream,
)
from paxctl.client.watch import Watch, WatchEvent
from paxctl.statemachine.errors import MultiError, SessionExpired, ZnodeError, error_from_code
from paxctl.statemachine.ops import (
    TEMP_CLIENT_BIT,
    Check,
    Create,
    Delete,
    Fence,
    Multi,
    SetData,
    encode_op,
)

log = logging.getLogger("paxctl.client")

#: How long one attempt on one server may take before the client tries another.
ATTEMPT_TIMEOUT = 2.0


class SessionState(enum.Enum):
    NONE = "none"  # no session opened yet (reads and watches need none)
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"
    CLOSED = "closed"


def new_client_id() -> int:
    """A random temporary id (``TEMP_CLIENT_BIT`` set): the connection's until the cluster
    assigns it a session id (which never has that bit)."""
    cid: int = TEMP_CLIENT_BIT | struct.unpack(">Q", os.urandom(8))[0] >> 2
    return cid


class Client:
    def __init__(
        self,
        servers: Sequence[tuple[str, int]] | str,
        timeout: float = 10.0,
        client_id: int | None = None,
        session_timeout: float = 10.0,
        ping_interval: float | None = None,
    ) -> None:
        self.servers = parse_servers(servers) if isinstance(servers, str) else list(servers)
        self.timeout = timeout
        self.session_timeout = session_timeout
        #: Seconds between pings (default: a third of the granted timeout). A lock holder
        #: pings more often, so its deadline is renewed with room to spare.
        self.ping_interval = ping_interval
        self.client_id = client_id or new_client_id()
        self.last_zxid = 0
        self.state = SessionState.NONE
        #: Session timeout the cluster granted, in seconds (None before a session opens).
        self.granted_timeout: float | None = None
        self.last_ack_sent: float | None = None
        self.connected_to: tuple[str, int] | None = None
        self._seq = 0
        self._session = False
        self._epoch = 0  # bumped when a session is lost: writes of the old one must not resend
        self._conn: Connection | None = None
        self._server_index = random.randrange(len(self.servers))
        self._write_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._watches: dict[int, Watch] = {}
        self._next_wid = 1
        self._listeners: list[Callable[[SessionState], None]] = []
        self._pinger: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # set when the connection drops: ping (reconnect) now
        self._closing = False
        #: A server accepted a connection at some point: refusals may be a failover, then.
        self._reached = False
        self._link_up = False
        self._link_listeners: list[Callable[[bool, tuple[str, int] | None], None]] = []

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ session state

    @property
    def session_id(self) -> int | None:
        return self.client_id if self._session else None

    def valid_until(self) -> float | None:
        """Monotonic time until which the session is certainly alive, if known."""
        if not self._session or self.last_ack_sent is None or self.granted_timeout is None:
            return None
        return self.last_ack_sent + self.granted_timeout

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

    def _set_state(self, state: SessionState) -> None:
        if state is not self.state:
            self.state = state
            for listener in list(self._listeners):
                try:
                    listener(state)
                except Exception:  # a listener's bug must not break the client
                    log.exception("session listener failed")

    def _lost(self) -> None:
        """The cluster ended our session: its ephemerals are gone; a new one opens on demand."""
        if not self._session or self._closing:  # closing: the end is ours, not an expiry
            return
        self._session = False
        self._epoch += 1
        self.client_id = new_client_id()
        self._seq = 0
        self.last_ack_sent = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            asyncio.get_running_loop().create_task(conn.close())
        self._set_state(SessionState.LOST)

    async def start(self) -> None:
        """Open a session now (writes open one on demand) and keep it alive with pings."""
        async with self._write_lock:
            await self._open_session()

    async def _open_session(self) -> None:
        if self._session:
            return
        self._seq += 1
        req = {"op": "open_session", "seq": self._seq, "timeout_ms": self._timeout_ms()}
        sent = asyncio.get_running_loop().time()  # the session's clock starts no earlier
        # Under the temporary id; the reply names the session, whose id we use from now on. (A
        # retry whose first answer was lost opens a second one: the first simply expires.)
        opened = await self._call(req, True, self._epoch)
        self.client_id = int(opened["session"])
        self.granted_timeout = int(opened["timeout_ms"]) / 1000
        self._session = True
        self.last_ack_sent = sent
        self._set_state(SessionState.CONNECTED)
        self._keep_alive()

    def _timeout_ms(self) -> int:
        return max(1, int(self.session_timeout * 1000))

    def _keep_alive(self) -> None:
        """Ping while there is a session or a watch: a connection that goes quiet (a dead or
        cut-off node) is noticed and replaced, and the watches resume on the next node."""
        if self._pinger is None or self._pinger.done():
            self._pinger = asyncio.get_running_loop().create_task(self._ping_forever())

    async def _ping_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while (self._session or self._watches) and not self._closing:
            interval = self.ping_interval or (self.granted_timeout or self.session_timeout) / 3
            sent = loop.time()
            try:
                conn = await asyncio.wait_for(self._connection(), interval)
                reply = await asyncio.wait_for(conn.request({"op": "ping"}), interval)
                err = reply.get("err")
                if err == "SessionExpired":
                    self._lost()
                    continue
                if err is not None:
                    raise ConnectionLost(f"ping refused: {err}")
                if self._session:
                    self.last_ack_sent = sent
                    self._set_state(SessionState.CONNECTED)
                await self._nap(interval - (loop.time() - sent))
            except (TimeoutError, OSError, ConnectionLost) as exc:
                log.debug("ping failed: %s", exc)
                if self._session:
                    self._set_state(SessionState.SUSPENDED)
                await self._failover()
                await asyncio.sleep(0.05)

    async def _nap(self, seconds: float) -> None:
        """Wait until the next ping is due, or at once if the connection dropped: a dead node
        is replaced (and the watches resume) without waiting for a ping to time out."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, seconds))
        self._wake.clear()

    async def close(self) -> None:
        """End the session (its ephemerals go at once) and the connection."""
        if self._closing:
            return
        # Set before close_session is sent: the node pushes "expired" for it ahead of the
        # reply, and a ping may be answered SessionExpired meanwhile; neither is a loss.
        self._closing = True
        if self._session:
            with contextlib.suppress(ClientError, ZnodeError, OSError):
                async with self._write_lock:
                    self._seq += 1
                    req = {"op": "close_session", "seq": self._seq}
                    saved, self.timeout = self.timeout, min(self.timeout, 3.0)
                    try:
                        await self._call(req, True, self._epoch)
                    finally:
                        self.timeout = saved
        self._session = False
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        for watch in self._watches.values():
            watch.end()
        self._watches.clear()
        if self.state is not SessionState.NONE:
            self._set_state(SessionState.CLOSED)

    # ------------------------------------------------------------------ plumbing

    def _on_zxid(self, zxid: int) -> None:
        self.last_zxid = max(self.last_zxid, zxid)

    def _on_push(self, frame: dict[str, Any]) -> None:
        """A frame the server pushed: watch events, or the end of our session."""
        events = frame.get("events")
        if type(events) is list:
            floors = {wid: w.last_zxid for wid, w in self._watches.items()}
            for item in events:
                if type(item) is not list or len(item) != 4:
                    continue
                wid, kind, path, zxid = item
                watch = self._watches.get(wid)
                if watch is None or type(zxid) is not int or zxid <= floors.get(wid, 0):
                    continue  # unknown, or delivered before (a replay after failover)
                watch.deliver(WatchEvent(str(kind), str(path), zxid))
                if watch.done:
                    self._watches.pop(wid, None)
        if frame.get("expired") == self.client_id and self._session and not self._closing:
            self._lost()

    async def _connection(self) -> Connection:
        async with self._connect_lock:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            host, port = self.servers[self._server_index % len(self.servers)]
            after = self.last_zxid  # before this server's answers can raise it
            reader, writer = await asyncio.wait_for(open_stream(host, port), ATTEMPT_TIMEOUT)
            self._reached = True

            def closed() -> None:
                self._wake.set()
                if self._conn is conn:
                    self._set_link(False)

            conn = Connection(reader, writer, self._on_push, self._on_zxid, closed)
            try:
                while True:
                    hello = {
                        "op": "hello",
                        "client": self.client_id,
                        "session": self._session,
                        "after": after,
                        # Only watches a node registered: one whose own request is still in
                        # flight is registered by that request ("from now", or its ``after``),
                        # not replayed from this client's last zxid.
                        "watches": [
                            [w.wid, w.path, w.mode] for w in self._watches.values() if w.armed
                        ],
                    }
                    reply = await asyncio.wait_for(conn.request(hello), ATTEMPT_TIMEOUT)
                    if reply.get("err") == "SessionExpired" and self._session:
                        self._lost_on(conn)
                        continue  # say hello again, without the session
                    if reply.get("err") is not None:
                        raise ConnectionLost(f"hello refused: {reply.get('msg')}")
                    break
            except BaseException:
                await conn.close()
                raise
            conn.ready = True
            self._on_zxid(int(reply.get("zxid", 0)))
            self._conn, self.connected_to = conn, (host, port)
            self._set_link(True)
            return conn

    def _lost_on(self, conn: Connection) -> None:
        """Session expired, learned during a hello on ``conn`` (which stays open)."""
        self._conn = None
        self._lost()

    async def _failover(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        self._conn = None
        self._set_link(False)
        self._server_index += 1

    async def _call(self, req: dict[str, Any], write: bool, epoch: int | None = None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        maybe_sent = False
        last = "no server answered"
        refused: dict[tuple[str, int], str] = {}  # servers whose connection was refused
        while True:
            if write and epoch is not None and epoch != self._epoch:
                fate = "its outcome is unknown" if maybe_sent else "it was not sent"
                raise SessionExpired(f"the session expired during this write; {fate}")
            left = deadline - loop.time()
            if left <= 0:
                if write and maybe_sent:
                    raise Indeterminate(f"write outcome unknown after {self.timeout}s ({last})")
                tried = ", ".join(format_server(server) for server in self.servers)
                raise Unavailable(f"no answer within {self.timeout:g} s from {tried} ({last})")
            try:
                conn = await asyncio.wait_for(self._connection(), left)
                if write and epoch is not None and epoch != self._epoch:
                    continue
                maybe_sent = True
                reply = await asyncio.wait_for(conn.request(req), min(left, ATTEMPT_TIMEOUT))
            except (TimeoutError, OSError, ConnectionLost) as exc:
                last = f"{type(exc).__name__} {exc}".strip()
                if isinstance(exc, TimeoutError):
                    last = "no reply in time"
                if isinstance(exc, Refused):
                    refused[exc.server] = exc.reason
                else:  # slow, or reached: this server may yet answer
                    refused.pop(self.servers[self._server_index % len(self.servers)], None)
                if self._session:
                    self._set_state(SessionState.SUSPENDED)
                # Nothing to wait for, unless a server was reached once (this may be a
                # failover) or a session lives (its ephemerals matter: ride it out).
                if not (self._reached or self._session) and set(self.servers) <= refused.keys():
                    raise all_refused(self.servers, refused) from exc
                await self._failover()
                await asyncio.sleep(min(0.05, max(deadline - loop.time(), 0)))
                continue
            err = reply.get("err")
            if err == "Unavailable":
                last = str(reply.get("msg"))
                await self._failover()
                await asyncio.sleep(0.05)
                continue
            if err is not None:
                if err == "Indeterminate":
                    raise Indeterminate(str(reply.get("msg")))
                if err == "SessionExpired" and write and self._session:
                    self._lost()
                error = error_from_code(err, str(reply.get("msg")))
                index = reply.get("index")
                if type(index) is int:
                    raise MultiError(index, error)
                raise error
            return reply.get("ok")

    async def _write(self, op: Any) -> Any:
        data = encode_op(op)
        async with self._write_lock:  # one write at a time: applied in the order sent
            if self._closing:
                raise ConnectionLost("the client is closed")
            if not self._session:
                await self._open_session()
            self._seq += 1
            req = {"op": "write", "seq": self._seq, "data": data}
            return await self._call(req, True, self._epoch)

    async def _read(self, kind: str, path: str, local: bool, **extra: Any) -> Any:
        req = {
            "op": "read",
            "kind": kind,
            "path": path,
            "local": local,
            "min_zxid": self.last_zxid,
            **extra,
        }
        return await self._call(req, False)

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

    async def _fenced(self, op: Create | SetData | Delete, fence: tuple[str, int] | None) -> Any:
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

    async def delete(
        self, path: str, version: int = -1, *, fence: tuple[str, int] | None = None
    ) -> None:
        await self._fenced(Delete(path, version), fence)

    async def multi(self, ops: Sequence[Create | SetData | Delete | Check]) -> list[Any]:
        result: list[Any] = await self._write(Multi(tuple(ops)))
        return result

    # ------------------------------------------------------------------ reads

    async def get(self, path: str, *, local: bool = False) -> tuple[bytes, dict[str, Any]]:
        result = await self._read("get", path, local)
        return bytes(result["data"]), dict(result["stat"])

    async def exists(self, path: str, *, local: bool = False) -> dict[str, Any] | None:
        result = await self._read("exists", path, local)
        return dict(result) if result is not None else None

    async def stat(self, path: str, *, local: bool = False) -> dict[str, Any]:
        return dict(await self._read("stat", path, local))

    async def children(self, path: str, *, stats: bool = False, local: bool = False) -> Any:
        result = await self._read("children", path, local, stats=stats)
        return result if stats else list(result["children"])

    async def ephemerals(self, session: int | None = None) -> list[str]:
        """Paths of the ephemerals ``session`` (default: this client's) owns."""
        sid = self.client_id if session is None else session
        return list(await self._read("ephemerals", "/", False, session=sid))

    async def sessions(self) -> list[dict[str, Any]]:
        """Every open session: id, timeout and how many ephemerals it owns."""
        return list(await self._read("sessions", "/", False))

    async def sync(self) -> None:
        await self._call({"op": "sync"}, False)

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call({"op": "status"}, False)
        return result

    # ------------------------------------------------------------------ watches

    def _new_watch(self, path: str, mode: str) -> Watch:
        wid = self._next_wid
        self._next_wid += 1
        watch = Watch(wid, path, mode, self._cancel_watch)
        self._watches[wid] = watch
        return watch

    async def _cancel_watch(self, watch: Watch) -> None:
        self._watches.pop(watch.wid, None)
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(ClientError, ZnodeError, OSError, TimeoutError):
                await asyncio.wait_for(
                    self._conn.request({"op": "unwatch", "wid": watch.wid}), ATTEMPT_TIMEOUT
                )

    async def watch(self, path: str, *, recursive: bool = False, after: int | None = None) -> Watch:
        """A persistent watch on ``path`` (``recursive``: and its whole subtree).

        ``after`` replays the changes after that zxid that the servers still remember (a
        ``resync`` event says when they do not); by default, changes from now on.
        """
        watch = self._new_watch(path, "recursive" if recursive else "persistent")
        if after is not None:
            watch.last_zxid = after
        req = {"op": "watch", "wid": watch.wid, "path": path, "mode": watch.mode, "after": after}
        try:
            await self._call(req, False)
        except BaseException:
            self._watches.pop(watch.wid, None)
            raise
        watch.armed = True
        self._keep_alive()
        return watch

    async def _read_watch(self, kind: str, path: str, mode: str, **extra: Any) -> tuple[Any, Watch]:
        watch = self._new_watch(path, mode)
        try:
            result = await self._read(kind, path, False, watch=watch.wid, **extra)
        except BaseException:
            self._watches.pop(watch.wid, None)
            raise
        watch.armed = True
        self._keep_alive()
        return result, watch

    async def get_watch(self, path: str) -> tuple[bytes, dict[str, Any], Watch]:
        """``get`` plus a one-shot watch for the next change of the node's data or existence."""
        result, watch = await self._read_watch("get", path, "data")
        return bytes(result["data"]), dict(result["stat"]), watch

    async def exists_watch(self, path: str) -> tuple[dict[str, Any] | None, Watch]:
        """``exists`` plus a one-shot watch that fires when the node is created, changed or
        deleted (ZooKeeper's way to wait for a node to appear or to go)."""
        result, watch = await self._read_watch("exists", path, "data")
        return (dict(result) if result is not None else None), watch

    async def children_watch(self, path: str) -> tuple[list[str], Watch]:
        """``children`` plus a one-shot watch for the next change of the list."""
        result, watch = await self._read_watch("children", path, "children")
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
