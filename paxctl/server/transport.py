"""Framed connections over asyncio, with no task per message.

``FramedProtocol`` turns a TCP stream into payload callbacks through ``FrameDecoder``; a bad
frame closes that connection with a logged reason and never reaches the node. ``PeerLink``
keeps one outbound connection to a peer, reconnecting with capped exponential backoff and
dropping (not queueing without bound) what it cannot send: the consensus core retransmits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from typing import cast

from paxctl.protocol.framing import (
    MAX_FRAME,
    FrameDecoder,
    FrameError,
    encode_frame,
)

log = logging.getLogger("paxctl.transport")

#: Bytes a peer link may hold unsent before it starts dropping messages.
MAX_PENDING_BYTES = 16 * 1024 * 1024


class FramedProtocol(asyncio.Protocol):
    """One connection: payloads in through ``on_payload``, frames out through ``send``."""

    def __init__(
        self,
        on_payload: Callable[[FramedProtocol, bytes], None],
        on_lost: Callable[[FramedProtocol], None] | None = None,
        label: str = "connection",
        max_frame: int = MAX_FRAME,
    ) -> None:
        self._on_payload = on_payload
        self._on_lost = on_lost
        self._max_frame = max_frame
        self._decoder = FrameDecoder(max_frame)
        self.transport: asyncio.Transport | None = None
        self.label = label
        self.peer_name = "?"
        self.state: object = None  # whatever the owner wants to remember about this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is one without subclassing asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_name = f"{peer[0]}:{peer[1]}" if peer else "?"

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self._decoder.feed(data)
        except FrameError as exc:
            self.close(f"bad frame from {self.peer_name}: {exc}")
            return
        for payload in payloads:
            if self.transport is None or self.transport.is_closing():
                return
            self._on_payload(self, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._on_lost is not None:
            self._on_lost(self)

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, payload: bytes) -> bool:
        """Queue one frame; False if the connection is gone or too far behind."""
        if not self.writable:
            return False
        frame = self._frame(self._seal(payload))
        if frame is None:
            self._unseal()
            return False
        self._write([frame])
        return True

    def send_many(self, payloads: Iterable[bytes]) -> int:
        """Queue frames, in order, with one write (one send call for a pass's messages to
        this peer, not one each); how many were queued: none if the connection is gone or
        too far behind, fewer if one was too large for a frame (it is logged and skipped)."""
        if not self.writable:
            return 0
        frames: list[bytes] = []
        size = sent = 0
        for payload in payloads:
            frame = self._frame(self._seal(payload))
            if frame is None:
                self._unseal()
                continue
            if frames and size + len(frame) > MAX_PENDING_BYTES:
                # As if sent one by one: what is gathered goes, then the queue is checked.
                self._write(frames)
                sent += len(frames)
                frames, size = [], 0
                if not self.writable:
                    self._unseal()
                    return sent
            frames.append(frame)
            size += len(frame)
        self._write(frames)
        return sent + len(frames)

    def _seal(self, payload: bytes) -> bytes:
        """What a payload becomes on this connection (a peer connection adds its MAC)."""
        return payload

    def _unseal(self) -> None:
        """Take back the last ``_seal``: its frame never left."""

    @property
    def writable(self) -> bool:
        """Open and not too far behind: what is sent now is queued."""
        transport = self.transport
        return (
            transport is not None
            and not transport.is_closing()
            and transport.get_write_buffer_size() <= MAX_PENDING_BYTES
        )

    def _frame(self, payload: bytes) -> bytes | None:
        try:
            return encode_frame(payload, self._max_frame)
        except FrameError as exc:
            log.error("%s: not sent: %s", self.label, exc)
            return None

    def _write(self, frames: list[bytes]) -> None:
        assert self.transport is not None
        if len(frames) == 1:
            self.transport.write(frames[0])
        elif frames:
            self.transport.write(b"".join(frames))

    def close(self, reason: str | None = None) -> None:
        if reason:
            log.warning("%s: closing: %s", self.label, reason)
        if self.transport is not None:
            self.transport.close()


#: The longest pause between two attempts to connect to a peer.
MAX_PAUSE_S = 2.0


class PeerLink:
    """The outbound connection to one peer, kept up by one task."""

    def __init__(
        self,
        peer_id: int,
        host: str,
        port: int,
        make_connection: Callable[[], FramedProtocol],
        rng: random.Random,
        first_pause: float = 0.05,
    ) -> None:
        self.peer_id = peer_id
        self._first_pause = first_pause  # after a failed connect; doubled up to MAX_PAUSE_S
        self.host = host
        self.port = port
        self._make_connection = make_connection  # it authenticates itself, then sends
        self._rng = rng
        self._conn: FramedProtocol | None = None
        self._lost = asyncio.Event()
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.failed_connects = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            self._conn.close()

    def send(self, payload: bytes) -> None:
        if self._conn is None or not self._conn.send(payload):
            self.dropped += 1

    def send_many(self, payloads: list[bytes]) -> None:
        """Send several messages, in order, with one write."""
        sent = 0 if self._conn is None else self._conn.send_many(payloads)
        self.dropped += len(payloads) - sent

    async def _run(self) -> None:
        delay = self._first_pause
        loop = asyncio.get_running_loop()
        while True:
            self._lost.clear()
            self._poked.clear()  # a poke while this attempt is under way counts for its retry
            try:
                _, proto = await loop.create_connection(self._make_connection, self.host, self.port)
            except OSError:
                self.failed_connects += 1
                pause = delay * (0.5 + self._rng.random())
                delay = min(delay * 2, max(MAX_PAUSE_S, self._first_pause))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poked.wait(), pause)
                    delay = self._first_pause  # the peer is up now: forget the back-off
                continue
            delay = self._first_pause
            self._conn = proto
            await self._lost.wait()
            self._conn = None

    def poke(self) -> None:
        """The peer just showed it is up (its own connection to us authenticated): if this
        link is waiting out a back-off, try again now. At boot the nodes start at different
        moments, and the back-off of the first to start would otherwise delay its link (and
        the first election, whose answers travel on it) by up to the longest pause."""
        if self._conn is None:
            self._poked.set()

    def connection_lost(self) -> None:
        """To be called by the connection ``make_connection`` made when it is lost."""
        self._lost.set()
