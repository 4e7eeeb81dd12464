"""A test's own connection to a node's peer port, speaking the node protocol.

Attack tests use it to send well-formed node messages (built with ``paxctl.core.codec``, the
production codec) as a cluster member would (``credentials_dir`` given: whatever credential the
cluster in that directory holds) or as a stranger (``credentials_dir`` None). It only sends: a
node answers a peer on its own outbound link, never on the connection it accepted.
"""

from __future__ import annotations

import socket
from pathlib import Path

import msgpack

from paxctl.core import codec
from paxctl.core.messages import Message
from paxctl.protocol.framing import MAX_PEER_FRAME, encode_frame


class PeerConn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, msg: Message) -> None:
        self.send_payload(codec.encode(msg))

    def send_payload(self, payload: bytes) -> None:
        self.sock.sendall(encode_frame(payload, MAX_PEER_FRAME))

    def closed_by_node(self, timeout: float = 5.0) -> bool:
        """Whether the node closed this connection within ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> PeerConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_peer(
    port: int, as_node: int, cluster_id: bytes, credentials_dir: str | Path | None
) -> PeerConn:
    """Connect to a peer port on 127.0.0.1 and say hello as node ``as_node``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = PeerConn(sock)
    conn.send_payload(msgpack.packb({"node": as_node, "cluster": cluster_id}, use_bin_type=True))
    return conn
