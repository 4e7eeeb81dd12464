"""The node engine driven by hand: fed ticks, peer messages and typed requests; its effects
checked in order (persist before anything leaves, events before the reply that caused them)."""

from __future__ import annotations

import random

from paxctl.core.messages import Forward, Relay
from paxctl.core.node import Node, Role
from paxctl.core.state import Config, Ready
from paxctl.core.types import Command
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.messages import (
    CloseSessionRequest,
    Failed,
    Hello,
    Ok,
    OpenSessionRequest,
    Ping,
    ReadKind,
    ReadRequest,
    SessionEnded,
    StatusRequest,
    SyncRequest,
    WatchEvents,
    WatchMode,
    WatchRequest,
    WatchSpec,
    WriteRequest,
)
from paxctl.protocol.secrets import temporary_id
from paxctl.server.engine import EngineConfig, NodeEngine, Observer
from paxctl.server.requests import MAX_SLOTS_AHEAD, Frame
from paxctl.server.zxid import zxid_of
from paxctl.statemachine.errors import BadArguments
from paxctl.statemachine.ops import Create, decode_command, encode_command

SECRET = b"the secret of the first client.."  # a client's own; its hello proves it
CLIENT = temporary_id(SECRET)  # a connection's own id, until the cluster names its session
OTHER_SECRET = b"the secret of the other client.."
OTHER = temporary_id(OTHER_SECRET)
WALL = 1_700_000_000_000  # the wall clock's reading at virtual time 0


class Log:
    """Everything the engine did, in order: ("persist", Ready) and ("out", output)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def persist(self, ready: Ready) -> None:
        self.events.append(("persist", ready))

    def frames(self, conn: int) -> list[object]:
        return [
            o.frame
            for k, o in self.events
            if k == "out" and isinstance(o, Frame) and o.conn == conn
        ]

    def index(self, match: object) -> int:
        for i, (_, what) in enumerate(self.events):
            if what == match or (isinstance(what, Frame) and what.frame == match):
                return i
        raise AssertionError(f"{match} never happened")


class Proposals(Observer):
    def __init__(self) -> None:
        self.commands: list[Command] = []

    def submitted(self, cmd: Command) -> None:
        self.commands.append(cmd)


class Harness:
    def __init__(
        self,
        voters: tuple[int, ...] = (1,),
        bugs: frozenset[str] = frozenset(),
        secret: bytes = b"",
        **kw,
    ):
        self.log = Log()
        self.proposals = Proposals()
        cfg = Config(1, voters, election_ticks=2, heartbeat_ticks=1, pre_vote=False, **kw)
        self.node = Node(cfg, random.Random(1), None)
        config = EngineConfig(1, voters, min_session_ms=1, planted_bugs=bugs, secret=secret)
        self.engine = NodeEngine(config, self.node, self.log, None, observer=self.proposals)
        self.now = 0
        self.xid = 0

    def out(self, outputs: list) -> None:
        self.log.events.extend(("out", o) for o in outputs)

    def settle(self) -> None:
        for _ in range(50):
            done = self.engine.process()
            self.out(done.outputs)
            if not done.more:
                return
        raise AssertionError("the engine never settled")

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.now += 10
            self.out(self.engine.tick(self.now, WALL + self.now))
            self.settle()

    def lead(self) -> None:
        for _ in range(100):
            if self.node.leader_ready:
                return
            self.tick()
        raise AssertionError("no leader")

    def request(self, conn: int, make) -> int:
        self.xid += 1
        self.out(self.engine.request(conn, make(self.xid), WALL + self.now))
        self.settle()
        return self.xid

    def reply(self, conn: int, xid: int) -> object:
        found = [f for f in self.log.frames(conn) if isinstance(f, Ok | Failed) and f.xid == xid]
        assert len(found) == 1, found
        return found[0]

    def session(self, conn: int = 1) -> int:
        """Open a session on ``conn``; returns the id the cluster gave it."""
        self.engine.connection_opened(conn)
        self.request(conn, lambda x: Hello(x, CLIENT, secret=SECRET))
        xid = self.request(conn, lambda x: OpenSessionRequest(x, 1, 5000))
        granted = self.reply(conn, xid)
        assert isinstance(granted, Ok) and granted.value["timeout_ms"] == 5000
        return int(granted.value["session"])


def test_a_write_is_answered_only_after_the_batch_that_holds_it_was_persisted():
    h = Harness()
    h.lead()
    session = h.session()
    xid = h.request(1, lambda x: WriteRequest(x, 2, Create("/a", b"x")))
    reply = h.reply(1, xid)
    assert isinstance(reply, Ok) and reply.value == "/a"
    persisted = [
        i
        for i, (kind, what) in enumerate(h.log.events)
        if kind == "persist"
        and any(c.seq == 2 and c.client == session for e in what.chosen for c in e.value)
    ]
    assert persisted and persisted[0] < h.log.index(reply)


def test_persist_comes_before_every_message_of_its_batch():
    h = Harness(voters=(1, 2, 3))
    h.tick(10)  # campaigns: Prepares to the peers, after the promise to itself is durable
    kinds = [
        (k, type(w).__name__)
        for k, w in h.log.events
        if k == "persist" or type(w).__name__ == "Prepare"
    ]
    first_prepare = kinds.index(("out", "Prepare"))
    assert ("persist", "Ready") in kinds[:first_prepare]
    promise = next(w for k, w in h.log.events if k == "persist" and w.hard_state is not None)
    prepare = next(w for k, w in h.log.events if type(w).__name__ == "Prepare")
    assert promise.hard_state.promised == prepare.ballot
    assert h.log.index(promise) < h.log.index(prepare)


def test_watch_events_come_before_the_reply_of_the_write_that_fired_them():
    h = Harness()
    h.lead()
    h.session()
    h.request(1, lambda x: WatchRequest(x, 9, "/", WatchMode.RECURSIVE))
    xid = h.request(1, lambda x: WriteRequest(x, 2, Create("/w", b"")))
    frames = h.log.frames(1)
    events = [i for i, f in enumerate(frames) if isinstance(f, WatchEvents)]
    reply = next(i for i, f in enumerate(frames) if isinstance(f, Ok) and f.xid == xid)
    assert len(events) == 1 and events[0] == reply - 1
    (event,) = frames[events[0]].events
    assert (event.wid, event.kind, event.path) == (9, "created", "/w")


def test_a_hello_or_local_read_naming_a_slot_the_leader_never_chose_is_refused():
    """Found by the client-request fuzz: a hello naming a session id whose open is a few slots
    ahead (or an ``after`` ahead) waited for that slot, which a quiet cluster never applies.
    Waiting on a lagging follower: test_engine_waiting.py."""
    h = Harness()
    h.lead()
    h.engine.connection_opened(1)
    made_up = 2**31  # a session id: the zxid of an open at slot 32768
    xid = h.request(1, lambda x: Hello(x, made_up, session=True, secret=SECRET))
    refused = h.reply(1, xid)
    assert isinstance(refused, Failed) and refused.code == ErrorCode.SESSION_EXPIRED
    assert refused.message == f"session {made_up:#x} unknown"
    ahead = zxid_of(h.node.learner.applied + 2, 0)
    xid = h.request(1, lambda x: Hello(x, CLIENT, secret=SECRET, after=ahead))
    refused = h.reply(1, xid)
    assert isinstance(refused, Failed) and refused.code == ErrorCode.BAD_ARGUMENTS
    assert f"zxid {ahead:#x} is ahead of the cluster" in refused.message
    h.request(1, lambda x: Hello(x, CLIENT, secret=SECRET))
    xid = h.request(1, lambda x: ReadRequest(x, ReadKind.GET, "/", local=True, min_zxid=ahead))
    assert h.reply(1, xid).code == ErrorCode.BAD_ARGUMENTS
    assert h.engine.status()["waiting_reads"] == 0


def test_a_node_without_a_leader_refuses_a_zxid_it_has_not_applied():
    """Nobody can say whether the slot exists: the client tries another node."""
    h = Harness(voters=(1, 2, 3))  # its peers never answer: it never leads
    h.engine.connection_opened(1)
    xid = h.request(1, lambda x: Hello(x, CLIENT, secret=SECRET, after=zxid_of(5, 0)))
    refused = h.reply(1, xid)
    assert isinstance(refused, Failed) and refused.code == ErrorCode.UNAVAILABLE
    assert "no leader confirmed that slot 5 exists" in refused.message
    assert isinstance(h.reply(1, h.request(1, lambda x: Hello(x, CLIENT, secret=SECRET))), Ok)


def test_hellos_and_reads_naming_a_made_up_zxid_are_refused_at_once_and_nothing_waits():
    """Before: each hello or local read with ``after``/``min_zxid`` far ahead (2**62, or a
    made-up session id) stayed parked, with its decoded request, until the connection closed."""
    h = Harness()
    h.lead()
    known = h.node.learner.commit
    far = zxid_of(known + MAX_SLOTS_AHEAD + 1, 0)
    h.engine.connection_opened(1)
    for after in (2**62, far):
        xid = h.request(1, lambda x, a=after: Hello(x, CLIENT, secret=SECRET, after=a))
        refused = h.reply(1, xid)
        assert isinstance(refused, Failed) and refused.code == ErrorCode.UNAVAILABLE
        assert f"more than {MAX_SLOTS_AHEAD} slots beyond slot {known}" in refused.message
    made_up = zxid_of(2**40, 0)  # a session id whose open is nowhere near chosen
    xid = h.request(1, lambda x: Hello(x, made_up, session=True, secret=SECRET))
    assert h.reply(1, xid).code == ErrorCode.UNAVAILABLE
    assert h.engine.status()["waiting_reads"] == 0
    h.request(1, lambda x: Hello(x, CLIENT, secret=SECRET))
    for _ in range(3):
        xid = h.request(1, lambda x: ReadRequest(x, ReadKind.GET, "/", local=True, min_zxid=far))
        assert h.reply(1, xid).code == ErrorCode.UNAVAILABLE
    assert h.engine.status()["waiting_reads"] == 0


def test_only_the_reply_accepting_a_hello_tells_the_shell_to_lift_its_pre_hello_limits():
    h = Harness()
    h.lead()
    h.engine.connection_opened(1)
    refused = h.request(1, lambda x: Hello(x, OTHER, secret=SECRET))  # not its secret's id
    far = h.request(1, lambda x: Hello(x, CLIENT, secret=SECRET, after=2**62))
    status = h.request(1, lambda x: StatusRequest(x))
    accepted = h.request(1, lambda x: Hello(x, CLIENT, secret=SECRET))

    def greets(xid: int) -> object:
        (out,) = [
            o
            for k, o in h.log.events
            if k == "out" and isinstance(o, Frame) and getattr(o.frame, "xid", None) == xid
        ]
        return out.greets

    assert [greets(x) for x in (refused, far, status)] == [None, None, None]
    assert greets(accepted) is False  # accepted, without a session


def test_requests_before_hello_are_refused_and_bad_ones_answered_with_their_code():
    h = Harness()
    h.engine.connection_opened(1)
    xid = h.request(1, lambda x: WriteRequest(x, 1, Create("/a", b"")))
    refused = h.reply(1, xid)
    assert isinstance(refused, Failed) and refused.code == ErrorCode.BAD_ARGUMENTS
    h.out(h.engine.reject(1, 77, BadArguments("unknown operation 'x'")))
    assert h.reply(1, 77) == Failed(77, 0, "BadArguments", "unknown operation 'x'")


def test_a_node_that_cannot_queue_a_write_answers_unavailable():
    h = Harness(voters=(1, 2, 3), max_pending=0)  # no leader, no room
    h.engine.connection_opened(1)
    h.request(1, lambda x: Hello(x, CLIENT, secret=SECRET))
    xid = h.request(1, lambda x: WriteRequest(x, 1, Create("/a", b"")))
    failed = h.reply(1, xid)
    assert isinstance(failed, Failed) and failed.code == ErrorCode.UNAVAILABLE


def test_a_ping_is_answered_once_the_leader_confirmed_the_session():
    h = Harness()
    h.lead()
    h.session()
    xid = h.request(1, lambda x: Ping(x))
    assert all(getattr(f, "xid", None) != xid for f in h.log.frames(1))  # not at once
    h.tick(2)
    assert isinstance(h.reply(1, xid), Ok)


def test_reads_are_linearizable_by_default_and_local_ones_no_older_than_min_zxid():
    h = Harness()
    h.lead()
    h.session()
    h.request(1, lambda x: WriteRequest(x, 2, Create("/r", b"v")))
    xid = h.request(1, lambda x: ReadRequest(x, ReadKind.GET, "/r"))
    got = h.reply(1, xid)
    assert isinstance(got, Ok) and got.value["data"] == b"v"
    seen = h.engine.replica.applied_zxid
    xid = h.request(1, lambda x: ReadRequest(x, ReadKind.GET, "/r", local=True, min_zxid=seen))
    got = h.reply(1, xid)
    assert isinstance(got, Ok) and got.value["data"] == b"v"
    xid = h.request(1, lambda x: SyncRequest(x))
    assert isinstance(h.reply(1, xid), Ok)


def test_a_forwarded_write_is_stamped_with_the_receiving_nodes_clock():
    data = encode_command(5, Create("/f", b""))
    for bugs, expected in ((frozenset(), WALL + 123), ({"no_forward_restamp"}, 5)):
        h = Harness(voters=(1, 2, 3), bugs=frozenset(bugs))
        msg = Forward(2, 1, (Command(CLIENT, 1, data), Command(1, 1, data)))
        h.out(h.engine.receive(msg, 123, WALL + 123))
        pending = list(h.node.proposer.pending)
        assert [decode_command(c.data)[0] for c in pending] == [expected]  # (the reaper's: refused)
        if not bugs:
            assert h.proposals.commands == [pending[0]]  # the stamped command is reported


def test_relay_messages_go_to_the_keeper_never_to_the_core():
    h = Harness(voters=(1, 2, 3))

    def step(msg: object) -> None:
        raise AssertionError(f"the core got {msg}")

    h.node.step = step  # type: ignore[method-assign]
    h.out(h.engine.receive(Relay(2, 1, 1, b"\x92\x01\x90"), 0, WALL))


def test_a_session_that_ends_is_told_so_on_its_connection():
    h = Harness()
    h.lead()
    session = h.session()
    xid = h.request(1, lambda x: CloseSessionRequest(x, 2))
    frames = h.log.frames(1)
    ended = next(i for i, f in enumerate(frames) if isinstance(f, SessionEnded))
    reply = next(i for i, f in enumerate(frames) if getattr(f, "xid", None) == xid)
    assert frames[ended].session == session and ended < reply


def test_status_puts_what_the_shell_knows_among_what_the_engine_knows():
    h = Harness()
    h.engine._describe = lambda: {"pid": 42}
    h.lead()
    h.engine.connection_opened(1)
    xid = h.request(1, lambda x: StatusRequest(x))
    status = h.reply(1, xid)
    assert isinstance(status, Ok)
    keys = list(status.value)
    assert keys.index("zxid") < keys.index("pid") < keys.index("digest")
    assert status.value["role"] == Role.LEADER.value and status.value["pid"] == 42


def test_a_forward_under_the_reaper_or_audit_id_is_refused_the_clients_commands_go_on():
    from paxctl.server.liveness import TOUCH, TOUCH_ACK, encode_touch
    from paxctl.statemachine.ops import REAPER_CLIENT, CloseSession

    h = Harness(voters=(1, 2, 3))
    close = encode_command(5, CloseSession(1 << 20))
    ok = encode_command(5, Create("/f", b""))
    msg = Forward(2, 1, (Command(REAPER_CLIENT, 2**63 - 1, close), Command(0, 7, ok)))
    h.out(h.engine.receive(Forward(2, 1, (*msg.commands, Command(CLIENT, 1, ok))), 0, WALL))
    assert [c.client for c in h.node.proposer.pending] == [CLIENT]
    ((got, why),) = h.engine.take_rejections()
    assert isinstance(got, Forward) and why.code == "system-client"
    assert h.node.counters["rejected_Forward"] == 1
    # Relays: from a stranger, of an unknown kind, an ack from a node this one does not follow.
    keeper_saw: list[object] = []
    h.engine.replica.keeper.on_relay = lambda *a: keeper_saw.append(a)  # type: ignore[method-assign]
    for relay, code in (
        (Relay(9, 1, TOUCH, encode_touch(1, [1 << 20])), "not-member"),
        (Relay(2, 1, 7, b""), "bad-kind"),
        (Relay(2, 1, TOUCH_ACK, encode_touch(1, [])), "not-leader"),
        (Relay(2, 3, TOUCH, encode_touch(1, [])), "misaddressed"),
    ):
        h.out(h.engine.receive(relay, 0, WALL))
        ((got, why),) = h.engine.take_rejections()
        assert got == relay and why.code == code
    assert not keeper_saw and h.node.counters["rejected_Relay"] == 4


def test_without_the_checks_a_forward_posing_as_the_reaper_is_proposed():
    from paxctl.core.bugs import PlantedBugs
    from paxctl.statemachine.ops import REAPER_CLIENT, CloseSession

    h = Harness(voters=(1, 2, 3), planted_bugs=PlantedBugs(no_peer_checks=True))
    close = encode_command(5, CloseSession(1 << 20))
    h.out(h.engine.receive(Forward(2, 1, (Command(REAPER_CLIENT, 2**63 - 1, close),)), 0, WALL))
    assert [c.client for c in h.node.proposer.pending] == [REAPER_CLIENT]


def test_a_deposed_leader_keeps_the_cluster_s_own_commands_out_of_its_forwards():
    """Review of issue 14: the next leader refuses the audit's and the reaper's commands from a
    peer, so the node handing over its waiting commands must not send them (nor log noise)."""
    from paxctl.core.messages import Forward
    from paxctl.server.engine import _without_own_commands
    from paxctl.statemachine.ops import FIRST_CLIENT_ID

    own = Command(FIRST_CLIENT_ID - 1, 5, b"reap")
    client = Command(FIRST_CLIENT_ID + 7, 1, b"set")
    assert _without_own_commands(Forward(1, 2, (own, client))) == Forward(1, 2, (client,))
    assert _without_own_commands(Forward(1, 2, (own,))) is None
    assert _without_own_commands(Forward(1, 2, (client,))) == Forward(1, 2, (client,))


def test_a_hellos_watches_share_one_replay_budget_and_resync_past_it(monkeypatch):
    """Issue 14: one hello's watches walk history once per (path, mode) and replay at most
    the budget; the watches past it get resync instead (the client re-reads)."""
    from paxctl.server import requests as requests_module
    from paxctl.server.watches import ReplayBudget

    h = Harness()
    h.lead()
    h.session()
    for seq, path in enumerate(("/a", "/b", "/c"), start=2):
        h.request(1, lambda x, s=seq, p=path: WriteRequest(x, s, Create(p, b"")))
    history = h.engine.replica.watches.history
    walked = len(history.since(0) or [])
    # Enough to walk the history and replay the three creates once, not twice.
    monkeypatch.setattr(requests_module, "ReplayBudget", lambda: ReplayBudget(left=walked + 3))
    specs = tuple(WatchSpec(wid, "/", WatchMode.RECURSIVE) for wid in range(20))
    h.engine.connection_opened(2)
    xid = h.request(2, lambda x: Hello(x, OTHER, secret=OTHER_SECRET, watches=specs))
    assert isinstance(h.reply(2, xid), Ok)
    pushed = [e for f in h.log.frames(2) if isinstance(f, WatchEvents) for e in f.events]
    first = [(e.kind, e.path) for e in pushed if e.wid == 0]
    assert first == [("created", "/a"), ("created", "/b"), ("created", "/c")]
    rest = [(e.wid, e.kind, e.path) for e in pushed if e.wid != 0]
    assert rest == [(wid, "resync", "/") for wid in range(1, 20)]
    assert h.engine.replica.watches.count_of(2) == 20  # recursive watches stay registered


def test_a_command_firing_past_the_per_connection_cap_sends_resync_instead(monkeypatch):
    from paxctl.server import watches as watches_module

    monkeypatch.setattr(watches_module, "MAX_FIRED_PER_CONNECTION", 3)
    h = Harness()
    h.lead()
    h.session()
    for wid in range(1, 6):
        h.request(1, lambda x, w=wid: WatchRequest(x, w, "/", WatchMode.RECURSIVE))
    xid = h.request(1, lambda x: WriteRequest(x, 2, Create("/w", b"")))
    frames = h.log.frames(1)
    reply = next(i for i, f in enumerate(frames) if isinstance(f, Ok) and f.xid == xid)
    pushed = frames[reply - 1]
    assert isinstance(pushed, WatchEvents)
    assert [(e.wid, e.kind, e.path) for e in pushed.events] == [
        (wid, "resync", "/") for wid in range(1, 6)
    ]
