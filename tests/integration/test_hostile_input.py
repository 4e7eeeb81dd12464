"""Hostile bytes at every port of a real 3-node cluster: each bad connection is closed with a
logged reason, and afterwards every node is alive, there is one leader, and writes and
linearizable reads work through every node.

A peer port first sends its handshake challenge and takes nothing but a hello of at most
``MAX_HELLO_FRAME`` bytes until the peer proves it holds the cluster secret; its refusals of
strangers are logged at most once per interval for each kind (so a test finds the kind's line
somewhere in the node's log, not necessarily one line per connection). A member's bad messages
after the handshake are refused and logged each time, as before."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from client_wire import closing_notice
from peer_client import PeerConn, open_peer

from paxctl.client import Client
from paxctl.core import codec
from paxctl.core.messages import CatchupRequest
from paxctl.protocol.framing import (
    HEADER_SIZE,
    MAX_FRAME,
    MAX_PEER_FRAME,
    PROTOCOL_VERSION,
    FrameDecoder,
    FrameError,
)
from paxctl.protocol.framing import encode_frame as frame
from paxctl.protocol.peer_auth import MAX_HELLO_FRAME
from paxctl.protocol.secrets import temporary_id
from paxctl.server.limits import Limits
from paxctl.server.zxid import zxid_of
from paxctl.statemachine.ops import MAX_DATA, CloseSession, Create, encode_op

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
#: The largest frame a client port takes before the client's hello (server/limits.py).
PRE_HELLO = Limits().max_hello_bytes


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def raw_frame(payload: bytes, *, version: int = PROTOCOL_VERSION, crc: int | None = None) -> bytes:
    if crc is None:
        crc = zlib.crc32(payload, zlib.crc32(bytes([version])))
    return struct.pack(">IIB", len(payload), crc, version) + payload


@contextlib.contextmanager
def connect(port: int) -> Iterator[socket.socket]:
    sock = socket.create_connection((HOST, port), timeout=5)
    try:
        yield sock
    finally:
        sock.close()


def send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def wait_closed(sock: socket.socket, timeout: float = 5) -> bytes:
    """Read until the server closes the connection; fail if it has not within ``timeout``."""
    deadline = time.monotonic() + timeout
    received = b""
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"port {sock.getpeername()[1]} left the connection open") from None
        if not data:
            return without_closing_notice(received)
        received += data


def without_closing_notice(data: bytes) -> bytes:
    """What came before the last frame if that is a client port's closing notice (an error
    with xid 0 saying why it closes the connection; test_resource_limits.py checks the notices)."""
    try:
        payloads = FrameDecoder().feed(data)
    except FrameError:
        return data
    if payloads:
        last = msgpack.unpackb(payloads[-1], raw=False)
        if isinstance(last, dict) and last.get("xid") == 0 and "err" in last:
            return data[: len(data) - HEADER_SIZE - len(payloads[-1])]
    return data


def closed_because(sock: socket.socket) -> str:
    """Wait for a client port to close the connection; the reason its closing notice gave.

    Client ports say why in one last frame rather than (only) in the node's log, whose lines
    a stranger can cause are throttled (one per kind every few seconds)."""
    return closing_notice(sock, alone=True)[0]


class Conversation:
    """Framed msgpack requests and answers on one client connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = FrameDecoder()
        self.pending: list[bytes] = []

    def ask(self, request: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
        send(self.sock, frame(pack(request)))
        return self.answer(timeout)

    def answer(self, timeout: float = 5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.pending:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"no answer within {timeout}s") from None
            assert data, "the server closed the connection instead of answering"
            self.pending += self.decoder.feed(data)
        reply: dict[str, Any] = msgpack.unpackb(self.pending.pop(0), raw=False)
        return reply


def sessionless_hello(xid: int, secret: bytes) -> dict[str, Any]:
    """A client's hello without a session: it speaks under the id its secret derives."""
    secret = secret.ljust(16, b".")
    return {"xid": xid, "op": "hello", "client": temporary_id(secret), "secret": secret}


def hello(node: int, cluster: bytes) -> bytes:
    """The unauthenticated hello nodes used before the cluster secret (a stranger's now)."""
    return frame(pack({"node": node, "cluster": cluster}))


def member(cluster, node_id: int) -> PeerConn:
    """An authenticated connection to ``node_id``'s peer port, as another member."""
    return open_peer(
        cluster.peer_port(node_id), other_member(cluster, node_id), cluster.cluster_id,
        cluster.directory,
    )  # fmt: skip


def challenge_then_closed(sock: socket.socket) -> None:
    """A peer port sends its challenge and nothing else before it closes on a stranger."""
    received = wait_closed(sock)
    decoded = FrameDecoder(MAX_HELLO_FRAME).feed(received)
    assert len(decoded) == 1 and msgpack.unpackb(decoded[0])["auth"] == 1, received


def expect_refused(cluster, per_node: dict[int, list[str]]) -> None:
    """Each needle in the node's log at least once since it started (refusals of strangers
    are rate-limited, so an earlier test's refusal of the same kind may be the one written)."""
    since_start = {i: 0 for i in cluster.ids}
    for node_id, needles in per_node.items():
        for needle in set(needles):
            cluster.wait_log(since_start, node_id, needle)


def other_member(cluster, node_id: int) -> int:
    return cluster.ids[node_id % len(cluster.ids)]


@pytest.fixture
def marks(cluster):
    """Log positions before the test; afterwards the nodes must have logged no error."""
    cluster.assert_processes_alive()
    before = cluster.log_marks()
    yield before
    cluster.assert_no_tracebacks(before)


def expect_logged(cluster, marks, per_node: dict[int, list[str]]) -> None:
    for node_id, needles in per_node.items():
        for needle in set(needles):
            cluster.wait_log(marks, node_id, needle, count=needles.count(needle))


# ------------------------------------------------------------------ framing, at every port


def test_random_garbage_bytes(cluster, marks):
    refused: dict[int, list[str]] = {i: [] for i in cluster.ids}
    for port in cluster.client_ports + cluster.peer_ports:
        for seed in range(8):
            garbage = random.Random(seed * 65537 + port).randbytes(64 << seed % 5)
            client = port in cluster.client_ports
            try:
                FrameDecoder(PRE_HELLO if client else MAX_HELLO_FRAME).feed(garbage)
                reason = None  # a plausible header: the node waits for the rest of the frame
            except FrameError as exc:
                reason = str(exc)
            with connect(port) as sock:
                send(sock, garbage)
                if reason is not None and client:  # a client port says why in its notice
                    assert reason in closed_because(sock)
                elif reason is not None:  # its line may be an earlier stranger's (rate limit)
                    challenge_then_closed(sock)
                    refused[cluster.node_of_port(port)].append(": refused: bad frame from")
    expect_refused(cluster, refused)
    cluster.assert_healthy()


def test_truncated_frame_then_close(cluster, marks):
    for node_id in cluster.ids:
        whole = {
            cluster.client_port(node_id): frame(pack({"xid": 1, "op": "status"})),
            cluster.peer_port(node_id): hello(other_member(cluster, node_id), cluster.cluster_id),
        }
        for port, data in whole.items():
            for cut in (1, 4, 8, 9, len(data) - 1):
                with connect(port) as sock:
                    send(sock, data[:cut])
    cluster.assert_healthy()


def test_a_frame_cut_in_pieces_is_reassembled(cluster, marks):
    for port in cluster.client_ports:
        data = frame(pack({"xid": 7, "op": "status"}))
        with connect(port) as sock:
            talk = Conversation(sock)
            for i in range(len(data)):
                send(sock, data[i : i + 1])
            assert talk.answer()["xid"] == 7
    cluster.assert_healthy()


@pytest.mark.parametrize("beyond", [1, None])
def test_oversized_length_header_is_refused_before_its_payload(cluster, marks, beyond):
    """Clients may send up to PRE_HELLO bytes before their hello (MAX_FRAME after it:
    test_resource_limits.py); peers up to MAX_HELLO_FRAME before their handshake,
    MAX_PEER_FRAME after."""
    expected: dict[int, list[str]] = {i: [] for i in cluster.ids}
    for port in cluster.client_ports + cluster.peer_ports:
        client = port in cluster.client_ports
        limit = PRE_HELLO if client else MAX_HELLO_FRAME
        length = limit + beyond if beyond is not None else 2**32 - 1
        reason = f"frame of {length} bytes exceeds the {limit}-byte limit"
        with connect(port) as sock:
            send(sock, struct.pack(">IIB", length, 0, PROTOCOL_VERSION))  # no payload follows
            if client:
                assert reason in closed_because(sock)
            else:
                challenge_then_closed(sock)
    for node_id in cluster.ids:  # a member past its handshake: the peer limit
        length = MAX_PEER_FRAME + beyond if beyond is not None else 2**32 - 1
        with member(cluster, node_id) as conn:
            send(conn.sock, struct.pack(">IIB", length, 0, PROTOCOL_VERSION))
            assert conn.closed_by_node()
        expected[node_id].append(f"frame of {length} bytes exceeds the {MAX_PEER_FRAME}-byte limit")
    expect_logged(cluster, marks, expected)
    # strangers' refusals of one kind are written once per interval: maybe an earlier one's
    expect_refused(cluster, {i: [": refused: bad frame from"] for i in cluster.ids})
    cluster.assert_healthy()


def test_bad_crc(cluster, marks):
    expected: dict[int, list[str]] = {i: [] for i in cluster.ids}
    for node_id in cluster.ids:
        good = {
            cluster.client_port(node_id): pack({"xid": 1, "op": "status"}),
            cluster.peer_port(node_id): pack({"node": 1, "cluster": cluster.cluster_id}),
        }
        for port, payload in good.items():
            crc = zlib.crc32(payload, zlib.crc32(bytes([PROTOCOL_VERSION])))
            with connect(port) as sock:
                send(sock, raw_frame(payload, crc=crc ^ 0x8000))
                if port == cluster.client_port(node_id):
                    assert "frame checksum mismatch" in closed_because(sock)
                else:
                    challenge_then_closed(sock)
    expect_logged(cluster, marks, expected)
    expect_refused(cluster, {i: ["refused: bad frame from"] for i in cluster.ids})
    cluster.assert_healthy()


@pytest.mark.parametrize("version", [0, PROTOCOL_VERSION + 1, 255])
def test_unknown_version(cluster, marks, version):
    expected: dict[int, list[str]] = {i: [] for i in cluster.ids}
    for node_id in cluster.ids:
        good = {
            cluster.client_port(node_id): pack({"xid": 1, "op": "status"}),
            cluster.peer_port(node_id): pack({"node": 1, "cluster": cluster.cluster_id}),
        }
        for port, payload in good.items():
            with connect(port) as sock:
                send(sock, raw_frame(payload, version=version))  # with a matching checksum
                if port == cluster.client_port(node_id):
                    assert f"unknown protocol version {version}" in closed_because(sock)
                else:
                    challenge_then_closed(sock)
    expect_logged(cluster, marks, expected)
    expect_refused(cluster, {i: ["refused: bad frame from"] for i in cluster.ids})
    cluster.assert_healthy()


# ------------------------------------------------------------------ peer hellos and messages


def test_the_old_unauthenticated_hello_is_refused_on_every_port(cluster, marks):
    expected: dict[int, list[str]] = {i: [] for i in cluster.ids}
    for node_id in cluster.ids:
        claimed = other_member(cluster, node_id)
        with connect(cluster.peer_port(node_id)) as sock:
            send(sock, hello(claimed, cluster.cluster_id))
            challenge_then_closed(sock)
        with connect(cluster.client_port(node_id)) as sock:  # a peer hello is no client request
            send(sock, hello(claimed, cluster.cluster_id))
            assert "malformed client request" in closed_because(sock)
    expect_logged(cluster, marks, expected)
    expect_refused(cluster, {i: ["is not a handshake message of version 1"] for i in cluster.ids})
    cluster.assert_healthy()


def test_hellos_with_the_secret_but_the_wrong_cluster_member_or_target(cluster, marks):
    """Even a holder of the secret must name this cluster, a member other than the node, and
    the node it reached."""
    wrong = bytes(b ^ 0xFF for b in cluster.cluster_id)
    for node_id in cluster.ids:
        port = cluster.peer_port(node_id)
        for as_node, cluster_id in (
            (other_member(cluster, node_id), wrong),
            (9, None),
            (node_id, None),
        ):
            with pytest.raises(AssertionError, match="refused the hello"):
                open_peer(port, as_node, cluster_id or cluster.cluster_id, cluster.directory)
    expect_refused(cluster, {
        i: ["of another cluster", "hello from node 9, which is not a peer member",
            f"hello claiming to be this node ({i}) itself"]
        for i in cluster.ids
    })  # fmt: skip
    cluster.assert_healthy()


def stranger_hello(cid: bytes) -> bytes:
    """A hello as a stranger who knows everything public and makes up the MAC."""
    return pack({"auth": 1, "node": 1, "cluster": cid, "to": 2, "nonce": b"n" * 32,
                 "mac": b"m" * 32})  # fmt: skip


MALFORMED_HELLOS: list[tuple[str, Any]] = [
    # (case, payload from the cluster id)
    ("old hello", lambda cid: pack({"node": 1, "cluster": cid})),
    ("no cluster", lambda cid: pack({"auth": 1, "node": 1, "to": 2})),
    ("node a word", lambda cid: pack({"auth": 1, "node": "one", "cluster": cid})),
    ("cluster none", lambda cid: pack({"auth": 1, "node": 1, "cluster": None})),
    ("a list", lambda cid: pack([1, cid])),
    ("a string", lambda cid: pack("hello")),
    ("not msgpack", lambda cid: b"\xc1"),
    ("empty", lambda cid: b""),
    ("a huge map", lambda cid: b"\xdf\xff\xff\xff\xff"),
    ("deep nesting", lambda cid: b"\x91" * 900 + b"\xc0"),
    ("made-up mac", stranger_hello),
]


@pytest.mark.parametrize(
    "make", [c[1] for c in MALFORMED_HELLOS], ids=[c[0] for c in MALFORMED_HELLOS]
)
def test_malformed_or_forged_peer_hello_is_refused(cluster, marks, make):
    for port in cluster.peer_ports:
        with connect(port) as sock:
            send(sock, frame(make(cluster.cluster_id)))
            challenge_then_closed(sock)
    expect_refused(cluster, {i: [": refused: "] for i in cluster.ids})
    cluster.assert_healthy()


def test_a_silent_peer_connection_is_closed_at_the_hello_deadline(cluster, marks):
    with connect(cluster.peer_ports[0]) as sock:
        started = time.monotonic()
        challenge_then_closed_within(sock, 10)
        assert time.monotonic() - started >= 4  # HELLO_TIMEOUT_S is 5 s
    expect_refused(cluster, {cluster.ids[0]: ["no completed handshake within 5 s"]})


def challenge_then_closed_within(sock: socket.socket, timeout: float) -> None:
    received = wait_closed(sock, timeout)
    assert len(FrameDecoder(MAX_HELLO_FRAME).feed(received)) == 1, received


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"\xc1", "undecodable message"),
        (b"", "undecodable message"),
        (pack("not a message"), "undecodable message"),
        (pack([codec.CODEC_VERSION, 99, 1, 1]), "unknown message tag"),
        (pack([codec.CODEC_VERSION + 1, 7, 1, 1, 0]), "unsupported codec version"),
        (pack([codec.CODEC_VERSION, 7, 1, 1]), "expected 1 fields"),
        (pack([codec.CODEC_VERSION, 7, 1, 1, -1]), "undecodable message"),
        (pack([codec.CODEC_VERSION, 7, 1, 1, 2**64 - 1]), "undecodable message"),
        (pack([codec.CODEC_VERSION, 6, 1, 1, [[1, 2**63, b"x"]]]), "undecodable message"),
        (b"\x91" * 100_000 + b"\xc0", "undecodable message"),  # deep nesting
        (b"\xdd\xff\xff\xff\xff", "undecodable message"),  # an array of 2**32-1 items
    ],
    ids=["invalid byte", "empty", "a string", "unknown tag", "codec version", "too few fields",
         "negative", "too big", "forwarded seq too big", "deep nesting", "huge array"],
)  # fmt: skip
def test_member_then_undecodable_message(cluster, marks, message, reason):
    """A member's bad message (with a valid MAC) is refused and logged every time."""
    expected: dict[int, list[str]] = {i: [] for i in cluster.ids}
    for node_id in cluster.ids:
        claimed = other_member(cluster, node_id)
        with member(cluster, node_id) as conn:
            conn.send_payload(message)
            assert conn.closed_by_node()
        expected[node_id] += [f"undecodable message from node {claimed}", reason]
        with connect(cluster.client_port(node_id)) as sock:  # to a client port, too
            send(sock, hello(claimed, cluster.cluster_id) + frame(message))
            why = closed_because(sock)
            if len(message) > PRE_HELLO:  # refused at its header: no hello came before it
                assert f"exceeds the {PRE_HELLO}-byte limit" in why
            else:
                assert "malformed client request" in why
    expect_logged(cluster, marks, expected)
    cluster.assert_healthy()


def test_member_then_message_signed_as_another_node(cluster, marks):
    expected: dict[int, list[str]] = {i: [] for i in cluster.ids}
    for node_id in cluster.ids:
        claimed = other_member(cluster, node_id)
        forged = other_member(cluster, claimed)
        with member(cluster, node_id) as conn:
            conn.send(CatchupRequest(forged, node_id, 1))
            assert conn.closed_by_node()
        expected[node_id].append(f"node {claimed} sent a message signed as node {forged}")
    expect_logged(cluster, marks, expected)
    cluster.assert_healthy()


# ------------------------------------------------------------------ client requests


@pytest.mark.parametrize(
    "payload",
    [
        pack([1, 2, 3]),
        pack(42),
        pack(None),
        pack(b"bytes"),
        pack({}),
        pack({"op": "status"}),
        pack({"xid": 1}),
        pack({"xid": "1", "op": "status"}),
        pack({"xid": 1.0, "op": "status"}),
        pack({"xid": True, "op": "status"}),
        pack({"xid": 1, "op": 5}),
        pack({"xid": 1, "op": None}),
        pack({1: 2}),
        pack({"xid": 1, "op": "status"}) + b"\x00",  # trailing bytes
        b"\xc1",
        b"",
    ],
)
def test_client_frame_that_is_not_a_request(cluster, marks, payload):
    for port in cluster.client_ports:
        with connect(port) as sock:
            send(sock, frame(payload))
            assert "malformed client request" in closed_because(sock)
    cluster.assert_healthy()


@pytest.mark.parametrize("op", ["nope", "", "OP_STATUS", "_op_status", "__class__", "x" * 10_000])
def test_client_unknown_op_is_answered_and_the_connection_stays_usable(cluster, marks, op):
    for port in cluster.client_ports:
        with connect(port) as sock:
            talk = Conversation(sock)
            # After a hello: a frame before it may hold only PRE_HELLO bytes (the longest op).
            assert "ok" in talk.ask(sessionless_hello(40, b"unknown op"))
            reply = talk.ask({"xid": 41, "op": op})
            assert reply["xid"] == 41
            assert reply["err"] == "BadArguments"
            assert "unknown operation" in reply["msg"]
            status = talk.ask({"xid": 42, "op": "status"})
            assert status["xid"] == 42
            assert status["ok"]["id"] == cluster.node_of_port(port)
    cluster.assert_healthy()


MALFORMED_REQUESTS: list[dict[str, Any]] = [
    {"op": "hello"},
    {"op": "hello", "client": 0},
    {"op": "hello", "client": -1},
    {"op": "hello", "client": 2**63},
    {"op": "hello", "client": "me"},
    {"op": "hello", "client": 1},  # ids below 2**16 are the cluster's own
    {"op": "hello", "client": 1 << 20, "after": -1},
    {"op": "hello", "client": 1 << 20, "watches": "all"},
    {"op": "hello", "client": 1 << 20, "watches": [[1, "/", "sometimes"]]},
    {"op": "hello", "client": 1 << 20, "watches": [[1, "no-slash", "data"]]},
    {"op": "hello", "client": 1 << 20, "session": "yes"},
    {"op": "hello", "client": 1 << 20},  # no secret
    {"op": "hello", "client": 1 << 20, "secret": b"short"},
    {"op": "hello", "client": 1 << 20, "secret": b"s" * 16},  # not the id the secret derives
    {"op": "hello", "client": 1 << 62, "secret": b"s" * 16},  # ... nor is this one
    {"op": "ping"},  # before hello
    {"op": "watch", "wid": 1, "path": "/", "mode": "persistent"},  # before hello
    {"op": "open_session", "seq": 1},  # before hello
    {"op": "write", "seq": 1, "data": encode_op(Create("/x", b""))},  # before hello
    {"op": "read"},
    {"op": "read", "kind": "get"},
    {"op": "read", "kind": "get", "path": 5},
    {"op": "read", "kind": "get", "path": "no-slash"},
    {"op": "read", "kind": "get", "path": "/a//b"},
    {"op": "read", "kind": "explode", "path": "/"},
    {"op": "read", "kind": ["get"], "path": "/"},
    {"op": "read", "kind": "get", "path": "/", "local": True, "min_zxid": -1},
    {"op": "read", "kind": "get", "path": "/", "local": True, "min_zxid": "0"},
]


def test_client_malformed_requests_get_bad_arguments(cluster, marks):
    for port in cluster.client_ports:
        with connect(port) as sock:
            talk = Conversation(sock)
            for xid, request in enumerate(MALFORMED_REQUESTS, start=100):
                reply = talk.ask({**request, "xid": xid})
                assert reply["xid"] == xid
                assert reply.get("err") == "BadArguments", (request, reply)
            # after a proper hello, malformed writes are refused before reaching the log
            assert "ok" in talk.ask(sessionless_hello(1, b"malformed"))
            for xid, request in enumerate(
                [
                    {"op": "write", "seq": 0, "data": encode_op(Create("/x", b""))},
                    {"op": "write", "seq": 1, "data": "text"},
                    {"op": "write", "seq": 1, "data": b"\xc1"},
                    {"op": "write", "seq": 1, "data": pack(["create", "/x"])},
                    {"op": "write", "seq": 1},
                    {"op": "watch", "wid": -1, "path": "/", "mode": "persistent"},
                    {"op": "watch", "wid": 1, "path": "/", "mode": "forever"},
                    {"op": "watch", "wid": 1, "path": "/", "mode": "data", "after": "x"},
                    {"op": "unwatch", "wid": "one"},
                    {"op": "open_session", "seq": 0},
                    {"op": "read", "kind": "stat", "path": "/", "watch": 1},
                    {"op": "read", "kind": "ephemerals", "session": -5},
                    {"op": "write", "seq": 1, "data": encode_op(CloseSession(1 << 20))},
                ],
                start=200,
            ):
                reply = talk.ask({**request, "xid": xid})
                assert reply.get("err") == "BadArguments", (request, reply)
    cluster.assert_healthy()


# ------------------------------------------------------------------ many idle connections


def test_many_connections_opened_and_left_idle(cluster, marks):
    per_port = 100
    held: list[socket.socket] = []
    try:
        for port in cluster.client_ports + cluster.peer_ports:
            for i in range(per_port):
                sock = socket.create_connection((HOST, port), timeout=5)
                held.append(sock)
                if i % 2:  # half of them also start a frame they never finish
                    send(sock, struct.pack(">IIB", MAX_FRAME, 0, PROTOCOL_VERSION) + b"x" * 100)
        # While they are all open, the cluster keeps working through every node.
        cluster.assert_healthy()
    finally:
        for sock in held:
            sock.close()
    cluster.assert_healthy()


# ------------------------------------------------------------------ clusters of their own


def test_write_with_seq_beyond_the_codec_range_is_refused(fresh_cluster):
    """A client's ``seq`` above 2**63-1 travels in the leader's Accept, which every follower's
    codec refuses, and in the leader's WAL, which recovery refuses: it must be refused first."""
    cluster = fresh_cluster
    leader = cluster.leader()
    problems = []
    with connect(cluster.client_port(leader)) as sock:
        talk = Conversation(sock)
        assert "ok" in talk.ask(sessionless_hello(1, b"beyond the codec"))
        request = {"xid": 2, "op": "write", "seq": 2**63, "data": encode_op(Create("/p", b""))}
        try:
            reply = talk.ask(request, timeout=3)
            if reply.get("err") != "BadArguments":
                problems.append(f"seq 2**63 was answered {reply}")
        except AssertionError as exc:
            problems.append(f"seq 2**63 got no answer ({exc})")
    # The node that took the write must still be able to restart from its disk.
    assert cluster.paxctl("cluster", "stop", str(leader), "--dir", str(cluster.directory),
                          "--grace", "2").returncode == 0  # fmt: skip
    assert (
        cluster.paxctl("cluster", "start", str(leader), "--dir", str(cluster.directory)).returncode
        == 0
    )
    try:
        cluster.wait_healthy(timeout=8)
    except AssertionError:
        problems.append(f"node {leader} does not come back:\n{cluster.log_tail(leader, 5)}")
    assert not problems, "\n".join(problems)
    cluster.assert_healthy()


def test_concurrent_max_size_writes_leave_the_cluster_working(fresh_cluster):
    """Writes of the largest data a znode may hold, several at once, are legal: the leader
    batches them into one slot, and the Accept carrying it must still reach the followers."""
    cluster = fresh_cluster
    leader = cluster.leader()

    async def one(i: int) -> str:
        async with Client([(HOST, cluster.client_port(leader))], timeout=8) as client:
            try:
                return await client.create(f"/big-{i}", bytes([i]) * MAX_DATA)
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"

    async def all_of_them() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(6)))

    results = asyncio.run(all_of_them())
    raised = {  # each distinct exception the nodes logged, e.g. the one that wedged them
        f"node {i}: {line}"
        for i in cluster.ids
        for line in cluster.log_path(i).read_text(errors="replace").splitlines()
        if line.startswith("paxctl.") or ("Error: " in line and not line.startswith(" "))
    }
    assert results == [f"/big-{i}" for i in range(6)], "\n".join([*results, *sorted(raised)])
    cluster.assert_healthy()


# ------------------------------------------------------------------ reads that can never be served


def test_reads_and_hellos_naming_a_zxid_no_node_reached_are_refused_not_parked(cluster):
    """A client may name a zxid (or a session id) no node reached, a bogus or foreign one: on a
    quiet cluster its slot is never applied, so every node, leader or follower, refuses it
    once the leader's read index shows it does not exist, and nothing waits (before: each
    request stayed parked, holding its bytes, until its connection closed). Waiters on a
    lagging follower, and their drop with their connection: tests/unit/test_engine_waiting.py."""
    for port in cluster.client_ports:
        with connect(port) as sock:
            talk = Conversation(sock)
            assert "ok" in talk.ask(sessionless_hello(1, b"waiting 8"))
            status = talk.ask({"xid": 2, "op": "status"})["ok"]
            base, applied = int(status["waiting_reads"]), int(status["applied"])
            # Far enough never to be reached, near enough to be asked about (a zxid more than
            # 2**20 slots beyond what the node knows is chosen is refused at sight instead).
            never = zxid_of(applied + 100_000, 0)
            read = {"op": "read", "kind": "get", "path": "/", "local": True, "min_zxid": never}
            for xid in range(3, 13):
                send(sock, frame(pack({**read, "xid": xid})))
            answers = [talk.answer() for _ in range(10)]
            assert sorted(a["xid"] for a in answers) == list(range(3, 13))
            for a in answers:
                assert a.get("err") == "BadArguments", a
                assert "is ahead of the cluster" in a["msg"], a
            unknown = {**sessionless_hello(13, b"waiting 8"), "client": never, "session": True}
            refused = talk.ask(unknown)
            assert refused.get("err") == "SessionExpired", refused
            assert refused["msg"] == f"session {never:#x} unknown"
            assert int(talk.ask({"xid": 14, "op": "status"})["ok"]["waiting_reads"]) == base
    cluster.assert_healthy()
