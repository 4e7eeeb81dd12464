"""What a pass sends to one peer, or to one client connection, leaves with one write: the same
frames, in the same order (the peer's MACs open in sequence, watch events still come before
the reply that reflects them), for one send call instead of one per message."""

from __future__ import annotations

import asyncio

from test_stream_transports import DuckTransport

from paxctl.core import codec
from paxctl.core.messages import Accept, Accepted, Message, Relay
from paxctl.core.types import Ballot, ChosenEntry, Command
from paxctl.protocol.codec import encode_reply
from paxctl.protocol.framing import MAX_PEER_FRAME, FrameDecoder, encode_frame
from paxctl.protocol.messages import Ok, WatchEvent, WatchEvents
from paxctl.protocol.peer_auth import NONCE_SIZE, SECRET_SIZE, Channel, Handshake
from paxctl.protocol.pushes import encode_pushes
from paxctl.server.client_conn import ClientConnection, ClientPort
from paxctl.server.limits import Connections, Limits
from paxctl.server.node_server import NodeServer
from paxctl.server.peers import PeerAuth, PeerConnection
from paxctl.server.requests import Frame
from paxctl.server.transport import MAX_PENDING_BYTES, FramedProtocol

SECRET = bytes(range(SECRET_SIZE))
CLUSTER = b"c" * 16


def payloads_of(written: list[bytes]) -> list[bytes]:
    return FrameDecoder(64 * 1024 * 1024).feed(b"".join(written))


def test_several_frames_leave_in_one_write_and_decode_in_order():
    conn = FramedProtocol(lambda c, p: None)
    transport = DuckTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    sent = [b"one", b"two", b"three"]
    assert conn.send_many(sent) == 3
    assert len(transport.written) == 1
    assert transport.written[0] == b"".join(encode_frame(p) for p in sent)
    assert payloads_of(transport.written) == sent


def test_a_frame_too_large_is_skipped_and_the_rest_still_leave():
    conn = FramedProtocol(lambda c, p: None, max_frame=8)
    transport = DuckTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    assert conn.send_many([b"a", b"far too large", b"b"]) == 2
    assert payloads_of(transport.written) == [b"a", b"b"]


def channels() -> tuple[Channel, Channel]:
    """The channels of node 2 (connecting) and node 1 (listening) after a handshake."""
    listener, challenge = Handshake.listener(SECRET, CLUSTER, 1, (1, 2), b"\x01" * NONCE_SIZE)
    connector = Handshake.connector(SECRET, CLUSTER, 2, 1, b"\x02" * NONCE_SIZE)
    hello = connector.receive(challenge).send
    assert hello is not None
    answer = listener.receive(hello)
    assert answer.send is not None and answer.channel is not None
    done = connector.receive(answer.send)
    assert done.channel is not None
    return done.channel, answer.channel


def test_a_peer_connection_seals_each_message_and_writes_them_once():
    mine, theirs = channels()
    conn = PeerConnection(PeerAuth(SECRET, CLUSTER, 2, (1, 2)), lambda c, p: None, target=1)
    transport = DuckTransport()
    conn.transport = transport  # type: ignore[assignment]  # no handshake: its channel is set
    conn.channel = mine
    sent = [b"accept 1", b"accept 2", b"relay"]
    assert conn.send_many(sent) == 3
    assert conn.send(b"after")  # the counters run on across the batch
    assert len(transport.written) == 2
    assert [theirs.open(f) for f in payloads_of(transport.written)] == [*sent, b"after"]


def test_a_peer_connection_before_its_handshake_sends_nothing():
    conn = PeerConnection(PeerAuth(SECRET, CLUSTER, 2, (1, 2)), lambda c, p: None, target=1)
    transport = DuckTransport()
    conn.transport = transport  # type: ignore[assignment]
    assert conn.send_many([b"x", b"y"]) == 0
    assert transport.written == []


def test_a_client_connection_writes_its_frames_once_in_order():
    asyncio.run(_client_frames())


async def _client_frames() -> None:  # its timers need a running loop
    limits = Limits()
    port = ClientPort(limits, Connections(limits, 100), lambda c, p: None, lambda c: None)
    conn = ClientConnection(port)
    transport = DuckTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    assert conn.send_many([b"event", b"reply"])
    assert len(transport.written) == 1
    assert payloads_of(transport.written) == [b"event", b"reply"]
    conn.close("test over")


class Backlog(DuckTransport):
    """A transport whose buffer keeps what is written (the client reads nothing) or, with
    ``drains``, hands it all to the kernel at once."""

    def __init__(self, drains: bool) -> None:
        super().__init__()
        self.drains = drains
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return 0 if self.drains else sum(map(len, self.written))

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


def test_a_burst_over_the_queue_limit_is_written_as_it_drains_and_dropped_if_it_does_not():
    asyncio.run(_burst())


async def _burst() -> None:
    limits = Limits()
    port = ClientPort(limits, Connections(limits, 100), lambda c, p: None, lambda c: None)
    burst = [bytes(1024 * 1024)] * (2 + limits.max_queued_bytes // (1024 * 1024))
    reader = ClientConnection(port)
    drains = Backlog(drains=True)
    reader.connection_made(drains)  # type: ignore[arg-type]
    assert reader.send_many(burst)  # a reading client takes a push larger than the limit
    assert payloads_of(drains.written) == burst and len(drains.written) > 1
    assert not drains.aborted
    stuck = ClientConnection(port)
    full = Backlog(drains=False)
    stuck.connection_made(full)  # type: ignore[arg-type]
    assert not stuck.send_many(burst)  # one that reads nothing is dropped at the limit
    assert full.aborted and sum(map(len, full.written)) <= limits.max_queued_bytes
    reader.close("test over")


def test_a_peer_batch_stops_where_the_queue_passes_its_bound_and_the_macs_run_on():
    mine, theirs = channels()
    conn = PeerConnection(PeerAuth(SECRET, CLUSTER, 2, (1, 2)), lambda c, p: None, target=1)
    transport = Backlog(drains=False)
    conn.transport = transport  # type: ignore[assignment]
    conn.channel = mine
    conn._max_frame = MAX_PEER_FRAME
    big = [bytes([i]) * (MAX_PENDING_BYTES * 5 // 8) for i in range(3)]
    assert conn.send_many(big) == 2  # the third would queue past the bound: dropped
    transport.drains = True  # the peer reads again
    assert conn.send(b"next")  # takes the dropped one's counter
    assert [theirs.open(f) for f in payloads_of(transport.written)] == [*big[:2], b"next"]


# ------------------------------------------------------------------ the node's output


class Link:
    """A peer link that records each write it is asked for."""

    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []

    def send(self, payload: bytes) -> None:
        self.writes.append([payload])

    def send_many(self, payloads: list[bytes]) -> None:
        self.writes.append(list(payloads))


class Client:
    """A client connection that records each write it is asked for."""

    open = True

    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []

    def hello(self, session: bool) -> None: ...

    def send(self, payload: bytes) -> bool:
        self.writes.append([payload])
        return True

    def send_many(self, payloads: list[bytes]) -> bool:
        self.writes.append(list(payloads))
        return True


def shell() -> tuple[NodeServer, dict[int, Link], Client]:
    """The node's output side only (no storage, no sockets)."""
    server = object.__new__(NodeServer)
    links = {2: Link(), 3: Link()}
    client = Client()
    server._links = links  # type: ignore[assignment]
    server._clients = {7: client}  # type: ignore[dict-item]
    server._inbound = {}
    return server, links, client


def accept(to: int, slot: int) -> Accept:
    entry = ChosenEntry(slot, (Command(9, slot, b"set"),))
    return Accept(1, to, Ballot(1, 1), (entry,), slot - 1)


def test_a_pass_makes_one_write_per_peer_and_per_client_connection_in_order():
    server, links, client = shell()
    event = WatchEvents(5, (WatchEvent(1, "changed", "/a", 5),))
    msgs: list[Message] = [
        accept(2, 10),
        accept(3, 10),
        Relay(1, 2, 1, b"ping"),
        accept(2, 11),
        Accepted(1, 3, Ballot(1, 1), (10,), 9),
    ]
    server._carry_out([msgs[0], msgs[1], Frame(7, event), msgs[2], Frame(7, Ok(3, 5)), *msgs[3:]])
    assert [len(w) for w in links[2].writes] == [3]
    assert [codec.decode(p) for p in links[2].writes[0]] == [msgs[0], msgs[2], msgs[3]]
    assert [[codec.decode(p) for p in w] for w in links[3].writes] == [[msgs[1], msgs[4]]]
    assert client.writes == [[*encode_pushes(event), encode_reply(Ok(3, 5))]]  # event first


def test_early_accepts_leave_with_one_write_per_peer():
    server, links, _ = shell()
    early = (accept(2, 10), accept(3, 10), accept(2, 11), accept(3, 11))
    server._send_all(early)
    assert [[codec.decode(p) for p in w] for w in links[2].writes] == [[early[0], early[2]]]
    assert [[codec.decode(p) for p in w] for w in links[3].writes] == [[early[1], early[3]]]


class Inbound(Client):
    """A member's own authenticated connection to this node."""

    def __init__(self, peer: int) -> None:
        super().__init__()
        self.state = peer


def test_a_peer_without_a_link_is_answered_on_its_own_connection():
    """A node removed from the cluster (no link follows it any more) asks for the log to learn
    that its removal is decided: the reply goes on its connection, or it could never stop."""
    server, links, _ = shell()
    four = Inbound(4)
    server._inbound_ready(four)  # type: ignore[arg-type]
    reply = accept(4, 12)
    server._send_all((reply,))
    assert [[codec.decode(p) for p in w] for w in four.writes] == [[reply]]
    server._send_all((accept(5, 12),))  # no link and no connection: dropped, nothing raised
    server._inbound_lost(Inbound(4))  # type: ignore[arg-type]  # another connection of 4
    server._inbound_lost(four)  # type: ignore[arg-type]
    server._send_all((accept(4, 13),))
    assert len(four.writes) == 1 and links[2].writes == links[3].writes == []
