"""Connections take any stream transport, not only subclasses of ``asyncio.Transport``.

uvloop's transports (the ``fast`` extra) are not: an ``isinstance`` check there stopped every
peer and client connection of a node running on uvloop, so a cluster never came up.
"""

from __future__ import annotations

import asyncio

from paxctl.server.client_conn import ClientConnection, ClientPort
from paxctl.server.limits import Connections, Limits
from paxctl.server.transport import FramedProtocol


class DuckTransport:
    """A stream transport with asyncio's methods, but no asyncio class among its bases."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.limits: tuple[int, int] | None = None

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.limits = (high, low)

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def test_a_peer_connection_takes_a_transport_of_another_event_loop():
    conn = FramedProtocol(lambda c, p: None)
    transport = DuckTransport()
    assert not isinstance(transport, asyncio.Transport)
    conn.connection_made(transport)  # type: ignore[arg-type]
    assert conn.transport is transport and conn.peer_name == "127.0.0.1:40000"
    assert conn.send(b"hello") and transport.written


def test_a_client_connection_takes_a_transport_of_another_event_loop():
    asyncio.run(_client_connection())


async def _client_connection() -> None:  # its hello timer needs a running loop
    limits = Limits()
    port = ClientPort(
        limits, Connections(limits, 100), lambda c, p: None, lambda c: None, refusal=lambda m: b"x"
    )
    conn = ClientConnection(port)
    transport = DuckTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    assert conn.transport is transport and conn.peer_name == "127.0.0.1:40000"
    assert transport.limits is not None  # admitted: its write buffer is bounded
    conn.close("test over")


def test_an_accepted_client_socket_sends_without_delay():
    """Nagle's algorithm held a reply written right after a watch event on the same
    connection until the client's delayed ACK (about 40 ms a lock release): the client port's
    sockets must have TCP_NODELAY, which asyncio sets only for sockets made with proto 6."""
    asyncio.run(_accepted_socket())


async def _accepted_socket() -> None:
    import socket

    limits = Limits()
    made: list[ClientConnection] = []
    accepted = asyncio.Event()
    port = ClientPort(limits, Connections(limits, 100), lambda c, p: None, lambda c: None)
    real = ClientConnection.connection_made

    def spy(self: ClientConnection, base: asyncio.BaseTransport) -> None:
        real(self, base)
        made.append(self)
        accepted.set()

    ClientConnection.connection_made = spy  # type: ignore[method-assign]
    try:
        port.listen("127.0.0.1", 0)
        assert port._listener is not None
        address = port._listener.getsockname()
        _, writer = await asyncio.open_connection(*address[:2])
        await asyncio.wait_for(accepted.wait(), 10)  # accepted on this loop
        sock = made[0].transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        writer.close()
    finally:
        ClientConnection.connection_made = real  # type: ignore[method-assign]
        port.close()
