"""The blocking reader (client/blocking.py) drives the client session over plain sockets: the
answers, failover and errors of the asyncio client, without an event loop. The nodes here are
scripted stand-ins on loopback that answer each request as ``answer`` says."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from paxctl.client.blocking import BlockingClient
from paxctl.client.errors import Unavailable
from paxctl.protocol.codec import decode_request, encode_reply
from paxctl.protocol.framing import FrameDecoder, encode_frame
from paxctl.protocol.messages import (
    Failed,
    Hello,
    Ok,
    ReadKind,
    ReadRequest,
    Reply,
    Request,
    SyncRequest,
)
from paxctl.statemachine.errors import NoNode

STAT = {"version": 3, "dataLength": 5}
#: What a stand-in does with a request: a reply; None, hang up; SILENT, nothing at all.
SILENT = Ok(0, 0)
Answer = Callable[[Request], Reply | None]


def node_answer(node: int = 1) -> Answer:
    def answer(req: Request) -> Reply | None:
        if isinstance(req, Hello):
            return Ok(req.xid, 10, {"node": node})
        if isinstance(req, ReadRequest) and req.kind is ReadKind.GET:
            if req.path != "/x":
                return Failed(req.xid, 10, "NoNode", req.path)
            return Ok(req.xid, 11, {"data": b"hello", "stat": STAT})
        if isinstance(req, ReadRequest) and req.kind is ReadKind.STAT:
            return Ok(req.xid, 11, STAT)
        if isinstance(req, SyncRequest):
            return Ok(req.xid, 12, None)
        raise AssertionError(f"unexpected {req}")

    return answer


class FakeNode:
    """A listening socket on loopback whose connections are answered by ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.seen: list[Request] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        decoder = FrameDecoder()
        with conn:
            while data := conn.recv(65536):
                for payload in decoder.feed(data):
                    req = decode_request(payload)
                    self.seen.append(req)
                    reply = self.answer(req)
                    if reply is None:
                        return
                    if reply is SILENT:
                        continue
                    conn.sendall(encode_frame(encode_reply(reply)))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def nodes() -> Iterator[Callable[[Answer], FakeNode]]:
    made: list[FakeNode] = []

    def make(answer: Answer) -> FakeNode:
        made.append(FakeNode(answer))
        return made[-1]

    yield make
    for node in made:
        node.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_read_is_answered_and_the_zxid_remembered(nodes: Any) -> None:
    node = nodes(node_answer())
    with BlockingClient(f"127.0.0.1:{node.port}") as client:
        assert client.get("/x") == (b"hello", STAT)
        assert client.stat("/x") == STAT
        client.sync()
        assert client.last_zxid == 12
        assert client.connected_to == ("127.0.0.1", node.port)
    hello, get = node.seen[:2]
    assert isinstance(hello, Hello) and not hello.session  # a reader opens no session
    assert isinstance(get, ReadRequest) and (get.path, get.local) == ("/x", False)


def test_a_znode_error_is_raised_as_such(nodes: Any) -> None:
    node = nodes(node_answer())
    with BlockingClient(f"127.0.0.1:{node.port}") as client, pytest.raises(NoNode):
        client.get("/missing")


def test_a_refusing_server_is_passed_over_for_the_next(nodes: Any) -> None:
    node = nodes(node_answer(2))
    servers = f"127.0.0.1:{closed_port()},127.0.0.1:{node.port}"
    for _ in range(4):  # the first server tried is drawn at random
        with BlockingClient(servers, timeout=5) as client:
            assert client.get("/x")[0] == b"hello"


def test_a_server_that_hangs_up_mid_request_is_failed_over(nodes: Any) -> None:
    def hangs_up(req: Request) -> Reply | None:
        return node_answer()(req) if isinstance(req, Hello) else None

    bad, good = nodes(hangs_up), nodes(node_answer(2))
    for _ in range(4):
        with BlockingClient(f"127.0.0.1:{bad.port},127.0.0.1:{good.port}", timeout=5) as c:
            assert c.get("/x")[0] == b"hello"
            assert c.connected_to == ("127.0.0.1", good.port)


def test_no_server_at_all_is_unavailable_at_once() -> None:
    started = time.monotonic()
    with (
        BlockingClient(f"127.0.0.1:{closed_port()},127.0.0.1:{closed_port()}") as client,
        pytest.raises(Unavailable, match="connection refused"),
    ):
        client.get("/x")
    assert time.monotonic() - started < 5  # not the 10 s timeout: nothing is coming back


def test_a_server_that_never_answers_runs_out_the_timeout(nodes: Any) -> None:
    def silent(req: Request) -> Reply | None:
        return node_answer()(req) if isinstance(req, Hello) else SILENT

    node = nodes(silent)
    started = time.monotonic()
    with (
        BlockingClient(f"127.0.0.1:{node.port}", timeout=0.5) as client,
        pytest.raises(Unavailable),
    ):
        client.get("/x")
    assert 0.4 < time.monotonic() - started < 2


def test_a_host_name_is_resolved_and_each_address_tried(nodes: Any) -> None:
    node = nodes(node_answer())  # on 127.0.0.1 only: localhost's ::1, if any, is refused
    with BlockingClient(f"localhost:{node.port}") as client:
        assert client.get("/x")[0] == b"hello"


def test_a_read_may_name_a_session_of_its_own() -> None:
    """``ephemerals`` asks for another session's: its ``session`` is the read's, not the
    argument naming the client session that starts it (calls.read takes that positionally)."""
    from paxctl.client.calls import new_session, read

    session = new_session([("127.0.0.1", closed_port())], 10.0, None)
    call = read(session, "ephemerals", "/", False, session=42)(0.0, 1000.0)
    request = session._calls[call].request
    assert isinstance(request, ReadRequest)
    assert (request.kind, request.session) == (ReadKind.EPHEMERALS, 42)
