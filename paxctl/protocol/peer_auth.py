"""Peer authentication: a mutual challenge-response in the hello, then a MAC on every frame.

Sans-I/O: the shell feeds the payloads of received frames and sends the payloads returned;
randomness (the nonces) is handed in. With ``S`` the cluster secret, on one connection:

1. the listener ``L``, on accept, sends ``{"auth": 1, "node": L, "nonce": NL}``;
2. the connector answers ``{"auth": 1, "node": C, "cluster": ID, "to": L, "nonce": NC,
   "mac": HMAC(S, "connector" | T)}`` where the transcript ``T`` is ``ID | C | L | NL | NC``;
3. the listener checks cluster, membership, that it is ``L``, and the MAC, then proves it holds
   ``S`` too with ``{"auth": 1, "mac": HMAC(S, "listener" | T)}``.

Both sides then derive one key per direction, ``HMAC(S, "key c>l" | T)`` and ``"key l>c"``, and
every later payload travels as ``tag(16) | payload`` with ``tag = HMAC(key, counter | payload)``
truncated, the counter counting that direction's frames from 0. Fresh nonces from both sides
make every connection's keys new (a recorded hello or frame is worth nothing on another
connection), the counter makes a replayed, dropped or reordered frame fail, and the role labels
keep a side's proof from being reflected back at it. Confidentiality is not a goal here (TLS
comes with the security issue): a peer is proven to hold the secret, its frames cannot be
forged or altered, but anyone on the path can read them.

HMAC-SHA256 (standard library, OpenSSL underneath) rather than keyed BLAKE2b, by measuring
(``benchmarks/peer_mac.py``): on large frames (snapshots, big batches) HMAC-SHA256 cost about
half of BLAKE2b per MiB; on small frames BLAKE2b is a few microseconds faster per frame, which
is nothing next to the milliseconds of a write's round trips.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Collection
from dataclasses import dataclass

import msgpack

#: Bytes of the cluster secret (``paxctl cluster secret`` writes them as 64 hex digits).
SECRET_SIZE = 32
#: Bytes of each side's random challenge.
NONCE_SIZE = 32
#: Bytes of the MAC on every frame after the handshake.
TAG_SIZE = 16
#: The largest frame accepted before the handshake ends: a hello is under 200 bytes.
MAX_HELLO_FRAME = 1024
#: Version of this handshake, in every hello message.
AUTH_VERSION = 1

_ID = struct.Struct(">Q")
_COUNTER = struct.Struct(">Q")
_MAX_ID = 2**63 - 1


class AuthRefused(Exception):
    """The other side failed authentication; close the connection. ``kind`` names the check
    that failed, for rate-limited logging; the message says why."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def _pack(obj: dict[str, object]) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def _unpack(payload: bytes, what: str) -> dict[str, object]:
    try:
        obj = msgpack.unpackb(payload, raw=False, max_bin_len=64, max_str_len=64, max_map_len=8)
    except Exception:  # any malformed bytes: msgpack raises several kinds
        raise AuthRefused("malformed", f"{what} is not a valid handshake message") from None
    if type(obj) is not dict or obj.get("auth") != AUTH_VERSION:
        raise AuthRefused("malformed", f"{what} is not a handshake message of version 1")
    return obj


def _field(obj: dict[str, object], key: str, kind: type, what: str, size: int = 0) -> object:
    value = obj.get(key)
    if type(value) is not kind or (size and len(value) != size):  # type: ignore[arg-type]
        raise AuthRefused("malformed", f"{what} has no valid {key!r}")
    return value


class Channel:
    """One authenticated connection's MACs: ``seal`` what this side sends, ``open`` what it
    receives. Frames must be opened in the order they were sealed, each exactly once."""

    def __init__(self, peer: int, send_key: bytes, recv_key: bytes) -> None:
        self.peer = peer
        # Keyed once; each frame's MAC starts from a copy, fed the counter and the payload
        # without concatenating them (a copy fewer of a snapshot-sized frame).
        self._send = hmac.new(send_key, digestmod="sha256")
        self._recv = hmac.new(recv_key, digestmod="sha256")
        self._sent = 0
        self._received = 0

    def seal(self, payload: bytes) -> bytes:
        tag = _tag(self._send, self._sent, payload)
        self._sent += 1
        return tag + payload

    def unseal(self) -> None:
        """Take back the last ``seal`` whose frame was never sent."""
        assert self._sent > 0
        self._sent -= 1

    def open(self, frame: bytes) -> bytes:
        """The payload of a received frame; AuthRefused if it was forged, altered, replayed,
        reordered or belongs to another connection."""
        view = memoryview(frame)
        tag, payload = view[:TAG_SIZE], view[TAG_SIZE:]
        expected = _tag(self._recv, self._received, payload)
        if len(tag) != TAG_SIZE or not hmac.compare_digest(tag, expected):
            raise AuthRefused(
                "tampered",
                f"frame {self._received} from node {self.peer} fails its MAC "
                "(forged, altered, replayed or out of order)",
            )
        self._received += 1
        return bytes(payload)


def _tag(keyed: hmac.HMAC, counter: int, payload: bytes | memoryview) -> bytes:
    mac = keyed.copy()
    mac.update(_COUNTER.pack(counter))
    mac.update(payload)
    return mac.digest()[:TAG_SIZE]


@dataclass(frozen=True)
class Step:
    """What the shell does after feeding a handshake frame: send ``send`` if any; once
    ``channel`` is set the peer is authenticated as ``channel.peer``."""

    send: bytes | None = None
    channel: Channel | None = None


class Handshake:
    """One side of one connection's handshake; build it with ``listener`` or ``connector``."""

    def __init__(
        self,
        secret: bytes,
        cluster_id: bytes,
        node_id: int,
        nonce: bytes,
        *,
        listening: bool,
        members: Collection[int] = (),
        target: int | None = None,
    ) -> None:
        if len(secret) != SECRET_SIZE or len(nonce) != NONCE_SIZE:
            raise ValueError("a secret and a nonce of the right sizes are needed")
        self._secret = secret
        self._cluster = cluster_id
        self._node = node_id
        self._nonce = nonce
        self._members = members
        self._listening = listening
        self._target = target  # the connector's: the node it means to reach (None: any)
        self._transcript: bytes | None = None
        self.done = False

    @classmethod
    def listener(
        cls,
        secret: bytes,
        cluster_id: bytes,
        node_id: int,
        members: Collection[int],
        nonce: bytes,
    ) -> tuple[Handshake, bytes]:
        """The accepting side, and the challenge to send at once."""
        side = cls(secret, cluster_id, node_id, nonce, listening=True, members=members)
        return side, _pack({"auth": AUTH_VERSION, "node": node_id, "nonce": nonce})

    @classmethod
    def connector(
        cls, secret: bytes, cluster_id: bytes, node_id: int, target: int | None, nonce: bytes
    ) -> Handshake:
        """The connecting side, which waits for the challenge of node ``target`` (None: of
        whichever node answers, for tools that only know an address)."""
        return cls(secret, cluster_id, node_id, nonce, listening=False, target=target)

    def receive(self, payload: bytes) -> Step:
        """Feed one received frame's payload; AuthRefused if the other side fails."""
        if self.done:
            raise AuthRefused("unexpected", "a handshake message after the handshake")
        if self._listening:
            return self._hello(payload)
        if self._transcript is None:
            return self._challenge(payload)
        return self._welcome(payload)

    # ------------------------------------------------------------------ the listener

    def _hello(self, payload: bytes) -> Step:
        msg = _unpack(payload, "the peer hello")
        peer = _field(msg, "node", int, "the peer hello")
        cluster = _field(msg, "cluster", bytes, "the peer hello")
        to = _field(msg, "to", int, "the peer hello")
        nonce = _field(msg, "nonce", bytes, "the peer hello", NONCE_SIZE)
        mac = _field(msg, "mac", bytes, "the peer hello", 32)
        assert isinstance(peer, int) and isinstance(to, int)
        assert isinstance(nonce, bytes) and isinstance(mac, bytes)
        if cluster != self._cluster:
            raise AuthRefused("cluster", f"hello from node {peer} of another cluster")
        if peer not in self._members or not 0 < peer <= _MAX_ID:
            raise AuthRefused("member", f"hello from node {peer}, which is not a peer member")
        if peer == self._node:
            raise AuthRefused("self", f"hello claiming to be this node ({peer}) itself")
        if to != self._node:
            raise AuthRefused("target", f"hello from node {peer} meant for node {to}")
        transcript = self._make_transcript(peer, self._node, self._nonce, nonce)
        if not hmac.compare_digest(mac, _mac(self._secret, b"connector" + transcript)):
            raise AuthRefused(
                "secret", f"hello from node {peer} fails its MAC (not our cluster secret)"
            )
        self.done = True
        welcome = _pack({"auth": AUTH_VERSION, "mac": _mac(self._secret, b"listener" + transcript)})
        return Step(welcome, self._channel(peer, transcript, b"key l>c", b"key c>l"))

    # ------------------------------------------------------------------ the connector

    def _challenge(self, payload: bytes) -> Step:
        msg = _unpack(payload, "the challenge")
        node = _field(msg, "node", int, "the challenge")
        nonce = _field(msg, "nonce", bytes, "the challenge", NONCE_SIZE)
        assert isinstance(node, int) and isinstance(nonce, bytes)
        if self._target is None and 0 < node <= _MAX_ID:
            self._target = node
        if node != self._target:
            raise AuthRefused(
                "target", f"node {node} answered where node {self._target} was expected"
            )
        self._transcript = self._make_transcript(self._node, self._target, nonce, self._nonce)
        mac = _mac(self._secret, b"connector" + self._transcript)
        hello = {
            "auth": AUTH_VERSION,
            "node": self._node,
            "cluster": self._cluster,
            "to": self._target,
            "nonce": self._nonce,
            "mac": mac,
        }
        return Step(_pack(hello))

    def _welcome(self, payload: bytes) -> Step:
        assert self._transcript is not None and self._target is not None
        msg = _unpack(payload, f"the answer of node {self._target}")
        mac = _field(msg, "mac", bytes, "the answer", 32)
        assert isinstance(mac, bytes)
        if not hmac.compare_digest(mac, _mac(self._secret, b"listener" + self._transcript)):
            raise AuthRefused(
                "secret", f"node {self._target} fails its MAC (it does not hold our secret)"
            )
        self.done = True
        return Step(None, self._channel(self._target, self._transcript, b"key c>l", b"key l>c"))

    # ------------------------------------------------------------------ both

    def _make_transcript(self, connector: int, listener: int, nl: bytes, nc: bytes) -> bytes:
        return self._cluster + _ID.pack(connector) + _ID.pack(listener) + nl + nc

    def _channel(self, peer: int, transcript: bytes, send: bytes, recv: bytes) -> Channel:
        derive = self._secret
        return Channel(peer, _mac(derive, send + transcript), _mac(derive, recv + transcript))
