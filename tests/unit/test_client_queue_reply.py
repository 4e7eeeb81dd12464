"""The client session's side of a queued create: its two watches exist (unarmed, pathless)
before it is sent, so events the node replays ahead of the answer are delivered; the answer
arms the ones the node registered and forgets the others without a round trip; a failed
create leaves none behind; a node that breaks the answer's shape is failed over."""

from __future__ import annotations

import pytest
from test_client_session import CID, connect, of, opened, sent

from paxctl.client.queue_reply import parse_queue_reply
from paxctl.client.session_types import CallFailed, Completed, Delivered
from paxctl.protocol.codec import ProtocolError
from paxctl.protocol.messages import (
    Failed,
    Ok,
    QueueWatches,
    UnwatchRequest,
    WatchEvent,
    WatchEvents,
    WatchMode,
    WatchSpec,
    WriteRequest,
)
from paxctl.statemachine.ops import Create

OP = Create("/l/c-", b"", True, False, True)


def answer(path: str, prev: str | None, watched: list[int]) -> dict[str, object]:
    names = [n for n in (prev, path.rsplit("/", 1)[1]) if n is not None]
    return {"path": path, "children": names, "stats": {}, "prev": prev, "watched": watched}


def test_the_answer_arms_the_registered_watches_and_forgets_the_rest_locally():
    s, conn = opened()
    own, prev = s.new_watch("", WatchMode.DATA), s.new_watch("", WatchMode.DATA)
    call = s.write(10, OP, 1000, QueueWatches(own, prev))
    (req,) = sent(s.take())
    assert isinstance(req, WriteRequest) and req.queue == QueueWatches(own, prev)
    # An event replayed before the answer reaches the still unarmed watch.
    early = WatchEvent(prev, "deleted", "/l/c-0000000001", 8)
    s.frame(11, conn, WatchEvents(8, (early,)))
    assert of(s.take(), Delivered) == [Delivered(early, True)]
    value = answer("/l/c-0000000002", "c-0000000001", [own, prev])
    s.frame(12, conn, Ok(req.xid, 9, value))
    outs = s.take()
    assert Completed(call, value) in outs and not of(outs, CallFailed)
    assert s.watches[own].armed and s.watches[own].path == "/l/c-0000000002"
    assert prev not in s.watches  # fired: one-shot

    # A second create whose node had no room for the previous watch and no predecessor.
    own2, prev2 = s.new_watch("", WatchMode.DATA), s.new_watch("", WatchMode.DATA)
    s.write(20, OP, 1000, QueueWatches(own2, prev2))
    (req,) = sent(s.take())
    s.frame(21, conn, Ok(req.xid, 12, answer("/l/c-0000000003", None, [own2])))
    outs = s.take()
    assert prev2 not in s.watches and not [r for r in sent(outs) if isinstance(r, UnwatchRequest)]

    # A failover's hello re-registers exactly the armed ones, with their paths.
    s.connection_lost(30, conn)
    s.tick(200)
    _, hello, _ = connect(s, 200, zxid=12)
    assert set(hello.watches) == {
        WatchSpec(own, "/l/c-0000000002", WatchMode.DATA),
        WatchSpec(own2, "/l/c-0000000003", WatchMode.DATA),
    }
    assert s.session_id == CID


def test_a_failed_create_or_a_malformed_answer_leaves_no_watch():
    s, conn = opened()
    own, prev = s.new_watch("", WatchMode.DATA), s.new_watch("", WatchMode.DATA)
    call = s.write(10, OP, 1000, QueueWatches(own, prev))
    (req,) = sent(s.take())
    s.frame(11, conn, Failed(req.xid, 9, "NoNode", "/l"))
    assert of(s.take(), CallFailed)[0].call == call
    assert own not in s.watches and prev not in s.watches

    own, prev = s.new_watch("", WatchMode.DATA), s.new_watch("", WatchMode.DATA)
    s.write(20, OP, 1000, QueueWatches(own, prev))
    (req,) = sent(s.take())
    s.frame(21, conn, Ok(req.xid, 10, "/l/c-0000000004"))  # a plain create's answer
    outs = s.take()
    assert not of(outs, Completed)  # failed over: the write goes to the next node
    assert not s.watches[own].armed


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"path": "x", "children": [], "stats": {}, "prev": None, "watched": []},
        {"path": "/a", "children": "a", "stats": {}, "prev": None, "watched": []},
        {"path": "/a", "children": [], "stats": {}, "prev": "b", "watched": []},
        {"path": "/a", "children": [], "stats": {}, "prev": None, "watched": ["1"]},
        {"path": "/a", "children": [], "stats": [], "prev": None, "watched": []},
    ],
)
def test_malformed_answers_are_protocol_errors(value):
    with pytest.raises(ProtocolError):
        parse_queue_reply(value)


def test_an_answer_without_its_listing_still_names_the_node_and_its_predecessor():
    doc = {"path": "/l/b-1", "children": None, "stats": None, "prev": "a-0", "watched": [3]}
    reply = parse_queue_reply(doc)
    assert reply.listing is None and reply.prev == "a-0"
    assert reply.paths(QueueWatches(3, 4)) == {3: "/l/b-1"}
    with pytest.raises(ProtocolError):
        parse_queue_reply({**doc, "stats": {}})  # both or neither
