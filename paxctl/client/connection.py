"""One TCP connection to one server: typed requests encoded out, frames decoded in, in order.

A single reader hands every frame to the client in arrival order: watch events and session
notices reach the session (session.py) before any later answer, which is what lets the client
promise that an event is seen before the reply of any later request. Which request an answer
belongs to (xids) is the session's business, not this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from paxctl.client.calls import REFUSALS
from paxctl.client.errors import (
    ClientError,
    ConnectionLost,
    Indeterminate,
    Refused,
    Unavailable,
    all_refused,
)
from paxctl.protocol.codec import ProtocolError, decode_from_server, encode_request
from paxctl.protocol.framing import FrameDecoder, FrameError, encode_frame
from paxctl.protocol.messages import FromServer, Request


async def open_stream(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``host:port``, trying each of its addresses; ``Refused`` when every one of
    them refused or was unreachable, or the name did not resolve.

    The addresses are tried here rather than by ``open_connection`` because Python 3.11 folds
    several failed addresses (``localhost``: ::1 and 127.0.0.1) into one OSError without an
    errno, which would hide that every one of them was refused.
    """
    try:
        infos = await _addresses(host, port)
    except socket.gaierror as exc:
        raise Refused((host, port), f"cannot resolve {host}: {exc.strerror}") from exc
    reasons: list[str] = []
    last: OSError | None = None
    for family, _, _, _, address in infos:
        try:
            return await asyncio.open_connection(str(address[0]), port, family=family)
        except OSError as exc:
            last = exc
            reason = REFUSALS.get(exc.errno or 0)
            if reason is None:
                raise
            reasons.append(reason)
    if last is None:
        raise Refused((host, port), f"no address for {host}")
    raise Refused((host, port), "; ".join(dict.fromkeys(reasons))) from last


async def _addresses(host: str, port: int) -> list[Any]:
    """``getaddrinfo`` for ``host``: at once for a literal address (``127.0.0.1``, ``::1``),
    which needs no lookup; a name goes to the loop's resolver thread. Starting that thread
    cost a one-shot ``paxctl get`` 4-10 ms on a busy machine, for nothing to resolve."""
    numeric = socket.AI_NUMERICHOST
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=numeric)
    except socket.gaierror:  # a name, not an address
        loop = asyncio.get_running_loop()
        return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)


class Connection:
    """Frames over one connection: typed requests out, typed frames in, in arrival order.

    Every frame is decoded (``decode_from_server``) and handed to ``on_frame`` in the order it
    arrived, so the session sees watch events before any later answer. A frame that breaks the
    protocol ends the connection. ``on_closed`` is called once when the connection ends other
    than by ``abort``/``close``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_frame: Callable[[FromServer], None],
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_frame = on_frame
        self._on_closed = on_closed
        self.closed = False
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        decoder = FrameDecoder()
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for payload in decoder.feed(data):
                    self._on_frame(decode_from_server(payload))
                    if self.closed:
                        return
        except (OSError, FrameError, ProtocolError):
            pass
        finally:
            self._ended()

    def _ended(self) -> None:
        if not self.closed and self._on_closed is not None:
            self._on_closed()  # once, when the connection ends for whatever reason
        self.closed = True
        self._writer.close()

    def send(self, req: Request) -> None:
        if not self.closed:
            self._writer.write(encode_frame(encode_request(req)))

    def abort(self) -> None:
        """Close on purpose: nobody needs telling."""
        self._on_closed = None
        self.closed = True
        if asyncio.current_task() is not self._task:
            self._task.cancel()
        self._writer.close()

    async def close(self) -> None:
        self.abort()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


__all__ = [
    "ClientError",
    "Connection",
    "ConnectionLost",
    "Indeterminate",
    "Refused",
    "Unavailable",
    "all_refused",
    "open_stream",
]
