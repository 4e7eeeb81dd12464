"""Peer connections that authenticate before anything reaches the node (the asyncio shell
around ``protocol/peer_auth.py``).

Until its handshake completes a peer connection is a stranger's and is kept cheap: frames of at
most ``MAX_HELLO_FRAME`` bytes, ``HELLO_TIMEOUT_S`` to finish, and at most
``MAX_PENDING_HELLOS`` such inbound connections at once, ``MAX_PENDING_PER_ADDRESS`` from one
address (a new one pushes out the oldest of the address holding the most, so holding
connections open, or flooding from one host, cannot lock members out). Refusals of strangers
are logged through a ``Throttle``, at most once per interval for each address and kind. After
the handshake the frame limit rises to ``MAX_PEER_FRAME`` and every frame is sealed and opened
with the connection's MACs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable

from paxctl.protocol.framing import MAX_PEER_FRAME
from paxctl.protocol.peer_auth import (
    MAX_HELLO_FRAME,
    NONCE_SIZE,
    AuthRefused,
    Channel,
    Handshake,
)
from paxctl.server.logthrottle import Throttle
from paxctl.server.transport import FramedProtocol

log = logging.getLogger("paxctl.peers")

#: Seconds a peer connection may take from connect to a completed handshake.
HELLO_TIMEOUT_S = 5.0
#: Inbound peer connections allowed to be in their handshake at once, in all and from one
#: address.
MAX_PENDING_HELLOS = 64
MAX_PENDING_PER_ADDRESS = 16


class PeerAuth:
    """What every peer connection of a node shares: the secret, the members, the throttle
    and the inbound connections still in their handshake."""

    def __init__(
        self,
        secret: bytes,
        cluster_id: bytes,
        node_id: int,
        members: Collection[int],
        throttle: Throttle | None = None,
        nonce: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.secret = secret
        self.cluster_id = cluster_id
        self.node_id = node_id
        self.members = frozenset(members)
        self.throttle = throttle or Throttle(log)
        self.nonce = nonce
        self._pending: dict[PeerConnection, None] = {}  # in arrival order

    def admit(self, conn: PeerConnection) -> None:
        """A new inbound connection. When too many are in their handshake, the oldest one of
        the address holding the most goes: a flood from one address pushes out only its own
        (members connect from their own hosts), and connections held open lock nobody out."""
        mine = [c for c in self._pending if c.host == conn.host]
        if len(mine) >= MAX_PENDING_PER_ADDRESS:
            self._push_out(mine[0], f"more than {MAX_PENDING_PER_ADDRESS} from {conn.host}")
        while len(self._pending) >= MAX_PENDING_HELLOS:
            counts = Counter(c.host for c in self._pending)
            crowded = max(counts.values())
            oldest = next(c for c in self._pending if counts[c.host] == crowded)
            self._push_out(oldest, f"more than {MAX_PENDING_HELLOS} in all")
        self._pending[conn] = None

    def _push_out(self, conn: PeerConnection, why: str) -> None:
        del self._pending[conn]
        conn.refuse("crowded", f"too many peer connections in their handshake; the oldest is "
                    f"dropped ({why})")  # fmt: skip

    def settled(self, conn: PeerConnection) -> None:
        self._pending.pop(conn, None)

    @property
    def pending(self) -> int:
        return len(self._pending)


class PeerConnection(FramedProtocol):
    """One peer connection, inbound (``target`` None) or outbound to node ``target``: its
    authenticated payloads go to ``on_message``, with ``state`` set to the peer's id."""

    def __init__(
        self,
        auth: PeerAuth,
        on_message: Callable[[FramedProtocol, bytes], None],
        on_lost: Callable[[FramedProtocol], None] | None = None,
        target: int | None = None,
        on_ready: Callable[[PeerConnection], None] | None = None,
    ) -> None:
        label = "peer inbound" if target is None else f"peer {target}"
        super().__init__(self._on_frame, on_lost, label, MAX_HELLO_FRAME)
        self._auth = auth
        self._on_message = on_message
        self._on_ready = on_ready  # told once the handshake completes (``state``: the id)
        self._target = target
        self._handshake: Handshake | None = None
        self.channel: Channel | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.host = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.host = str(peer[0]) if peer else "?"
        self._timer = asyncio.get_running_loop().call_later(HELLO_TIMEOUT_S, self._too_slow)
        a = self._auth
        nonce = a.nonce(NONCE_SIZE)
        if self._target is None:
            a.admit(self)
            self._handshake, challenge = Handshake.listener(
                a.secret, a.cluster_id, a.node_id, a.members, nonce
            )
            super().send(challenge)
        else:
            self._handshake = Handshake.connector(
                a.secret, a.cluster_id, a.node_id, self._target, nonce
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle()
        super().connection_lost(exc)

    @property
    def authenticated(self) -> bool:
        return self.channel is not None

    def send(self, payload: bytes) -> bool:
        """Seal and queue one message; False before the handshake ends (the core resends)."""
        return self.channel is not None and super().send(payload)

    def send_many(self, payloads: Iterable[bytes]) -> int:
        """Seal each message and queue them with one write; how many were queued (none
        before the handshake ends: the core resends)."""
        return 0 if self.channel is None else super().send_many(payloads)

    def _seal(self, payload: bytes) -> bytes:
        """With the connection's MAC once the handshake is done (its own frames, sent
        through ``super().send`` before, go as they are)."""
        return payload if self.channel is None else self.channel.seal(payload)

    def _unseal(self) -> None:
        if self.channel is not None:
            self.channel.unseal()  # it never left: the next frame takes its counter

    def close(self, reason: str | None = None) -> None:
        if self.channel is None and reason:  # a bad frame from whoever this is
            self.refuse("frame", reason)
        else:
            super().close(reason)

    def refuse(self, kind: str, reason: str) -> None:
        """Close, logging at most once per interval for this address and kind of refusal."""
        who = self.label if self._target is not None else f"{self.label} {self.peer_name}"
        self._auth.throttle.warning((self.host, self._target, kind), "%s: refused: %s", who, reason)
        self._settle()
        super().close()

    # ------------------------------------------------------------------ internals

    def _on_frame(self, conn: FramedProtocol, payload: bytes) -> None:
        if self.channel is not None:
            try:
                message = self.channel.open(payload)
            except AuthRefused as exc:
                self.refuse(exc.kind, exc.reason)
                return
            self._on_message(self, message)
            return
        assert self._handshake is not None
        try:
            step = self._handshake.receive(payload)
        except AuthRefused as exc:
            self.refuse(exc.kind, exc.reason)
            return
        if step.send is not None:
            super().send(step.send)
        if step.channel is not None:
            self._authenticated(step.channel)

    def _authenticated(self, channel: Channel) -> None:
        self.channel = channel
        self.state = channel.peer
        self._handshake = None
        self._settle()
        self._decoder.max_frame = MAX_PEER_FRAME
        self._max_frame = MAX_PEER_FRAME
        log.debug("%s: node %d authenticated", self.label, channel.peer)
        if self._on_ready is not None:
            self._on_ready(self)

    def _settle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._auth.settled(self)

    def _too_slow(self) -> None:
        self._timer = None
        if self.channel is None and self.open:
            self.refuse("deadline", f"no completed handshake within {HELLO_TIMEOUT_S:g} s")
