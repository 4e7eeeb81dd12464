"""A create that asks for its queue (``WriteRequest.queue``): one request tells a lock contender
where it stands and sets the watches it needs; hostile or wrong requests are refused whole.

Driven through the real engine (test_engine's Harness) and the real codec."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from test_engine import OTHER, OTHER_SECRET, SECRET, Harness

from paxctl.protocol.codec import BadRequest, decode_request, encode_request
from paxctl.protocol.messages import (
    Failed,
    Hello,
    Ok,
    OpenSessionRequest,
    QueueWatches,
    WatchEvents,
    WriteRequest,
)
from paxctl.server.queued import queue_state
from paxctl.statemachine.ops import Create, Delete, SetData, encode_op
from paxctl.statemachine.tree import DataTree


def events(h: Harness, conn: int = 1) -> list[tuple[int, str, str]]:
    return [
        (e.wid, e.kind, e.path)
        for f in h.log.frames(conn)
        if isinstance(f, WatchEvents)
        for e in f.events
    ]


def test_the_answer_tells_the_place_and_the_watches_fire_on_the_deletes():
    h = Harness()
    h.lead()
    h.session()
    h.request(1, lambda x: WriteRequest(x, 2, Create("/lock", b"")))
    seq = 3
    answers = []
    for own, prev in ((11, 12), (21, 22), (31, 32)):
        xid = h.request(
            1,
            lambda x, s=seq, o=own, p=prev: WriteRequest(
                x, s, Create("/lock/c-", b"", True, False, True), QueueWatches(o, p)
            ),
        )
        seq += 1
        reply = h.reply(1, xid)
        assert isinstance(reply, Ok)
        answers.append(reply.value)
    first, second, third = answers
    assert first["path"] == "/lock/c-0000000000" and first["prev"] is None
    assert first["watched"] == [11]  # no sibling before it: no second watch
    assert first["children"] == ["c-0000000000"]
    assert set(first["stats"]) == {"c-0000000000"}
    assert second["prev"] == "c-0000000000" and second["watched"] == [21, 22]
    assert third["prev"] == "c-0000000001" and third["watched"] == [31, 32]
    assert third["children"] == ["c-0000000000", "c-0000000001", "c-0000000002"]
    czxid = third["stats"]["c-0000000002"]["czxid"]
    assert czxid > second["stats"]["c-0000000001"]["czxid"]
    assert events(h) == []

    # Releasing the first fires its holder's own watch and its successor's, nobody else's.
    h.request(1, lambda x: WriteRequest(x, seq, Delete("/lock/c-0000000000")))
    assert events(h) == [(11, "deleted", "/lock/c-0000000000"), (22, "deleted", first["path"])]


def test_a_retry_answered_from_the_cache_replays_what_happened_since_the_create():
    """The same (client, seq) again, after the predecessor went: the answer is computed from
    the tree as it is now, and the watches registered from the create's zxid replay the
    deletion, so a contender can never wait for a node that is already gone."""
    h = Harness()
    h.lead()
    h.session()
    h.request(1, lambda x: WriteRequest(x, 2, Create("/q", b"")))
    h.request(1, lambda x: WriteRequest(x, 3, Create("/q/a-", b"", True, False, True)))
    req = WriteRequest(0, 4, Create("/q/b-", b"", True, False, True), QueueWatches(5, 6))
    h.engine.connection_opened(2)
    first = h.reply(1, h.request(1, lambda x: WriteRequest(x, 4, req.op, req.queue)))
    assert isinstance(first, Ok) and first.value["prev"] == "a-0000000000"
    # Another client deletes the predecessor (the cache keeps our last answer only).
    h.engine.connection_opened(3)
    h.request(3, lambda x: Hello(x, OTHER, secret=OTHER_SECRET))
    h.request(3, lambda x: OpenSessionRequest(x, 1, 5000))
    h.request(3, lambda x: WriteRequest(x, 2, Delete("/q/a-0000000000")))
    assert (6, "deleted", "/q/a-0000000000") in events(h)

    # The retry (as after a failover) on a fresh connection of the same client.
    session = h.engine.clients._conns[1].client
    h.request(2, lambda x: Hello(x, session, True, 0, (), SECRET))
    again = h.reply(2, h.request(2, lambda x: WriteRequest(x, 4, req.op, req.queue)))
    assert isinstance(again, Ok) and again.value["path"] == "/q/b-0000000001"
    assert again.value["prev"] is None and again.value["children"] == ["b-0000000001"]
    assert again.value["watched"] == [5]
    assert (6, "deleted", "/q/a-0000000000") not in events(h, 2)  # not watched: no prev
    h.request(2, lambda x: WriteRequest(x, 5, SetData("/q/b-0000000001", b"x")))
    assert (5, "changed", "/q/b-0000000001") in events(h, 2)


def test_a_queued_create_whose_node_is_gone_sets_no_watch():
    tree = DataTree()
    tree.apply(Create("/l"), 1, 0)
    state = queue_state(tree, "/l/x-0000000007")
    assert state.czxid is None and state.prev is None and state.children == []


def test_the_previous_sibling_is_by_sequence_not_by_name_and_ignores_other_names():
    tree = DataTree()
    tree.apply(Create("/l"), 1, 0)
    for zxid, name in enumerate(("zz-0000000003", "aa-0000000005", "plain", "mm-0000000004"), 2):
        tree.apply(Create(f"/l/{name}"), zxid, 0)
    state = queue_state(tree, "/l/aa-0000000005")
    assert state.prev == "/l/mm-0000000004"
    assert queue_state(tree, "/l/zz-0000000003").prev is None


def test_the_request_round_trips_and_hostile_queue_fields_are_refused():
    req = WriteRequest(7, 3, Create("/l/c-", b"", True, False, True), QueueWatches(4, 5))
    assert decode_request(encode_request(req)) == req
    plain = WriteRequest(7, 3, Create("/l/c-", b""))
    assert decode_request(encode_request(plain)).queue is None

    def raw(op: object, queue: object) -> bytes:
        doc = {"op": "write", "xid": 7, "seq": 3, "data": encode_op(op), "queue": queue}
        return msgpack.packb(doc, use_bin_type=True)

    seq_create = Create("/l/c-", b"", True)
    bad = [
        (Create("/l/c", b""), [1, 2]),  # not sequential
        (SetData("/l/c", b""), [1, 2]),  # not a create
        (seq_create, [1]),
        (seq_create, [1, 2, 3]),
        (seq_create, {"own": 1}),
        (seq_create, [0, 2]),  # the own watch is required
        (seq_create, [-1, 2]),
        (seq_create, [1, -2]),
        (seq_create, [3, 3]),
        (seq_create, [2**63, 1]),
        (seq_create, ["1", 2]),
        (seq_create, [True, 2]),
        (seq_create, "x"),
    ]
    for op, queue in bad:
        with pytest.raises(BadRequest):
            decode_request(raw(op, queue))
    assert decode_request(raw(seq_create, [1, 0])).queue == QueueWatches(1, 0)


def test_a_failed_create_registers_nothing_and_a_full_connection_gets_fewer_watches():
    h = Harness()
    h.lead()
    h.session()
    no_parent = WriteRequest(0, 2, Create("/none/c-", b"", True, False, True), QueueWatches(1, 2))
    reply = h.reply(1, h.request(1, lambda x: WriteRequest(x, 2, no_parent.op, no_parent.queue)))
    assert isinstance(reply, Failed) and reply.code == "NoNode"
    assert h.engine.replica.watches.count_of(1) == 0

    h.request(1, lambda x: WriteRequest(x, 3, Create("/l", b"")))
    h.request(1, lambda x: WriteRequest(x, 4, Create("/l/a-", b"", True, False, True)))
    h.engine.config = dataclasses.replace(h.engine.config, max_watches_per_connection=1)
    op = Create("/l/b-", b"", True, False, True)
    reply = h.reply(1, h.request(1, lambda x: WriteRequest(x, 5, op, QueueWatches(7, 8))))
    assert isinstance(reply, Ok) and reply.value["watched"] == [7]
    assert reply.value["prev"] == "a-0000000000"  # told, so the client can watch it itself


def test_a_queue_too_long_to_list_is_answered_without_its_listing(monkeypatch):
    """A listing too large for one frame would turn the applied create into an error; past
    ``MAX_QUEUE_LISTING`` the answer names the node and its predecessor and lists nothing."""
    monkeypatch.setattr("paxctl.server.queued.MAX_QUEUE_LISTING", 1)
    h = Harness()
    h.lead()
    h.session()
    h.request(1, lambda x: WriteRequest(x, 2, Create("/l", b"")))
    h.request(1, lambda x: WriteRequest(x, 3, Create("/l/a-", b"", True, False, True)))
    op = Create("/l/b-", b"", True, False, True)
    reply = h.reply(1, h.request(1, lambda x: WriteRequest(x, 4, op, QueueWatches(7, 8))))
    assert isinstance(reply, Ok)
    assert reply.value["children"] is None and reply.value["stats"] is None
    assert reply.value["prev"] == "a-0000000000" and reply.value["watched"] == [7, 8]
