"""Taking over someone else's session through a client port, on a real 3-node cluster (issue 14).

Before: a hello carrying a victim's session id (which `paxctl sessions` lists) and then a close
deleted the victim's ephemerals; a write with seq 2**63-1 made every later write of the victim
indeterminate; a hello without a session could name any id, an open session's included, and
write as it. Now a session is resumed only with its secret, a sessionless hello speaks under the
id its own secret derives, and a seq far ahead of the session's last is refused, not recorded.
The forged requests are built with the project's own codec and framing."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest

from paxctl.client.sync import SyncClient
from paxctl.protocol.codec import decode_from_server, encode_request
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.framing import FrameDecoder, encode_frame
from paxctl.protocol.messages import (
    CloseSessionRequest,
    Failed,
    FromServer,
    Hello,
    Ok,
    Request,
    WriteRequest,
)
from paxctl.protocol.secrets import temporary_id
from paxctl.statemachine.ops import Create, SetData

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
ATTACKER_SECRET = b"the attacker's own secret bytes!"


class Wire:
    """One client connection speaking typed requests, as a hostile program would."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = FrameDecoder()
        self.frames: list[bytes] = []

    def ask(self, req: Request, timeout: float = 5) -> FromServer:
        self.sock.sendall(encode_frame(encode_request(req)))
        deadline = time.monotonic() + timeout
        while True:
            while self.frames:
                frame = decode_from_server(self.frames.pop(0))
                if isinstance(frame, Ok | Failed) and frame.xid == req.xid:
                    return frame
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"no answer to {type(req).__name__} in {timeout}s") from None
            assert data, "the node closed the connection instead of answering"
            self.frames += self.decoder.feed(data)


@contextlib.contextmanager
def wire(port: int) -> Iterator[Wire]:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        yield Wire(sock)


def refused(frame: FromServer, code: ErrorCode) -> str:
    assert isinstance(frame, Failed) and frame.code == code, frame
    return frame.message


@pytest.fixture
def victim(cluster) -> Iterator[SyncClient]:
    """A client with a live session (pinged in the background) and two ephemerals."""
    servers = ",".join(f"{HOST}:{p}" for p in cluster.client_ports)
    client = SyncClient(servers, timeout=10, session_timeout=5, background=True)
    try:
        client.create("/victim-a", b"", ephemeral=True)
        client.create("/victim-b", b"", ephemeral=True)
        yield client
    finally:
        client.close()


def listed_sessions(cluster) -> list[dict[str, object]]:
    """What `paxctl sessions` tells anyone: the ids to try."""
    servers = f"{HOST}:{cluster.client_ports[0]}"
    done = cluster.paxctl("sessions", "--ephemerals", "-s", servers, "--json")
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, object]] = json.loads(done.stdout)["sessions"]
    return listed


def assert_untouched(cluster, victim: SyncClient, session: int, mark: str) -> None:
    """The victim's session is open with its ephemerals on every node, and its writes work."""
    for port in cluster.client_ports:
        with SyncClient(f"{HOST}:{port}", timeout=5) as reader:
            reader.sync()
            assert sorted(reader.ephemerals(session)) == ["/victim-a", "/victim-b"], port
    assert victim.session_id == session
    assert victim.create(f"/{mark}", b"1") == f"/{mark}"  # definite: a result, not Indeterminate
    assert victim.set(f"/{mark}", b"2")["version"] == 1


def test_a_hello_with_a_listed_session_id_and_no_secret_cannot_close_it(cluster, victim):
    session = victim.session_id
    listing = listed_sessions(cluster)
    assert session in [entry["session"] for entry in listing]
    for entry in listing:  # the listing shows no secret nor anything derived from one
        assert set(entry) == {"session", "timeout_ms", "ephemerals", "paths"}
    for port in cluster.client_ports:
        with wire(port) as w:
            # A wrong secret: refused, and the connection speaks for nobody.
            hello = Hello(1, session, True, secret=ATTACKER_SECRET)
            message = refused(w.ask(hello), ErrorCode.AUTH_FAILED)
            assert f"{session:#x}" in message
            refused(w.ask(CloseSessionRequest(2, 1)), ErrorCode.BAD_ARGUMENTS)
            write = WriteRequest(3, 2**63 - 1, Create("/victim-a/x", b""))
            refused(w.ask(write), ErrorCode.BAD_ARGUMENTS)
            # The same hello without a session names an id its secret does not derive.
            hello = Hello(4, session, False, secret=ATTACKER_SECRET)
            assert "derives" in refused(w.ask(hello), ErrorCode.BAD_ARGUMENTS)
            refused(w.ask(CloseSessionRequest(5, 1)), ErrorCode.BAD_ARGUMENTS)
    assert_untouched(cluster, victim, session, "after-hellos")


def test_a_sessionless_client_cannot_write_as_a_session(cluster, victim):
    session = victim.session_id
    with wire(cluster.client_ports[1]) as w:
        mine = temporary_id(ATTACKER_SECRET)
        assert isinstance(w.ask(Hello(1, mine, secret=ATTACKER_SECRET)), Ok)
        # Its own id has no session: its writes and closes change nothing.
        refused(w.ask(WriteRequest(2, 1, SetData("/victim-a", b"x"))), ErrorCode.SESSION_EXPIRED)
        closed = w.ask(CloseSessionRequest(3, 2))  # closes its own id's: nothing to delete
        assert isinstance(closed, Ok) and closed.value == [], closed
        # Another id, the victim's or a made-up temporary one, cannot be claimed.
        for claimed in (session, mine ^ 1):
            hello = Hello(4, claimed, secret=ATTACKER_SECRET)
            refused(w.ask(hello), ErrorCode.BAD_ARGUMENTS)
    assert_untouched(cluster, victim, session, "after-sessionless")


def test_a_seq_of_2_63_minus_1_leaves_later_writes_definite(cluster, victim):
    """Even the session's own secret holder (a buggy client) cannot poison its sequence."""
    session = victim.session_id
    secret = victim.client._session._secret  # the test's privilege: the victim's own secret
    with wire(cluster.client_ports[2]) as w:
        assert isinstance(w.ask(Hello(1, session, True, secret=secret)), Ok)
        far = WriteRequest(2, 2**63 - 1, Create("/poison", b""))
        assert "ahead of the client's last" in refused(w.ask(far), ErrorCode.BAD_ARGUMENTS)
    assert_untouched(cluster, victim, session, "after-far-seq")
    with SyncClient(f"{HOST}:{cluster.client_ports[0]}", timeout=5) as reader:
        reader.sync()
        assert reader.exists("/poison") is None
