"""Resource limits of a node's client port and process, on real node processes.

Each test starts its own one-node cluster (``paxctl node start --bootstrap``) with the limit
under test set low, reproduces a break seen before the limits existed, and checks that the node
refuses or drops only the offender, with a clear reason, while other clients keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from client_wire import closing_notice
from conftest import HOST, find_base_port, paxctl_command, wait_until

from paxctl.client import Client, SyncClient
from paxctl.protocol.codec import decode_from_server
from paxctl.protocol.framing import MAX_FRAME, PROTOCOL_VERSION, FrameDecoder, encode_frame
from paxctl.protocol.messages import WatchEvents
from paxctl.protocol.secrets import temporary_id
from paxctl.server.secret import create_secret
from paxctl.statemachine.errors import ZnodeError

pytestmark = pytest.mark.integration


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


class OneNode:
    """A one-node cluster of this test's own: ``paxctl node start`` with extra flags, its
    output in ``node.log``; ``nofile`` starts it under that RLIMIT_NOFILE (soft and hard)."""

    def __init__(self, tmp: Path, *flags: str, nofile: int | None = None) -> None:
        base = find_base_port(1)
        self.port = base + 1
        self.log_path = tmp / "node.log"
        secret = tmp / "cluster.secret"
        if not secret.exists():
            create_secret(str(secret))
        self.argv = paxctl_command(
            "node", "start", "--id", "1", "--data", str(tmp / "data"), "--bootstrap",
            "--peers", f"1={HOST}:{base + 101}", "--client", f"{HOST}:{self.port}",
            "--secret-file", str(secret), *flags,
        )  # fmt: skip
        self.nofile = nofile
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        nofile = self.nofile

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=limit
            )
        wait_until(lambda: "clients on" in self.log() or self.proc.poll() is not None, 20)
        assert self.proc.poll() is None, f"the node did not start:\n{self.log()}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, timeout: float = 10) -> SyncClient:
        return SyncClient([(HOST, self.port)], timeout=timeout)

    def assert_alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, (
            f"the node exited {self.proc and self.proc.returncode}:\n{self.log()[-3000:]}"
        )

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@contextlib.contextmanager
def one_node(tmp: Path, *flags: str, nofile: int | None = None) -> Iterator[OneNode]:
    node = OneNode(tmp, *flags, nofile=nofile)
    try:
        yield node
    finally:
        node.stop()


def connect(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=5)


def is_open(sock: socket.socket) -> bool:
    """Whether the node has not closed ``sock`` (reads and keeps nothing but a notice)."""
    sock.settimeout(0)
    try:
        while True:
            data = sock.recv(65536, socket.MSG_PEEK)
            if not data:
                return False
            if len(data) < 65536:  # all there is: is an EOF behind it?
                sock.recv(len(data))  # consume what was peeked (a closing notice)
                return sock.recv(1, socket.MSG_PEEK) != b""
            sock.recv(len(data))
    except (BlockingIOError, TimeoutError):
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(5)


class Talk:
    """Framed requests and whatever frames come back, on one raw connection."""

    def __init__(self, port: int) -> None:
        self.sock = connect(port)
        self.decoder = FrameDecoder()
        self.frames: list[bytes] = []

    def send(self, doc: dict[str, Any]) -> None:
        self.sock.sendall(encode_frame(pack(doc)))

    def next(self, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.frames:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            data = self.sock.recv(1 << 20)
            assert data, "the node closed the connection"
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)

    def ask(self, doc: dict[str, Any]) -> dict[str, Any]:
        self.send(doc)
        while True:
            reply: dict[str, Any] = msgpack.unpackb(self.next(), raw=False)
            if reply.get("xid") == doc["xid"]:
                return reply

    def hello(self, watches: list[list[Any]] | None = None, xid: int = 1) -> None:
        secret = b"a client of test_limits"  # a hello proves the temporary id it names
        doc = {
            "xid": xid,
            "op": "hello",
            "client": temporary_id(secret),
            "secret": secret,
            "watches": watches or [],
        }
        assert "ok" in self.ask(doc)


# ------------------------------------------------------------------ descriptors


def test_connections_beyond_the_descriptor_limit_are_refused_and_the_node_keeps_working(
    tmp_path,
):
    """Before: 1,100 idle connections under a 1024 limit made the leader exit 70 at its next
    snapshot, after thousands of accept tracebacks: the same here."""
    flags = ("--snapshot-every", "20", "--max-connections-per-address", "5000")
    with one_node(tmp_path, *flags, nofile=1024) as node:
        with node.client() as c:
            c.create("/before", b"x")
            mark = len(node.log())
            flood = [connect(node.port) for _ in range(1100)]
            try:
                msg, _ = closing_notice(flood[-1])  # refused at once, saying why
                assert "open-file limit" in msg
                wait_until(lambda: sum(not is_open(s) for s in flood) > 0, 10, what="refusals")
                time.sleep(0)  # the node has seen every connect by the time one is refused
                kept = [s for s in flood if is_open(s)]
                assert 900 < len(kept) < 1024 - 64, len(kept)
                # The existing client is served, writes go on and snapshots are written.
                for i in range(60):
                    c.create(f"/during-{i}", b"y" * 100)
                assert c.get("/during-59")[0] == b"y" * 100
                status = c.status()
                assert status["client_refused"] > 0
                assert status["client_connections"] == len(kept) + 1
                wait_until(lambda: "snapshot at slot" in node.log()[mark:], 10, what="a snapshot")
                node.assert_alive()
            finally:
                for s in flood:
                    s.close()
            # Once the flood is gone, new connections are taken again.
            with node.client() as again:
                assert again.get("/before")[0] == b"x"
        text = node.log()[mark:]
        assert "Traceback" not in text and "Too many open files" not in text
        assert text.count("refused") < 10, text[-2000:]  # throttled: one line per 10 s
        assert node.stop() == 0


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (("--max-connections-per-address", "3"), "(--max-connections-per-address)"),
        (("--max-connections", "3"), "(--max-connections)"),
    ],
)
def test_connections_over_a_limit_are_refused_with_the_reason(tmp_path, flags, reason):
    with one_node(tmp_path, *flags) as node:
        kept = [Talk(node.port) for _ in range(3)]
        for talk in kept:
            talk.hello()
        refused = connect(node.port)
        msg, _ = closing_notice(refused)
        assert msg.startswith("connection refused: 3 ") and msg.endswith(reason)
        assert kept[0].ask({"xid": 7, "op": "status"})["ok"]["client_refused"] == 1
        kept.pop().sock.close()  # room again
        wait_until(
            lambda: kept[0].ask({"xid": 8, "op": "status"})["ok"]["client_connections"] == 2, 5
        )
        with node.client() as c:
            c.create("/room", b"")


# ------------------------------------------------------------------ hello


def test_an_oversized_frame_before_hello_is_refused_at_its_header(tmp_path):
    """Before: a stranger could make a node wait for (and buffer) a 4 MiB frame unasked."""
    with one_node(tmp_path, "--max-hello-bytes", "4096") as node:
        sock = connect(node.port)
        sock.sendall(struct.pack(">IIB", 100_000, 0, PROTOCOL_VERSION))  # no payload follows
        msg, _ = closing_notice(sock)
        assert "frame of 100000 bytes exceeds the 4096-byte limit" in msg
        assert "before its hello" in msg
        # After a hello, the full frame limit applies.
        talk = Talk(node.port)
        talk.hello()
        talk.sock.sendall(struct.pack(">IIB", MAX_FRAME + 1, 0, PROTOCOL_VERSION))
        msg, _ = closing_notice(talk.sock)
        assert f"exceeds the {MAX_FRAME}-byte limit" in msg
        with node.client() as c:
            c.create("/fine", b"")
        node.assert_alive()


def test_a_client_that_never_says_hello_is_closed_at_the_deadline(tmp_path):
    with one_node(tmp_path, "--hello-timeout-ms", "300", "--idle-timeout-ms", "600") as node:
        start = time.monotonic()
        silent = connect(node.port)
        greeted = Talk(node.port)
        greeted.hello()
        msg, closed = closing_notice(silent)
        assert "no hello within 300 ms" in msg
        assert closed - start >= 0.29
        assert is_open(greeted.sock)  # said hello: the idle timeout applies, not the deadline
        msg, idle_closed = closing_notice(greeted.sock)
        assert "nothing received for 600 ms" in msg and idle_closed - start >= 0.59
        # A client with a session is governed by its session (its pings keep it).
        with node.client() as c:
            c.create("/s", b"")
        node.assert_alive()


def test_a_refused_hello_leaves_the_pre_hello_limits_in_place(tmp_path):
    """Before: any decoded hello, even one refused or parked for ever (``after`` = 2**62), lifted
    the pre-hello frame limit and deadline, so a stranger could then park 4 MiB hellos."""
    with one_node(tmp_path, "--max-hello-bytes", "4096", "--hello-timeout-ms", "1500") as node:
        talk = Talk(node.port)
        secret = b"a client of test_limits"
        hello = {"op": "hello", "client": temporary_id(secret), "secret": secret}
        refused = talk.ask({"xid": 1, **hello, "after": 2**62})
        assert refused["err"] == "Unavailable" and "slots beyond slot" in refused["msg"]
        talk.sock.sendall(struct.pack(">IIB", 100_000, 0, PROTOCOL_VERSION))  # still too big
        msg, _ = closing_notice(talk.sock)
        assert "exceeds the 4096-byte limit" in msg and "before its hello" in msg
        parked = Talk(node.port)  # refused, never accepted: the hello deadline still applies
        assert "err" in parked.ask({"xid": 1, **hello, "after": 2**62})
        msg, _ = closing_notice(parked.sock)
        assert "no hello within 1500 ms" in msg
        accepted = Talk(node.port)
        accepted.hello()  # accepted: the full frame limit
        accepted.sock.sendall(struct.pack(">IIB", MAX_FRAME + 1, 0, PROTOCOL_VERSION))
        msg, _ = closing_notice(accepted.sock)
        assert f"exceeds the {MAX_FRAME}-byte limit" in msg
        node.assert_alive()


# ------------------------------------------------------------------ what a request may hold


def test_a_huge_msgpack_map_is_refused_quickly_and_costs_nobody_else(tmp_path):
    """Before: a 2.3 MB map cost the event loop 0.4 s each time."""
    with one_node(tmp_path) as node:
        talk = Talk(node.port)
        talk.hello()
        huge = pack({f"key-{i}": i for i in range(230_000)})
        assert len(huge) > 2_300_000
        talk.sock.sendall(encode_frame(huge))
        msg, _ = closing_notice(talk.sock)
        assert "exceeds max_map_len" in msg
        with node.client() as c:
            c.create("/after", b"")
        assert "max_map_len" in node.log()


def test_watches_beyond_the_cap_get_too_many_watches(tmp_path):
    with one_node(tmp_path, "--max-watches-per-connection", "3") as node:

        async def run() -> None:
            async with Client([(HOST, node.port)]) as c:
                for i in range(3):
                    await c.watch(f"/w{i}")
                with pytest.raises(ZnodeError) as caught:
                    await c.watch("/w3")
                assert caught.value.code == "TooManyWatches"
                assert "--max-watches-per-connection" in str(caught.value)
                await c.create("/w0", b"")  # its watches still work
            async with Client([(HOST, node.port)]) as other:  # another connection: its own 3
                for i in range(3):
                    await other.watch(f"/v{i}")

        asyncio.run(run())
        node.assert_alive()


def test_100000_recursive_watch_events_arrive_split_across_frames(tmp_path):
    """Before: 100,000 recursive watches fired by one write made a 5.6 MB push, over the frame
    limit, and the watcher was disconnected."""
    with one_node(tmp_path) as node:
        talk = Talk(node.port)
        talk.hello()  # small, then again with the watches (as the client does)
        talk.hello([[wid, "/", "recursive"] for wid in range(100_000)], xid=2)
        fire = "/a-node-with-a-name-long-enough-to-make-56-bytes-per-event"
        with node.client() as c:
            c.create(fire, b"")
        events, frames = 0, 0
        while events < 100_000:
            push = decode_from_server(talk.next())
            assert isinstance(push, WatchEvents)
            frames += 1
            events += len(push.events)
            assert all(e.path == fire and e.kind == "created" for e in push.events)
        assert events == 100_000 and frames >= 2
        assert talk.ask({"xid": 3, "op": "status"})["ok"]["watches"] == 100_000  # still on


# ------------------------------------------------------------------ clients that do not read


#: Linux TCP states (``struct tcp_info``'s first byte): the node closed or reset the socket.
_TCP_CLOSE, _TCP_CLOSE_WAIT = 7, 8


def closed_by_node(sock: socket.socket, timeout: float = 10) -> bool:
    """Whether the node closed (or reset) ``sock`` within ``timeout`` seconds, told by the
    socket's TCP state, without reading: a client that starts reading would no longer be one
    that does not read, and the node would rightly keep it."""

    def closed() -> bool:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        return state in (_TCP_CLOSE, _TCP_CLOSE_WAIT)

    try:
        wait_until(closed, timeout)
    except AssertionError:
        return False
    return True


def test_a_client_that_does_not_read_is_dropped_and_others_are_unaffected(tmp_path):
    """Before: a client that never read its replies pinned 16 MiB and was never dropped."""
    with one_node(tmp_path, "--write-stall-ms", "500") as node:
        with node.client() as c:
            c.create("/big", b"z" * (1 << 20))
            get = encode_frame(pack({"xid": 5, "op": "read", "kind": "get", "path": "/big"}))
            stalled, flooded = Talk(node.port), Talk(node.port)
            for lazy in (stalled, flooded):
                lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                lazy.hello()
            flooded.sock.sendall(get * 64)  # 64 MiB of answers at once, none of them read
            start = time.monotonic()
            for _ in range(12):  # one request at a time: the node stops reading them when its
                # answers pile up, and drops it (its queue full, or unread for 500 ms: which
                # comes first depends on the kernel's socket buffers and the machine's load)
                with contextlib.suppress(OSError):  # dropped already: the node reset it
                    stalled.sock.sendall(get)
                # Meanwhile another client is served as usual; its read is answered after the
                # one sent before it, so the stalled client's answers pile up one by one.
                assert c.get("/big")[0] == b"z" * (1 << 20)
            for i in range(20):
                c.set("/big", bytes([i]) * 10)
            assert time.monotonic() - start < 10
            # The flood passed the queue cap: dropped. The one-at-a-time client may end with
            # every answer taken by the kernel's socket buffers and nothing queued in the node
            # (then it is kept, costing the node no memory, until its idle timeout); when the
            # node does queue for it, the stall timer drops it (tests/unit/
            # test_client_conn_close.py tests that path on its own).
            wait_until(lambda: "it does not read its replies" in node.log(), 10, what="a drop")
            assert closed_by_node(flooded.sock), "a client that does not read was kept"
            assert c.get("/big")[0] == bytes([19]) * 10
        node.assert_alive()


def test_a_client_with_many_watches_resumes_them_after_a_restart(tmp_path):
    """A hello carrying 400 watches is over the pre-hello frame limit: the client says hello
    without them first, then with them, and every watch fires afterwards."""
    node = OneNode(tmp_path, "--max-hello-bytes", "4096")
    try:

        async def run() -> None:
            async with Client([(HOST, node.port)], timeout=20) as c:
                watches = [await c.watch(f"/many/{i:03d}-with-a-longer-name") for i in range(400)]
                node.stop()
                await asyncio.to_thread(node.start)
                await c.create("/many", b"")
                for i in range(400):
                    await c.create(f"/many/{i:03d}-with-a-longer-name", b"")
                for w in watches:
                    event = await w.get(timeout=20)
                    while event.is_notice:
                        event = await w.get(timeout=20)
                    assert event.type == "created"

        asyncio.run(run())
        node.assert_alive()
    finally:
        node.stop()
