"""A test's own connection to a node's peer port, speaking the node protocol.

Attack tests use it to send well-formed node messages (built with ``paxctl.core.codec``, the
production codec) as a cluster member would (``credentials_dir`` given: the cluster directory,
whose ``cluster.secret`` it proves it holds, as a node does) or as a stranger (``credentials_dir``
None: it knows everything public, the cluster id and the members, and makes up a secret; the
node refuses it at the handshake). It only sends: a node answers a peer on its own outbound
link, never on the connection it accepted.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from paxctl.core import codec
from paxctl.core.messages import Message
from paxctl.protocol.framing import MAX_PEER_FRAME, FrameDecoder, encode_frame
from paxctl.protocol.peer_auth import NONCE_SIZE, SECRET_SIZE, AuthRefused, Channel, Handshake
from paxctl.server.secret import SECRET_FILE, load_secret


class PeerConn:
    def __init__(self, sock: socket.socket, channel: Channel | None) -> None:
        self.sock = sock
        self.channel = channel  # None for a stranger: its frames carry no valid MAC

    @property
    def authenticated(self) -> bool:
        return self.channel is not None

    def send(self, msg: Message) -> None:
        self.send_payload(codec.encode(msg))

    def send_payload(self, payload: bytes) -> None:
        """Send one message payload, with its MAC when this connection is authenticated."""
        self.send_raw(self.seal(payload) if self.channel is not None else payload)

    def seal(self, payload: bytes) -> bytes:
        """The frame payload (MAC and message) the node expects next; for tampering tests."""
        assert self.channel is not None, "a stranger has no MAC key"
        return self.channel.seal(payload)

    def send_raw(self, frame_payload: bytes) -> None:
        """Send a frame whose payload is exactly ``frame_payload`` (no MAC added)."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(encode_frame(frame_payload, MAX_PEER_FRAME))

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


def _next_payload(sock: socket.socket, decoder: FrameDecoder, pending: list[bytes]) -> bytes | None:
    """The next frame's payload from the node, or None if it closed the connection."""
    while not pending:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return None
        if not data:
            return None
        pending += decoder.feed(data)
    return pending.pop(0)


def open_peer(
    port: int,
    as_node: int,
    cluster_id: bytes,
    credentials_dir: str | Path | None,
    *,
    secret: bytes | None = None,
) -> PeerConn:
    """Connect to a peer port on 127.0.0.1 and say hello as node ``as_node``: with the secret
    of the cluster in ``credentials_dir`` (or ``secret``), the handshake completes (or this
    fails); without, the hello carries a made-up secret's MAC and the node will close."""
    if secret is None and credentials_dir is not None:
        secret = load_secret(os.path.join(credentials_dir, SECRET_FILE))
    member = secret is not None
    key = secret if secret is not None else os.urandom(SECRET_SIZE)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    decoder = FrameDecoder(MAX_PEER_FRAME)
    pending: list[bytes] = []
    side = Handshake.connector(key, cluster_id, as_node, None, os.urandom(NONCE_SIZE))
    try:
        challenge = _next_payload(sock, decoder, pending)
        assert challenge is not None, f"port {port} closed before its challenge"
        step = side.receive(challenge)
        assert step.send is not None
        sock.sendall(encode_frame(step.send, MAX_PEER_FRAME))
        if not member:
            return PeerConn(sock, None)
        welcome = _next_payload(sock, decoder, pending)
        assert welcome is not None, f"port {port} refused the hello of node {as_node}"
        done = side.receive(welcome)
    except (AuthRefused, AssertionError, OSError):
        sock.close()
        raise
    assert done.channel is not None
    return PeerConn(sock, done.channel)
