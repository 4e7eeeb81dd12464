"""The client port's connections, each with bounded memory, time and descriptors.

``ClientPort`` accepts connections (refusing, at once, those over ``Connections``' limits) and
``ClientConnection`` frames one of them, enforcing per connection:

* a small frame limit until the client's hello (a stranger cannot pin 4 MiB with an unfinished
  frame) and a deadline for that hello;
* an idle timeout: without a session, a connection that sends nothing for ``idle_timeout_ms``
  is closed; with one, the session's own timeout governs (its client pings at a third of it),
  so such a connection is only closed after ``idle_timeout_ms + max_session_ms`` of silence;
* backpressure: when the kernel cannot take what the node writes (``pause_writing``), the node
  stops reading that client's requests; the client is dropped when its queue would pass
  ``max_queued_bytes`` or stays full for ``write_stall_ms``. Other clients never wait for it.

Every refusal or drop a stranger can cause is logged through ``Throttle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import cast

from paxctl.protocol.framing import MAX_FRAME, FrameDecoder, FrameError, encode_frame
from paxctl.server.limits import ACCEPT_BURST, Connections, Limits
from paxctl.server.logthrottle import Throttle

log = logging.getLogger("paxctl.clients")

#: Writes queue up to this much before the node stops reading that client's requests.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
#: After an accept failed for lack of descriptors (or memory), accepting resumes this late.
ACCEPT_RETRY_S = 0.5
#: A connection closed with a notice that it does not read is cut off this much later.
CLOSE_GRACE_S = 2.0
#: SO_LINGER on, timeout 0: close() resets the connection at once.
_LINGER_RESET = struct.pack("ii", 1, 0)


def _now() -> float:
    return time.monotonic()


class ClientPort:
    """What all client connections of one node share: limits, counts and the log throttle."""

    def __init__(
        self,
        limits: Limits,
        connections: Connections,
        on_payload: Callable[[ClientConnection, bytes], None],
        on_lost: Callable[[ClientConnection], None],
        *,
        session_slack_ms: int = 0,
        refusal: Callable[[str], bytes] | None = None,
    ) -> None:
        self.limits = limits
        self.connections = connections
        self.on_payload = on_payload
        self.on_lost = on_lost
        #: Extra silence allowed to a connection with a session (the longest session timeout).
        self.session_slack_ms = session_slack_ms
        #: The payload sent to a refused connection before it is closed (a clear error).
        self.refusal = refusal
        self.throttle = Throttle(log)
        self.dropped = 0
        self._listener: socket.socket | None = None
        self._starting: set[asyncio.Task[object]] = set()

    def protocol(self) -> ClientConnection:
        """A factory for ``loop.create_server`` (each connection is counted when made)."""
        return ClientConnection(self)

    # ------------------------------------------------------------------ accepting

    def listen(self, host: str, port: int) -> None:
        """Listen on ``host:port`` and accept here, one connection at a time, each counted
        (or refused and closed) as it is accepted. asyncio's own accept loop takes up to a
        backlog of sockets before the node sees any, which can overshoot the descriptor
        budget; and it logs a traceback for every accept that fails for lack of one."""
        loop = asyncio.get_running_loop()
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=ACCEPT_BURST)
        sock.setblocking(False)
        self._listener = sock
        loop.add_reader(sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting (the connections open stay until the node stops)."""
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None

    def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        listener = self._listener
        for _ in range(ACCEPT_BURST):
            if listener is None:
                return
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # out of descriptors or memory: wait, then try again
                self.throttle.error(
                    "accept",
                    "cannot accept client connections: %s (trying again in %g s; the "
                    "connections open are served)",
                    exc.strerror or exc,
                    ACCEPT_RETRY_S,
                )
                loop.remove_reader(listener.fileno())
                loop.call_later(ACCEPT_RETRY_S, self._resume_accepting, listener)
                return
            self._admit(loop, sock, str(addr[0]), f"{addr[0]}:{addr[1]}")

    def _resume_accepting(self, listener: socket.socket) -> None:
        if self._listener is listener:
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)

    def _admit(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, address: str, name: str
    ) -> None:
        refused = self.connections.admit(address, sock.fileno())
        if refused is not None:
            self.warn("refused " + address, "client %s refused: %s", name, refused)
            with contextlib.suppress(OSError):
                sock.setblocking(False)
                if self.refusal is not None:
                    sock.send(encode_frame(self.refusal(f"connection refused: {refused}")))
            sock.close()
            return
        sock.setblocking(False)
        # Replies go out at once (asyncio sets this only for sockets made with proto 6; ours
        # come from a listener made with proto 0). Without it, a reply written just after
        # a watch event of the same connection waited for the client's delayed ACK: 40 ms.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = ClientConnection(self, counted_as=address)
        task = loop.create_task(loop.connect_accepted_socket(lambda: conn, sock))
        self._starting.add(task)
        task.add_done_callback(lambda t: self._started(t, conn, sock))

    def _started(
        self, task: asyncio.Task[object], conn: ClientConnection, sock: socket.socket
    ) -> None:
        self._starting.discard(task)
        if task.cancelled() or task.exception() is not None:
            sock.close()
            conn.connection_lost(None)  # uncounts it

    def warn(self, key: str, msg: str, *args: object) -> None:
        self.throttle.warning(key, msg, *args)


class ClientConnection(asyncio.Protocol):
    """One client connection: payloads in through the port's ``on_payload``, frames out
    through ``send``; closed with a (throttled) logged reason when it breaks a limit."""

    def __init__(self, port: ClientPort, counted_as: str | None = None) -> None:
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.label = "client"
        self.peer_name = "?"
        self.address = counted_as or "?"
        self.state: object = None  # the node's number for this connection
        self.greeted = False  # a hello arrived: the full frame limit applies
        self.session = False  # it has (or is opening) a session: its timeout governs silence
        # Counted by the port as it accepted it (``counted_as``: its address), or on connect.
        self._counted = counted_as is not None
        self._decoder = FrameDecoder(port.limits.max_hello_bytes)
        self._born = self._last_rx = _now()
        self._timer: asyncio.TimerHandle | None = None
        self._paused_since: float | None = None

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is one without subclassing asyncio.Transport).
        self.transport = transport = cast(asyncio.Transport, base)
        peer = transport.get_extra_info("peername")
        if peer:
            self.address = str(peer[0])
            self.peer_name = f"{peer[0]}:{peer[1]}"
        port = self.port
        sock = transport.get_extra_info("socket")
        refused = None
        if not self._counted:
            refused = port.connections.admit(self.address, sock.fileno() if sock else -1)
        if refused is not None:
            port.warn("refused " + self.address, "client %s refused: %s", self.peer_name, refused)
            if port.refusal is not None:
                transport.write(encode_frame(port.refusal(f"connection refused: {refused}")))
            transport.close()
            return
        self._counted = True
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self._arm(port.limits.hello_timeout_ms / 1000)

    def data_received(self, data: bytes) -> None:
        self._last_rx = _now()
        try:
            payloads = self._decoder.feed(data)
        except FrameError as exc:
            when = " before its hello" if not self.greeted else ""
            self.close(f"bad frame{when}: {exc}", key="bad frame", tell=True)
            return
        for payload in payloads:
            if not self.open:
                return
            self.port.on_payload(self, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._disarm()
        if self._counted:
            self._counted = False
            self.port.connections.release(self.address)
            self.port.on_lost(self)

    def pause_writing(self) -> None:
        """The client does not read as fast as we write: stop reading its requests."""
        if self.transport is None:
            return
        self._paused_since = _now()
        self.transport.pause_reading()
        self._arm(self.port.limits.write_stall_ms / 1000)

    def resume_writing(self) -> None:
        self._paused_since = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._arm(0)  # back to the hello or idle deadline

    # ------------------------------------------------------------------ the node's side

    def hello(self, session: bool) -> None:
        """The client said hello (``session``: resuming one): lift the pre-hello limit."""
        if not self.greeted:
            self.greeted = True
            self._decoder.max_frame = MAX_FRAME
            self._arm(0)
        self.session = self.session or session

    def opening_session(self) -> None:
        self.session = True

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, payload: bytes) -> bool:
        """Queue one frame; False (and the connection dropped) when the client lets its
        queue grow past the limit."""
        return self.send_many((payload,))

    def send_many(self, payloads: Iterable[bytes]) -> bool:
        """Queue frames, in order, with one write (a pass's events and replies for this
        connection cost one send call); False if one could not be framed (those before it
        are queued, none after: the order of events and replies holds) or if the client
        lets its queue grow past the limit (the connection is dropped).

        The limit is checked as if each frame were written alone: what is gathered is written
        before a frame would pass it (the kernel may take it at once), then that frame is
        checked against what is still queued. A large push split into many frames is not
        taken for a client that does not read."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        limit = self.port.limits.max_queued_bytes
        queued = transport.get_write_buffer_size()
        frames: list[bytes] = []
        size = 0
        for payload in payloads:
            try:
                frame = encode_frame(payload, MAX_FRAME)
            except FrameError as exc:
                log.error("client %s: not sent: %s", self.peer_name, exc)
                self._write(transport, frames)
                return False
            if queued + size + len(frame) > limit:
                if frames:
                    self._write(transport, frames)
                    frames, size = [], 0
                    queued = transport.get_write_buffer_size()
                if queued + len(frame) > limit:
                    self.close(
                        f"it does not read its replies ({queued} bytes queued; limit {limit})",
                        key="queue full",
                    )
                    return False
            frames.append(frame)
            size += len(frame)
        self._write(transport, frames)
        return True

    @staticmethod
    def _write(transport: asyncio.Transport, frames: list[bytes]) -> None:
        if len(frames) == 1:
            transport.write(frames[0])
        elif frames:
            transport.write(b"".join(frames))

    def close(self, reason: str | None = None, key: str | None = None, tell: bool = False) -> None:
        """Close, logging ``reason`` (throttled by ``key``); ``tell``: first send the client
        an error frame saying why (not to one that does not read: it is cut off at once)."""
        if reason and self.open:
            self.port.dropped += 1
            self.port.warn(key or reason, "client %s: closing: %s", self.peer_name, reason)
        if self.transport is None:
            return
        refusal = self.port.refusal
        transport = self.transport
        if (
            tell
            and reason
            and refusal is not None
            and not transport.is_closing()
            and transport.get_write_buffer_size() == 0
        ):
            # A close waits for the write buffer to drain: one the client never reads would
            # hold its descriptor and slot for good, so the notice goes only to an empty
            # queue, and the connection is cut off if even that is not read soon.
            transport.write(encode_frame(refusal(f"connection closed: {reason}")))
            transport.close()
            asyncio.get_running_loop().call_later(CLOSE_GRACE_S, transport.abort)
        else:
            # Reset, dropping what the kernel still holds for it (up to its send buffer): a
            # client that does not read would otherwise keep that memory after the close.
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            self.transport.abort()

    # ------------------------------------------------------------------ deadlines

    def _arm(self, delay_s: float) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay_s), self._check)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        """Whichever deadline applies now: a stalled queue, the hello, or silence."""
        self._timer = None
        if not self.open:
            return
        limits, now = self.port.limits, _now()
        if self._paused_since is not None:
            stall = limits.write_stall_ms / 1000
            if now - self._paused_since >= stall:
                self.close(
                    f"its replies stayed unread for {limits.write_stall_ms} ms", key="stalled"
                )
            else:
                self._arm(self._paused_since + stall - now)
            return
        if not self.greeted:  # the hello deadline counts from the connection's start
            deadline = self._born + limits.hello_timeout_ms / 1000
            if now >= deadline:
                reason = f"no hello within {limits.hello_timeout_ms} ms"
                self.close(reason, key="no hello", tell=True)
            else:
                self._arm(deadline - now)
            return
        idle_ms = limits.idle_timeout_ms + (self.port.session_slack_ms if self.session else 0)
        quiet = now - self._last_rx
        if quiet >= idle_ms / 1000:
            self.close(f"nothing received for {idle_ms} ms", key="idle", tell=True)
        else:
            self._arm(idle_ms / 1000 - quiet)
