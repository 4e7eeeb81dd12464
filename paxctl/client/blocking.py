"""A blocking driver of the client session for one-shot reads: plain sockets, no event loop.

``paxctl get`` asks one question and waits for one answer. Driving the session through
asyncio (client.py) costs such a command the import of asyncio and ssl and an event loop's
set-up, often more than the request itself. ``BlockingClient`` drives the same
``ClientSession`` (session.py decides everything: which server, failover, xids, the hello,
timeouts) with a socket, ``select`` and the monotonic clock, one connection at a time, in the
calling thread. It reads only: a write needs a session that lives while its client pings,
which is the asyncio client's business.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from paxctl.client.addresses import parse_servers
from paxctl.client.calls import (
    ATTEMPT_TIMEOUT,
    REFUSALS,
    children_result,
    exists_result,
    get_result,
    new_session,
    read,
)
from paxctl.client.session_types import CallFailed, Close, Completed, Connect, Link, Send
from paxctl.protocol.codec import ProtocolError, decode_from_server, encode_request
from paxctl.protocol.framing import FrameDecoder, FrameError, encode_frame


class BlockingClient:
    """``Client``'s reads, each run to its answer in the calling thread."""

    def __init__(self, servers: Sequence[tuple[str, int]] | str, timeout: float = 10.0) -> None:
        parsed = parse_servers(servers) if isinstance(servers, str) else list(servers)
        self.timeout = timeout
        self.connected_to: tuple[str, int] | None = None
        self._servers = parsed
        self._session = new_session(parsed, session_timeout=10.0, ping_interval=None)
        self._socks: dict[int, socket.socket] = {}
        self._decoders: dict[int, FrameDecoder] = {}
        self._ended: dict[int, tuple[bool, Any]] = {}  # call -> (ok, value or error)
        self._inputs: list[Callable[[float], None]] = []  # what the session hears next

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def last_zxid(self) -> int:
        return self._session.last_zxid

    def close(self) -> None:
        """End the connection (a client that only reads has no session to close)."""
        self._session.shutdown()
        self._pump()
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()

    # ------------------------------------------------------------------ reads

    def get(self, path: str, *, local: bool = False) -> tuple[bytes, dict[str, Any]]:
        return get_result(self._read("get", path, local))

    def exists(self, path: str, *, local: bool = False) -> dict[str, Any] | None:
        return exists_result(self._read("exists", path, local))

    def stat(self, path: str, *, local: bool = False) -> dict[str, Any]:
        return dict(self._read("stat", path, local))

    def children(self, path: str, *, stats: bool = False, local: bool = False) -> Any:
        return children_result(self._read("children", path, local, stats=stats), stats)

    def sync(self) -> None:
        self._request(self._session.sync)

    # ------------------------------------------------------------------ the driver

    def _read(self, kind: str, path: str, local: bool, **extra: Any) -> Any:
        return self._request(read(self._session, kind, path, local, **extra))

    def _request(self, make: Callable[[float, float], int]) -> Any:
        call = make(_now(), self.timeout * 1000)
        self._pump()
        while call not in self._ended:
            self._wait()
        ok, value = self._ended.pop(call)
        if not ok:
            raise value
        return value

    def _pump(self) -> None:
        """Act on what the session asks for; what that makes it hear (a connection opened or
        lost) is fed back in turn, as the asyncio client's tasks would, until nothing is left."""
        session = self._session
        while True:
            for out in session.take():
                if isinstance(out, Send):
                    self._send(out.conn, encode_frame(encode_request(out.request)))
                elif isinstance(out, Completed):
                    self._ended[out.call] = (True, out.value)
                elif isinstance(out, CallFailed):
                    self._ended[out.call] = (False, out.error)
                elif isinstance(out, Connect):
                    self._open(out.conn, out.server)
                elif isinstance(out, Close):
                    self._drop(out.conn)
                elif isinstance(out, Link) and out.up:
                    self.connected_to = self._servers[out.server % len(self._servers)]
            if not self._inputs:
                return
            inputs, self._inputs = self._inputs, []
            for event in inputs:
                event(_now())

    def _open(self, conn: int, server: int) -> None:
        host, port = self._servers[server % len(self._servers)]
        session = self._session
        due = session.next_deadline()  # the connect's own deadline, or the call's if sooner
        limit = ATTEMPT_TIMEOUT if due is None else (due - _now()) / 1000
        try:
            sock = _connect(host, port, min(ATTEMPT_TIMEOUT, max(0.001, limit)))
        except _Refused as exc:
            reason = str(exc)
            self._inputs.append(lambda now: session.connect_failed(now, conn, reason))
            return
        except OSError:  # a timeout, or a connect that may work another time
            self._inputs.append(lambda now: session.connect_failed(now, conn))
            return
        self._socks[conn] = sock
        self._decoders[conn] = FrameDecoder()
        self._inputs.append(lambda now: session.connected(now, conn))

    def _send(self, conn: int, data: bytes) -> None:
        sock = self._socks.get(conn)
        if sock is None:
            return
        try:
            sock.sendall(data)
        except OSError:
            self._lost(conn)

    def _drop(self, conn: int) -> None:
        sock = self._socks.pop(conn, None)
        self._decoders.pop(conn, None)
        if sock is not None:
            sock.close()

    def _lost(self, conn: int) -> None:
        if conn in self._socks:
            self._drop(conn)
            self._inputs.append(lambda now: self._session.connection_lost(now, conn))

    def _wait(self) -> None:
        """Wait for the next frame or the session's next deadline, and feed it in."""
        due = self._session.next_deadline()
        wait = None if due is None else max(0.0, (due - _now()) / 1000)
        socks = list(self._socks.items())
        if not socks and wait is None:
            raise RuntimeError("the client session waits for nothing")  # a bug, never a hang
        readable = select.select([s for _, s in socks], [], [], wait)[0]
        for conn, sock in socks:
            if sock in readable:
                self._receive(conn, sock)
        if not readable:
            now = _now()
            self._session.tick(now if due is None else max(now, due))
        self._pump()

    def _receive(self, conn: int, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError
            for payload in self._decoders[conn].feed(data):
                self._session.frame(_now(), conn, decode_from_server(payload))
                self._pump()
                if conn not in self._socks:  # the session closed it: the rest is not read
                    return
        except (OSError, FrameError, ProtocolError):
            self._lost(conn)


class _Refused(OSError):
    """Every address of the server refused the connection or was unreachable (the reasons)."""


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """A connected socket to ``host:port``, trying each of its addresses (as ``open_stream``
    in connection.py): ``_Refused`` when every one refused or the name did not resolve."""
    # An ASCII name as bytes: as text, getaddrinfo encodes every host with the idna codec,
    # whose import (unicodedata, stringprep) costs more than the lookup of a literal address.
    name = host.encode() if host.isascii() else host
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise _Refused(f"cannot resolve {host}: {exc.strerror}") from exc
    reasons: list[str] = []
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            reason = REFUSALS.get(exc.errno or 0)
            if reason is None:
                raise
            reasons.append(reason)
            continue
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise _Refused("; ".join(dict.fromkeys(reasons)) or f"no address for {host}")


def _now() -> float:
    return time.monotonic() * 1000
