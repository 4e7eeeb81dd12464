"""Snapshots round-trip exactly; digests agree on equal trees and differ on different ones."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from znode_helpers import Clock, ops

from paxctl.statemachine import (
    Create,
    DataTree,
    Delete,
    SetData,
    SnapshotError,
    ZnodeError,
)
from paxctl.statemachine.tree import SNAPSHOT_FORMAT


def run(op_list, tree: DataTree | None = None) -> DataTree:
    c = Clock(tree)
    for i, op in enumerate(op_list):
        with contextlib.suppress(ZnodeError):
            c.apply(op, session=1 + i % 2)
    return c.tree


def dump(tree: DataTree) -> dict:
    """Everything a client can read, walked from the root."""
    out = {}
    todo = ["/"]
    while todo:
        path = todo.pop()
        out[path] = tree.get(path)
        todo += [("" if path == "/" else path) + "/" + n for n in tree.children(path)]
    return out


SAMPLE = [
    Create("/a", b"1"),
    Create("/a/b/c", b"deep", parents=True),
    Create("/a/s-", sequential=True),
    Create("/e", b"eph", ephemeral=True),
    SetData("/a", b"2"),
    Delete("/a/b/c"),
    Create("/box", container=True),
    Create("/box/item"),
    Delete("/box/item"),
    Create("/lease-", b"t", sequential=True, ttl_ms=500),
]


def test_the_empty_tree_round_trips():
    t = DataTree()
    t2 = DataTree.decode_snapshot(t.encode_snapshot())
    assert t2.digest() == t.digest()
    assert dump(t2) == dump(t)


def test_a_snapshot_round_trips_exactly():
    t = run(SAMPLE)
    t2 = DataTree.decode_snapshot(t.encode_snapshot())
    assert dump(t2) == dump(t)
    assert t2.digest() == t.digest()
    assert t2.encode_snapshot() == t.encode_snapshot()
    assert t2.ephemerals(2) == t.ephemerals(2) == ["/e"]
    for path in ("/a", "/e", "/box", "/lease-0000000003"):
        assert t2.kind(path) == t.kind(path)
    assert t2.kind("/lease-0000000003") == ("ttl", 500)
    assert t2.reap_candidates(10**9) == t.reap_candidates(10**9) == ["/box", "/lease-0000000003"]
    # The restored tree carries on exactly like the original.
    for tree in (t, t2):
        Clock(tree).apply(Create("/a/s-", sequential=True))
    assert dump(t2) == dump(t)
    assert t2.digest() == t.digest()


@given(st.lists(ops, max_size=30))
def test_random_trees_round_trip_and_digests_agree(op_list):
    t = run(op_list)
    t2 = DataTree.decode_snapshot(t.encode_snapshot())
    assert dump(t2) == dump(t)
    assert t2.digest() == t.digest() == t.digest_from_scratch()


@given(st.lists(ops, max_size=30))
def test_two_trees_fed_the_same_operations_have_the_same_digest(op_list):
    a, b = run(op_list), run(op_list)
    assert a.digest() == b.digest()
    assert a.encode_snapshot() == b.encode_snapshot()


@given(st.lists(ops, max_size=30), st.data())
def test_incremental_digest_matches_a_full_rehash_at_any_point(op_list, data):
    c = Clock()
    for op in op_list:
        with contextlib.suppress(ZnodeError):
            c.apply(op, session=1)
        if data.draw(st.booleans()):
            assert c.tree.digest() == c.tree.digest_from_scratch()
    assert c.tree.digest() == c.tree.digest_from_scratch()


@pytest.mark.parametrize(
    "other",
    [
        SetData("/a", b"3"),  # different data
        SetData("/a", b"2", 0),  # same data, fails on its version
        Create("/a/t-", sequential=True),  # different name
        Create("/x"),  # different path
        Create("/e2", b"eph", ephemeral=True),  # different owner (session 1 vs 2)
    ],
)
def test_one_different_operation_changes_the_digest(other):
    base = [*SAMPLE, SetData("/a", b"2")]
    changed = [*SAMPLE, other]
    assert run(base).digest() != run(changed).digest()


@pytest.mark.parametrize(
    "other",
    [Create("/k", container=True), Create("/k", ttl_ms=5), Create("/k", ttl_ms=6)],
)
def test_the_digest_covers_the_node_kind(other):
    a, b = run([Create("/k", ttl_ms=6)]), run([other])
    if other == Create("/k", ttl_ms=6):
        assert a.digest() == b.digest()
    else:
        assert a.digest() != b.digest()
    assert b.digest() == b.digest_from_scratch()


def test_the_digest_covers_times_and_zxids():
    a, b = DataTree(), DataTree()
    a.apply(Create("/a"), 1, 100)
    b.apply(Create("/a"), 1, 101)
    assert a.digest() != b.digest()
    c = DataTree()
    c.apply(Create("/a"), 2, 100)
    assert a.digest() != c.digest()


def test_delete_then_recreate_is_not_the_same_state():
    a = run([Create("/a"), Create("/b")])
    b = run([Create("/a"), Create("/b"), Delete("/b"), Create("/b")])
    assert a.digest() != b.digest()


def pack(x) -> bytes:
    return msgpack.packb(x, use_bin_type=True)


def node(path, data=b"", *fields, mode=0, ttl=0):
    return [path, data, *(fields or [0] * 8), mode, ttl]


BAD_SNAPSHOTS = [
    b"",
    b"\xc1",
    pack(None),
    pack([SNAPSHOT_FORMAT + 1, [node("/")]]),
    pack([SNAPSHOT_FORMAT, []]),
    pack([SNAPSHOT_FORMAT, [node("/a")]]),  # no root
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a/b")]]),  # orphan
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a"), node("/a")]]),  # repeated
    pack([SNAPSHOT_FORMAT, [node("/"), node("/b"), node("/a")]]),  # unordered
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a/")]]),  # invalid path
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", "str")]]),
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", b"", 1, 1, 1, 1, 1, -1, 0, 0)]]),
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", b"", 1, 1, 1, 1, 1, 0, 0)]]),  # short
    pack([SNAPSHOT_FORMAT, [node("/"), node("/e", b"", 1, 1, 1, 1, 1, 0, 0, 5), node("/e/x")]]),
    pack([SNAPSHOT_FORMAT, [node("/", b"", 0, 0, 0, 0, 0, 0, 0, 5)]]),  # ephemeral root
    pack([SNAPSHOT_FORMAT, [node("/", mode=1)]]),  # container root
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", mode=3)]]),  # unknown mode
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", mode=-1)]]),
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", mode=2)]]),  # TTL node without a TTL
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", mode=2, ttl=2**40 + 1)]]),
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", ttl=5)]]),  # TTL on a persistent node
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", mode=1, ttl=5)]]),
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", b"", 1, 1, 1, 1, 1, 0, 0, 5, mode=1)]]),
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", b"", 1, 1, 1, 1, 1, 0, 0, 5, mode=2, ttl=9)]]),
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a", mode=True)]]),
    pack([SNAPSHOT_FORMAT, [node("/"), node("/a")[:-1]]]),  # no TTL field
]


@pytest.mark.parametrize("data", BAD_SNAPSHOTS)
def test_bad_snapshots_raise_snapshot_error(data):
    with pytest.raises(SnapshotError):
        DataTree.decode_snapshot(data)
