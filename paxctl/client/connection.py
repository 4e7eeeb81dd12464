"""One TCP connection to one server: requests matched to answers by xid, pushes handed on.

A single reader handles every frame in arrival order: watch events and session notices are
passed to ``on_push`` before any later answer resolves its request, which is what lets the
client promise that an event is seen before the reply of any later request.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable
from typing import Any

import msgpack

from paxctl.client.addresses import format_server
from paxctl.protocol.framing import FrameDecoder, FrameError, encode_frame


class ClientError(Exception):
    """Base of the errors that are about the cluster, not about the data."""

    code = "Error"


class Unavailable(ClientError):
    """No server could serve the request before the deadline; nothing was changed."""

    code = "Unavailable"


class Indeterminate(ClientError):
    """A write's fate is unknown: it may or may not have taken effect."""

    code = "Indeterminate"


class ConnectionLost(ClientError):
    code = "ConnectionLost"


class Refused(ConnectionLost):
    """A server that cannot be connected to at all: nothing listens there (the connection
    was refused), the host is unreachable, or its name does not resolve. Unlike a timeout
    this is known at once, so a client that never reached any server can give up early."""

    def __init__(self, server: tuple[str, int], reason: str) -> None:
        super().__init__(f"{format_server(server)} ({reason})")
        self.server = server
        self.reason = reason


def all_refused(servers: list[tuple[str, int]], refused: dict[tuple[str, int], str]) -> Unavailable:
    """The error for a client that no server would even accept: each one named, with why."""
    tried = ", ".join(f"{format_server(s)} ({refused[s]})" for s in dict.fromkeys(servers))
    return Unavailable(f"no server accepted a connection: {tried}")


#: errno values of a connect that failed for good (as opposed to a slow or busy server).
_REFUSALS = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EADDRNOTAVAIL: "address not available",
}


async def open_stream(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``host:port``, trying each of its addresses; ``Refused`` when every one of
    them refused or was unreachable, or the name did not resolve.

    The addresses are tried here rather than by ``open_connection`` because Python 3.11 folds
    several failed addresses (``localhost``: ::1 and 127.0.0.1) into one OSError without an
    errno, which would hide that every one of them was refused.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused((host, port), f"cannot resolve {host}: {exc.strerror}") from exc
    reasons: list[str] = []
    last: OSError | None = None
    for family, _, _, _, address in infos:
        try:
            return await asyncio.open_connection(str(address[0]), port, family=family)
        except OSError as exc:
            last = exc
            reason = _REFUSALS.get(exc.errno or 0)
            if reason is None:
                raise
            reasons.append(reason)
    if last is None:
        raise Refused((host, port), f"no address for {host}")
    raise Refused((host, port), "; ".join(dict.fromkeys(reasons))) from last


class Connection:
    """Requests and answers over one connection; ``on_push`` gets frames without an xid."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_push: Callable[[dict[str, Any]], None],
        on_zxid: Callable[[int], None],
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_push = on_push
        self._on_zxid = on_zxid
        self._on_closed = on_closed
        #: Set by the client once its hello was accepted. Until then no zxid counts as seen:
        #: a refused hello's answer must not move the point the watches resume from.
        self.ready = False
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_xid = 1
        self._task = asyncio.get_running_loop().create_task(self._read_loop())
        self.closed = False

    async def _read_loop(self) -> None:
        decoder = FrameDecoder()
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for payload in decoder.feed(data):
                    frame = msgpack.unpackb(payload, raw=False)
                    if type(frame) is not dict:
                        raise ValueError("a frame from the server must be a map")
                    xid = frame.get("xid")
                    if xid is None:
                        self._on_push(frame)
                    future = self._waiting.pop(xid, None) if xid is not None else None
                    if future is not None and not future.done():
                        future.set_result(frame)
                    zxid = frame.get("zxid")
                    if type(zxid) is int and self.ready:
                        self._on_zxid(zxid)
        except (OSError, FrameError, ValueError, msgpack.UnpackException):
            pass
        finally:
            self._fail_all()

    def _fail_all(self) -> None:
        if not self.closed and self._on_closed is not None:
            self._on_closed()  # once, when the connection ends for whatever reason
        self.closed = True
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionLost("connection lost"))
        self._waiting.clear()

    async def request(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.closed:
            raise ConnectionLost("connection closed")
        xid = self._next_xid
        self._next_xid += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[xid] = future
        try:  # a write that raises (even Ctrl-C inside send) must not leave the future behind
            self._writer.write(encode_frame(msgpack.packb({**req, "xid": xid}, use_bin_type=True)))
            return await future
        finally:
            self._waiting.pop(xid, None)

    async def close(self) -> None:
        self._on_closed = None  # closed on purpose: nobody needs waking
        self.closed = True
        self._task.cancel()
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._fail_all()
