"""The pure parts of the resource limits: connection counting, the limit settings, watch events
split into frames, msgpack limits on requests and peer messages, and the watch cap per
connection (the asyncio parts are tested on real processes:
tests/integration/test_resource_limits.py)."""

from __future__ import annotations

import random
import time

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxctl.core import codec as peer_codec
from paxctl.core.messages import Forward
from paxctl.core.node import Node
from paxctl.core.state import Config
from paxctl.core.types import Command
from paxctl.protocol.codec import (
    MAX_WATCHES,
    NotARequest,
    decode_from_server,
    decode_request,
    encode_push,
    encode_request,
)
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.framing import MAX_FRAME
from paxctl.protocol.messages import (
    Failed,
    Hello,
    Ok,
    ReadKind,
    ReadRequest,
    WatchEvent,
    WatchEvents,
    WatchMode,
    WatchRequest,
    WatchSpec,
    WriteRequest,
)
from paxctl.protocol.pushes import encode_pushes, split_events
from paxctl.protocol.secrets import temporary_id
from paxctl.server.config import ConfigError, NodeConfig
from paxctl.server.engine import EngineConfig, NodeEngine
from paxctl.server.limits import Connections, Limits, fd_budget
from paxctl.server.requests import Frame
from paxctl.statemachine.ops import MAX_DATA, TEMP_CLIENT_BIT, Create, Multi, SetData

# ---------------------------------------------------------------------------- connections


def test_connections_are_counted_per_node_and_per_address_and_released():
    conns = Connections(Limits(max_connections=3, max_connections_per_address=2))
    assert conns.admit("10.0.0.1") is None
    assert conns.admit("10.0.0.1") is None
    refused = conns.admit("10.0.0.1")
    assert refused is not None and "--max-connections-per-address" in refused
    assert conns.admit("10.0.0.2") is None
    refused = conns.admit("10.0.0.3")
    assert refused is not None and "--max-connections" in refused
    assert (conns.total, conns.refused) == (3, 2)
    conns.release("10.0.0.1")
    assert conns.admit("10.0.0.3") is None
    assert conns.from_address("10.0.0.1") == 1
    with pytest.raises(ValueError):
        conns.release("10.9.9.9")


def test_the_descriptor_budget_refuses_before_the_limits_do():
    conns = Connections(Limits(), fd_room=fd_budget(100, 30, 64), fd_ceiling=90)
    assert conns.fd_room == 6
    for _ in range(6):
        assert conns.admit("127.0.0.1") is None
    refused = conns.admit("127.0.0.1")
    assert refused is not None and "open-file limit" in refused
    conns.release("127.0.0.1")
    assert conns.admit("127.0.0.1", fd=95) is not None  # the table is full, whatever the count
    assert conns.admit("127.0.0.1", fd=20) is None
    assert fd_budget(50, 30, 64) == 0


def test_limits_refuse_settings_that_cannot_work():
    with pytest.raises(ValueError, match="one whole frame"):
        Limits(max_queued_bytes=1024)
    with pytest.raises(ValueError):
        Limits(max_connections=0)
    with pytest.raises(ValueError):
        Limits(max_hello_bytes=100)


def test_limits_are_read_from_flags_and_toml_keys():
    base = {"id": 1, "data": "/tmp/x", "peers": "1=127.0.0.1:7101", "client": "h:7001"}
    config = NodeConfig.from_values(
        {**base, "max_connections": "10", "hello_timeout_ms": 250, "max_watches_per_connection": 5}
    )
    assert config.limits.max_connections == 10
    assert config.limits.hello_timeout_ms == 250
    assert config.limits.max_watches_per_connection == 5
    assert config.limits.max_connections_per_address == Limits().max_connections_per_address
    with pytest.raises(ConfigError, match="max_queued_bytes"):
        NodeConfig.from_values({**base, "max_queued_bytes": 0})
    with pytest.raises(ConfigError, match="whole frame"):
        NodeConfig.from_values({**base, "max_queued_bytes": 1000})


# ---------------------------------------------------------------------------- pushes


def _events(n: int, zxids: int = 1, path_len: int = 30) -> WatchEvents:
    events = tuple(
        WatchEvent(i, "created", "/" + "p" * path_len + str(i), 100 + i * zxids // n)
        for i in range(n)
    )
    return WatchEvents(100 + zxids, events)


def test_a_small_push_is_one_frame():
    push = _events(10)
    assert encode_pushes(push) == [encode_push(push)]


def test_100000_recursive_watch_events_of_one_write_split_into_frames_under_the_limit():
    events = tuple(
        WatchEvent(wid, "created", "/some/rather/long/path/to/a/node", 77) for wid in range(100_000)
    )
    push = WatchEvents(77, events)
    assert len(encode_push(push)) > MAX_FRAME
    payloads = encode_pushes(push)
    assert len(payloads) >= 2
    assert all(len(p) <= MAX_FRAME for p in payloads)
    decoded = [decode_from_server(p) for p in payloads]
    assert all(isinstance(d, WatchEvents) for d in decoded)
    got = [e for d in decoded for e in d.events]  # type: ignore[union-attr]
    assert got == list(events)
    # Every frame but the last claims less than the events still to come.
    assert [d.zxid for d in decoded] == [76] * (len(decoded) - 1) + [77]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(1, 4), st.integers(0, 300)),
        min_size=1,
        max_size=60,
    ),
    st.integers(400, 3000),
)
def test_split_keeps_every_event_and_the_clients_bookkeeping_right(spec, limit):
    # events in zxid order; (wid, zxid step, path length)
    zxid, events = 10, []
    for wid, step, length in spec:
        zxid += step % 2
        events.append(WatchEvent(wid, "changed", "/" + "x" * length, zxid))
    push = WatchEvents(zxid + 1, tuple(events))
    parts = split_events(push, limit)
    assert sorted((e for p in parts for e in p.events), key=repr) == sorted(events, key=repr)
    for i, part in enumerate(parts):
        later = [e.zxid for p in parts[i + 1 :] for e in p.events]
        assert all(part.zxid < z for z in later)  # never claims an event not yet sent
        one = list(part.events)
        if len(encode_push(WatchEvents(part.zxid, tuple(one)))) > limit:
            # only a single watch's events of one zxid that alone exceed the limit may
            assert len({(e.wid, e.zxid) for e in one}) == 1
    # the events of one watch at one zxid stay in one frame unless they alone exceed it
    for key in {(e.wid, e.zxid) for e in events}:
        holders = [i for i, p in enumerate(parts) if any((e.wid, e.zxid) == key for e in p.events)]
        size = sum(
            len(msgpack.packb([e.wid, e.kind, e.path, e.zxid]))
            for e in events
            if (e.wid, e.zxid) == key
        )
        if size <= limit - 64:
            assert len(holders) == 1
    # events of one watch keep their order
    for wid in {e.wid for e in events}:
        assert [e for p in parts for e in p.events if e.wid == wid] == [
            e for e in events if e.wid == wid
        ]


# ---------------------------------------------------------------------------- msgpack limits


def test_a_huge_map_from_a_client_is_refused_at_its_header():
    payload = msgpack.packb({f"k{i}": i for i in range(230_000)}, use_bin_type=True)
    assert len(payload) > 2_000_000
    start = time.perf_counter()
    with pytest.raises(NotARequest, match="max_map_len"):
        decode_request(payload)
    assert time.perf_counter() - start < 0.05


def test_the_largest_valid_requests_still_decode():
    big = WriteRequest(1, 1, SetData("/a", b"x" * MAX_DATA, -1))
    assert decode_request(encode_request(big)) == big
    multi = WriteRequest(2, 2, Multi(tuple(Create(f"/n{i}", b"") for i in range(1000))))
    assert decode_request(encode_request(multi)) == multi
    watches = tuple(WatchSpec(i, f"/w/{i}", WatchMode.RECURSIVE) for i in range(MAX_WATCHES))
    secret = bytes(range(64))  # the longest secret a hello may carry
    hello = Hello(3, temporary_id(secret), False, 0, watches, secret)
    assert decode_request(encode_request(hello)) == hello


@pytest.mark.parametrize(
    "doc",
    [
        {"xid": 1, "op": "ping", "junk": list(range(MAX_WATCHES + 1))},
        {"xid": 1, "op": "ping", "junk": "s" * 70_000},
        {"xid": 1, "op": "ping", "junk": msgpack.ExtType(1, b"x")},
    ],
)
def test_requests_beyond_msgpack_limits_are_not_requests(doc):
    with pytest.raises(NotARequest):
        decode_request(msgpack.packb(doc, use_bin_type=True))


def test_peer_messages_beyond_msgpack_limits_are_codec_errors_and_valid_ones_decode():
    cmds = tuple(Command(TEMP_CLIENT_BIT | 1, i, b"x" * 10) for i in range(1, 5000))
    msg = Forward(1, 2, cmds)
    assert peer_codec.decode(peer_codec.encode(msg)) == msg
    hostile = msgpack.packb([peer_codec.CODEC_VERSION, 6, 1, 2, [0] * 70_000])
    with pytest.raises(peer_codec.CodecError, match="max_array_len"):
        peer_codec.decode(hostile)
    hostile = msgpack.packb([peer_codec.CODEC_VERSION, 6, 1, 2, {i: i for i in range(100)}])
    with pytest.raises(peer_codec.CodecError):
        peer_codec.decode(hostile)


# ---------------------------------------------------------------------------- watch cap

WALL = 1_700_000_000_000


class Engine:
    """One single-voter engine with a small watch cap, driven by hand."""

    def __init__(self, cap: int) -> None:
        cfg = Config(1, (1,), election_ticks=2, heartbeat_ticks=1, pre_vote=False)
        self.node = Node(cfg, random.Random(1), None)
        config = EngineConfig(1, (1,), max_watches_per_connection=cap)
        self.engine = NodeEngine(config, self.node, self, None)
        self.frames: list[Frame] = []
        self.xid = 0
        for now in range(0, 2000, 10):
            if self.node.leader_ready:
                break
            self.out(self.engine.tick(now, WALL + now))
        assert self.node.leader_ready

    def persist(self, ready: object) -> None:
        pass

    def out(self, outputs: list) -> None:
        self.frames.extend(o for o in outputs if isinstance(o, Frame))
        for _ in range(50):
            done = self.engine.process()
            self.frames.extend(o for o in done.outputs if isinstance(o, Frame))
            if not done.more:
                return

    def request(self, conn: int, make) -> Ok | Failed:
        self.xid += 1
        xid = self.xid
        self.out(self.engine.request(conn, make(xid), WALL))
        (reply,) = [
            f.frame
            for f in self.frames
            if f.conn == conn and isinstance(f.frame, Ok | Failed) and f.frame.xid == xid
        ]
        return reply


def sessionless(xid: int, who: int, watches: tuple[WatchSpec, ...] = ()) -> Hello:
    """A hello without a session, under the temporary id its secret derives."""
    secret = bytes([who]) * 16
    return Hello(xid, temporary_id(secret), False, 0, watches, secret)


def test_watches_over_the_cap_get_too_many_watches_and_other_connections_are_unaffected():
    e = Engine(cap=3)
    for conn in (1, 2):
        e.engine.connection_opened(conn)
        assert isinstance(e.request(conn, lambda x, c=conn: sessionless(x, c)), Ok)
    for wid in range(3):
        assert isinstance(
            e.request(1, lambda x, w=wid: WatchRequest(x, w, "/", WatchMode.RECURSIVE)), Ok
        )
    # re-registering a wid it holds costs nothing
    assert isinstance(e.request(1, lambda x: WatchRequest(x, 0, "/", WatchMode.PERSISTENT)), Ok)
    over = e.request(1, lambda x: WatchRequest(x, 9, "/", WatchMode.RECURSIVE))
    assert isinstance(over, Failed) and over.code == ErrorCode.TOO_MANY_WATCHES
    assert "--max-watches-per-connection" in over.message
    read = e.request(1, lambda x: ReadRequest(x, ReadKind.GET, "/", watch=10))
    assert isinstance(read, Failed) and read.code == ErrorCode.TOO_MANY_WATCHES
    specs = tuple(WatchSpec(w, "/", WatchMode.RECURSIVE) for w in range(4))
    hello = e.request(2, lambda x: sessionless(x, 2, specs))
    assert isinstance(hello, Failed) and hello.code == ErrorCode.TOO_MANY_WATCHES
    assert isinstance(e.request(2, lambda x: WatchRequest(x, 1, "/", WatchMode.RECURSIVE)), Ok)
    assert e.engine.replica.watches.count_of(1) == 3


# ---------------------------------------------------------------------------- a big hello


def test_a_client_with_many_watches_says_a_small_hello_first_then_the_full_one():
    from paxctl.client.session import ClientSession
    from paxctl.client.session_types import Connect, Link, Send

    s = ClientSession(
        ["a:1"],
        rng=random.Random(1),
        new_secret=lambda: bytes(32),
    )
    wids = [s.new_watch(f"/watched/node-{i:04d}", WatchMode.RECURSIVE) for i in range(200)]
    for wid in wids:
        s.watches[wid].armed = True  # as after their registrations were answered
    s.last_zxid = 40
    call = s.sync(0)
    (c,) = [o for o in s.take() if isinstance(o, Connect)]
    s.connected(0, c.conn)
    (probe,) = [o.request for o in s.take() if isinstance(o, Send)]
    assert isinstance(probe, Hello) and probe.watches == () and probe.after == 40
    assert len(encode_request(probe)) < 200
    s.frame(0, c.conn, Ok(probe.xid, 50, {"node": 1}))
    outs = s.take()
    (full,) = [o.request for o in outs if isinstance(o, Send)]
    assert isinstance(full, Hello) and full.after == 40 and len(full.watches) == 200
    assert not [o for o in outs if isinstance(o, Link)]  # not ready: nothing else is sent
    assert s.last_zxid == 40  # the probe's zxid does not count as seen
    s.frame(0, c.conn, Ok(full.xid, 51, {"node": 1}))
    outs = s.take()
    assert [o for o in outs if isinstance(o, Link)]
    assert next(o.request for o in outs if isinstance(o, Send)).xid == full.xid + 1  # the sync
    assert s.last_zxid == 51 and call


def test_the_readme_documents_every_limit_with_its_default_and_flag():
    from pathlib import Path

    from paxctl.cli.node_limits import LIMIT_FLAGS
    from paxctl.server.limits import LIMIT_KEYS

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    rows = {
        line.rsplit("|", 2)[1].strip(" `"): line
        for line in section.splitlines()
        if line.startswith("|") and "`--" in line
    }
    assert len(LIMIT_FLAGS) == len(LIMIT_KEYS)
    for (flag, _, _), key in zip(LIMIT_FLAGS, LIMIT_KEYS, strict=True):
        assert flag == "--" + key.replace("_", "-")
        assert flag in rows, f"README's Limits table has no row for {flag}"
        assert str(getattr(Limits(), key)) in rows[flag]
