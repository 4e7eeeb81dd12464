"""Reading a client port the way attack and limit tests need: until the node closes it.

A client port that refuses or drops a connection first sends one frame saying why (an
``Unavailable`` error with xid 0, the closing notice), then closes; a client that does not read
is reset without one. Shared by test_hostile_input.py and test_resource_limits.py.
"""

from __future__ import annotations

import socket
import time

import msgpack

from paxctl.protocol.framing import FrameDecoder


def read_until_closed(sock: socket.socket, timeout: float = 5) -> tuple[bytes, float]:
    """Everything the node sends on ``sock`` until it closes it, and when it did; fails if it
    is still open after ``timeout`` seconds."""
    received, deadline = b"", time.monotonic() + timeout
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            port = sock.getpeername()[1]
            raise AssertionError(f"port {port} left the connection open") from None
        if not data:
            return received, time.monotonic()
        received += data


def closing_notice(
    sock: socket.socket, timeout: float = 5, *, alone: bool = False
) -> tuple[str, float]:
    """Wait for the node to close ``sock``: (the reason its closing notice gave, when).
    ``alone``: nothing else may come before the notice."""
    received, closed = read_until_closed(sock, timeout)
    payloads = FrameDecoder().feed(received)
    assert payloads, "closed without a notice"
    assert not alone or len(payloads) == 1, "data before the closing notice"
    notice = msgpack.unpackb(payloads[-1], raw=False)
    assert notice["xid"] == 0 and notice["err"] == "Unavailable", notice
    return str(notice["msg"]), closed
