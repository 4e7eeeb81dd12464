"""Reading and changing the configuration through the node engine (issue 15): the proof is
checked before anything is proposed, the change is answered from the outcome every replica
judged, refusals name their reason, and configuration changes travel between members like
writes (the audit's and the reaper's commands still never do)."""

from __future__ import annotations

from typing import Any

from test_engine import CLIENT, SECRET, WALL, Harness

from paxctl.core.membership import ALPHA, CONFIG_CLIENT, AddLearner, Member, decode_change
from paxctl.core.messages import Forward
from paxctl.core.types import Applied, Command
from paxctl.protocol.admin_proof import reconfig_proof
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.messages import (
    Failed,
    Hello,
    MembersRequest,
    Ok,
    ReconfigRequest,
    WriteRequest,
)
from paxctl.server.engine import _without_own_commands
from paxctl.server.peercheck import check_forward
from paxctl.server.replica import Replica
from paxctl.server.watches import Event
from paxctl.server.zxid import zxid_of
from paxctl.statemachine import Create, Outcome, StateMachine, encode_command
from paxctl.statemachine.ops import REAPER_CLIENT

CLUSTER_SECRET = bytes(range(32))


def change(kind: str, node: int, secret: bytes = CLUSTER_SECRET, **fields: Any) -> Any:
    proof = reconfig_proof(secret, kind, node, **fields)
    return lambda xid: ReconfigRequest(xid, kind, node, proof=proof, **fields)


def leading(**kw: Any) -> Harness:
    h = Harness(secret=CLUSTER_SECRET, **kw)
    h.lead()
    h.engine.connection_opened(1)
    h.request(1, lambda x: Hello(x, CLIENT, secret=SECRET))
    return h


ADD = {"peer": "127.0.0.1:7002", "client": "127.0.0.1:8002"}


def config_changes(h: Harness) -> list[Command]:
    return [c for c in h.proposals.commands if c.client == CONFIG_CLIENT]


def test_the_configuration_is_read_without_a_secret():
    h = leading()
    xid = h.request(1, MembersRequest)
    reply = h.reply(1, xid)
    assert isinstance(reply, Ok)
    assert reply.value["epoch"] == 0 and reply.value["leader"] == 1
    assert reply.value["in_flight"] is False and reply.value["next_id"] == 2
    assert [m[:2] for m in reply.value["members"]] == [[1, True]]


def test_an_added_learner_is_answered_with_the_new_configuration_once_committed():
    h = leading()
    xid = h.request(1, change("add", 2, **ADD))
    reply = h.reply(1, xid)
    assert isinstance(reply, Ok), reply
    (cmd,) = config_changes(h)
    assert decode_change(cmd.data) == AddLearner(0, Member(2, False, **ADD, promote=True))
    assert h.node.members.outcomes[cmd.seq] == ""
    value = reply.value
    assert value["epoch"] == h.node.members.latest.epoch > 0
    assert value["active"] == value["epoch"] + ALPHA
    assert value["members"] == [
        [1, True, "", "", False, 0],
        [2, False, ADD["peer"], ADD["client"], True, 0],
    ]
    assert value["next_id"] == 3


def test_a_learner_flag_keeps_it_a_learner_and_replace_names_the_voter():
    h = leading()
    h.request(1, change("add", 2, learner=True, **ADD))
    (cmd,) = config_changes(h)
    assert decode_change(cmd.data).member.promote is False  # type: ignore[union-attr]


def test_a_change_with_a_wrong_proof_is_refused_and_nothing_is_proposed():
    h = leading()
    xid = h.request(1, change("add", 2, secret=bytes(32), **ADD))
    reply = h.reply(1, xid)
    assert isinstance(reply, Failed) and reply.code == ErrorCode.AUTH_FAILED
    assert "proof does not match" in reply.message
    assert config_changes(h) == [] and len(h.node.members.configs) == 1
    # A node without the secret refuses every change.
    bare = Harness()
    bare.lead()
    bare.engine.connection_opened(1)
    xid = bare.request(1, change("add", 2, **ADD))
    assert bare.reply(1, xid).code == ErrorCode.AUTH_FAILED  # type: ignore[union-attr]


def test_a_second_change_while_one_is_in_flight_is_refused_with_the_reason():
    h = leading()
    first, second = h.xid + 1, h.xid + 2  # both arrive before the next pass: one slot
    h.out(h.engine.request(1, change("add", 2, learner=True, **ADD)(first), WALL))
    h.out(h.engine.request(1, change("remove", 2)(second), WALL))
    h.xid = second
    h.settle()
    assert isinstance(h.reply(1, first), Ok)
    reply = h.reply(1, second)
    assert isinstance(reply, Failed) and reply.code == ErrorCode.RECONFIG_REFUSED
    assert "in flight" in reply.message
    first, second = config_changes(h)
    assert first.seq != second.seq  # each change has a number of its own on this node


def test_a_stale_base_is_refused_and_the_refusal_changes_nothing():
    h = leading()
    xid = h.request(1, change("remove", 1, base=5))
    reply = h.reply(1, xid)
    assert isinstance(reply, Failed) and reply.code == ErrorCode.RECONFIG_REFUSED
    assert "the change was for epoch 5" in reply.message
    assert len(h.node.members.configs) == 1


def test_writes_in_the_slot_of_a_change_keep_their_zxid_index():
    class Sink:
        def __init__(self) -> None:
            self.done: list[tuple[Command, int]] = []
            self.changes: list[tuple[Command, int]] = []

        def push_events(self, conn: Any, events: list[tuple[int, Event]]) -> None:
            pass

        def write_done(self, cmd: Command, outcome: Outcome | None, fresh: bool = True) -> None:
            self.done.append((cmd, replica.applied_zxid))

        def session_closed(self, session: int) -> None:
            pass

        def change_done(self, cmd: Command, slot: int) -> None:
            self.changes.append((cmd, slot))

    sink = Sink()
    replica = Replica(1, (1,), StateMachine(), 0, sink, digest_every=0)
    h = Harness()
    conf = Command(CONFIG_CLIENT, 1, b"not even a change: the core judged (and refused) it")
    from paxctl.statemachine import TEMP_CLIENT_BIT, OpenSession

    opened = Command(TEMP_CLIENT_BIT | 3, 1, encode_command(1, OpenSession(1000)))
    replica.apply(h.node, (Applied(4, (conf, opened)),))
    assert sink.changes == [(conf, 4)]
    assert sink.done == [(opened, zxid_of(4, 1))]  # index 1: the change holds index 0
    assert replica.machine.sessions() == {zxid_of(4, 1): 1000}


def test_changes_travel_between_members_the_audit_and_reaper_commands_do_not():
    h = Harness(voters=(1, 2, 3))
    conf = Command(CONFIG_CLIENT, 9, b"change")
    reap = Command(REAPER_CLIENT, 9, encode_command(5, Create("/x")))
    assert check_forward(h.node, Forward(2, 1, (conf,))) is None
    refused = check_forward(h.node, Forward(2, 1, (conf, reap)))
    assert refused is not None and refused.code == "system-client"
    stranger = check_forward(h.node, Forward(7, 1, (conf,)))
    assert stranger is not None and stranger.code == "not-member"
    h.out(h.engine.receive(Forward(2, 1, (conf, reap)), 0, WALL))
    assert [c.client for c in h.node.proposer.pending] == [CONFIG_CLIENT]
    assert _without_own_commands(Forward(1, 2, (conf, reap))) == Forward(1, 2, (conf,))


def test_a_forwarded_change_is_answered_where_it_was_asked():
    """A node that is not the leader hands the change on; it answers when it applies it."""
    h = leading()
    xid = h.request(1, lambda x: WriteRequest(x, 1, Create("/w")))  # no session: refused
    assert isinstance(h.reply(1, xid), Failed)
    h.node.become_follower(None)  # leads no more, knows no leader: the change waits
    xid = h.request(1, change("add", 2, **ADD))
    assert not [f for f in h.log.frames(1) if getattr(f, "xid", None) == xid]
    h.lead()  # leads again: the waiting change is proposed, chosen and answered
    assert isinstance(h.reply(1, xid), Ok)


def test_a_snapshot_a_peer_wants_is_taken_at_the_next_pass_even_an_idle_one():
    h = leading()
    applied = h.node.learner.applied
    assert applied > 0 and h.node.learner.base == 0
    h.node.snapshot_wanted = True
    done = h.engine.process()
    assert done.ready is None  # nothing else to do in this pass
    assert done.snapshot is not None and done.snapshot.slot == applied
    assert h.node.snapshot_wanted is False and h.node.learner.base == applied
    h.node.snapshot_wanted = True  # nothing applied since: no snapshot of the same slot again
    assert h.engine.process().snapshot is None and h.node.snapshot_wanted is False


def test_the_shell_stops_a_removed_node_and_says_why(tmp_path, monkeypatch, caplog):
    """node_server: once the core says this node is in no configuration in force, the process
    logs it and stops cleanly (``run`` returns: exit 0)."""
    import asyncio
    import logging

    from paxctl.core.node import Node
    from paxctl.server.config import NodeConfig
    from paxctl.server.node_server import NodeServer

    config = NodeConfig.from_values(
        {"id": 1, "data": str(tmp_path / "d"), "peers": "1=127.0.0.1:1", "client": "h:2",
         "bootstrap": True}
    )  # fmt: skip
    server = NodeServer(config)
    server._stopping = asyncio.Event()
    server._follow_members()
    assert not server._stopping.is_set()
    monkeypatch.setattr(Node, "removed", property(lambda self: True))
    with caplog.at_level(logging.INFO, logger="paxctl.node"):
        server._follow_members()
    assert server._stopping.is_set()
    assert "node 1 was removed from the cluster (configuration epoch 0); shutting down" in (
        caplog.text
    )
    server.storage.close()
