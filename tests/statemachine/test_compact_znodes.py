"""The compact znode record (issue 16): the same tree, digest and snapshot, fewer objects.

Structural, never timed or sized: a leaf holds no children container, a parent holds the very
path objects the tree keys by, small data carries no cached hash, and the digest of a fixed
history is the one the earlier representation computed (replicas of both must agree), and a
snapshot packed node by node is byte for byte the encoding of the whole list.
"""

from __future__ import annotations

import msgpack
import pytest
from znode_helpers import C1, zxid

from paxctl.statemachine import (
    TEMP_CLIENT_BIT,
    Create,
    DataTree,
    Delete,
    Multi,
    MultiError,
    OpenSession,
    SetData,
    SnapshotError,
    StateMachine,
)
from paxctl.statemachine.ops import encode_command
from paxctl.statemachine.znode import Znode


def tree_of(*ops: object) -> DataTree:
    t = DataTree()
    for i, op in enumerate(ops):
        t.apply(op, zxid=i + 1, time_ms=1000 + i)  # type: ignore[arg-type]
    return t


def test_a_leaf_holds_no_children_container_and_an_emptied_parent_drops_it() -> None:
    t = tree_of(Create("/a", b""), Create("/a/b", b"x"))
    assert t._nodes["/a/b"].children is None
    assert t._nodes["/a"].children is not None
    t.apply(Delete("/a/b"), zxid=10, time_ms=2000)
    assert t._nodes["/a"].children is None
    assert t.children("/a") == [] and t.stat("/a").num_children == 0


def test_a_parent_shares_its_childrens_key_objects() -> None:
    t = tree_of(Create("/a", b""), Create("/a/b", b"x"), Create("/a/c", b"y"))
    keys = {id(k) for k in t._nodes}
    held = t._nodes["/a"].children
    assert held is not None and {id(p) for p in held} <= keys
    assert t.children("/a") == ["b", "c"]


def test_child_names_are_sorted_names_under_any_parent() -> None:
    names = ["b10", "b2", "a", "b", "z-1", "A"]
    t = tree_of(Create("/p", b""), *(Create(f"/p/{n}", b"") for n in names))
    assert t.children("/p") == sorted(names)
    root = tree_of(*(Create(f"/{n}", b"") for n in names))
    assert root.children("/") == sorted(names)


def test_a_failed_multi_restores_the_children_and_the_digest() -> None:
    t = tree_of(Create("/a", b""), Create("/a/b", b"x"))
    before = t.digest()
    with pytest.raises(MultiError):
        t.apply(Multi((Delete("/a/b"), Create("/a/c", b""), SetData("/nope", b""))), 5, 5000)
    assert t.children("/a") == ["b"]
    assert t.digest() == before == t.digest_from_scratch()


def test_only_large_data_keeps_a_cached_hash() -> None:
    t = tree_of(Create("/small", b"s" * 100), Create("/large", b"l" * 5000))
    t.digest()
    assert t._nodes["/small"].data_hash is None
    assert t._nodes["/large"].data_hash is not None
    # The uncached hash still follows the data: same length, new bytes, new digest.
    d = t.digest()
    t.apply(SetData("/small", b"t" * 100), zxid=9, time_ms=9000)
    assert t.digest() != d and t.digest() == t.digest_from_scratch()


def test_the_digest_is_the_one_the_earlier_representation_computed() -> None:
    """Pinned values, computed by the representation before issue 16 (a share per node, names
    in the children set, every data hash over 64 bytes cached): replicas must keep agreeing."""
    t = tree_of(
        Create("/a", b"x" * 10),
        Create("/a/b", b"y" * 100),
        Create("/a/c", b"z" * 5000),
        Create("/d", b""),
        SetData("/a/b", b"w" * 100),
        Delete("/d"),
        Create("/e", b"q" * 64),
    )
    assert t.digest().hex() == "e3f33cf3d3c0cf7c5178565ba92c2c7981a2b2d35279a51b72a53fec63be14c0"
    t.apply(SetData("/a/c", b"k" * 5000), zxid=20, time_ms=2000)
    assert t.digest().hex() == "aad617c074afa46b6f4be21d6062fc86e1876a8e46278ba6a640aa6b8bf84c8a"
    assert t.digest() == t.digest_from_scratch()


@pytest.mark.parametrize("count", [3, 20, 70_000])  # fixarray, array16 and array32 headers
def test_a_streamed_snapshot_is_byte_for_byte_the_list_encoding(count: int) -> None:
    t = DataTree()
    t.apply(Create("/p", b""), zxid=1, time_ms=1)
    for i in range(count):
        t._add(f"/p/n{i:06d}", Znode(b"d" * (i % 130), i + 2, i + 2, i + 2, 5, 5), i + 2)
    assert t.encode_snapshot() == msgpack.packb(t.to_wire(), use_bin_type=True)
    assert DataTree.decode_snapshot(t.encode_snapshot()).digest() == t.digest()


def test_a_machine_snapshot_is_the_list_encoding() -> None:
    m = StateMachine()
    m.apply_command(zxid(1), encode_command(10, OpenSession(5000)), TEMP_CLIENT_BIT | 7, 1)
    assert m.last_opened == C1
    m.apply_command(zxid(2), encode_command(11, Create("/a", b"x" * 100)), 1, 1)
    m.apply_command(zxid(3), encode_command(12, Create("/b", b"", ephemeral=True)), C1, 1)
    wire = msgpack.unpackb(m.snapshot(), raw=False)
    assert m.snapshot() == msgpack.packb(wire, use_bin_type=True)
    assert wire[1] == m.tree.to_wire() and wire[5] and wire[4]
    assert StateMachine.restore(m.snapshot()).digest() == m.digest()


def test_a_streamed_restore_refuses_what_unpackb_refused() -> None:
    m = StateMachine()
    m.apply_command(zxid(1), encode_command(10, Create("/a", b"x" * 100)), 1, 1)
    snap = m.snapshot()
    assert StateMachine.restore(snap).snapshot() == snap
    bad = [snap + b"\x00", snap[:-1], b"", b"\x01", msgpack.packb({"a": 1}), snap[:3]]
    bad.append(msgpack.packb([4, [2, []], 0, 0, [], []]))  # a tree without a root
    for data in bad:
        with pytest.raises(SnapshotError):
            StateMachine.restore(data)


def test_commands_of_one_millisecond_share_one_time_object() -> None:
    now = 1_700_000_000_000
    t = DataTree()
    t.apply(Create("/a", b""), zxid=1, time_ms=int(str(now)))
    t.apply(Create("/b", b""), zxid=2, time_ms=int(str(now)))  # equal, not the same object
    t.apply(Create("/c", b""), zxid=3, time_ms=int(str(now + 1)))
    a, b, c = (t._nodes[p] for p in ("/a", "/b", "/c"))
    assert a.ctime is b.ctime is b.mtime and c.ctime == now + 1
    assert t.stat("/b").ctime == now and t.stat("/c").mtime == now + 1


def test_a_restored_node_shares_its_equal_zxids_and_times() -> None:
    t = tree_of(Create("/a", b""), Create("/a/b", b"x"), SetData("/a/b", b"y"))
    back = DataTree.decode_snapshot(t.encode_snapshot())
    a, b = back._nodes["/a"], back._nodes["/a/b"]
    assert b.czxid is b.pzxid and b.mzxid != b.czxid and b.ctime != b.mtime
    assert a.mzxid is a.czxid and a.mtime is a.ctime and a.pzxid != a.czxid
    assert back.digest() == t.digest() and back.encode_snapshot() == t.encode_snapshot()


def test_children_stay_sorted_through_inserts_and_removals_anywhere() -> None:
    t = tree_of(Create("/p", b""), *(Create(f"/p/{n}", b"") for n in ["m", "c", "x", "a"]))
    t.apply(Delete("/p/c"), zxid=20, time_ms=20)
    t.apply(Create("/p/d", b""), zxid=21, time_ms=21)
    t.apply(Delete("/p/x"), zxid=22, time_ms=22)
    assert t.children("/p") == ["a", "d", "m"] and t.stat("/p").num_children == 3
    assert t.digest() == t.digest_from_scratch()


def test_events_of_children_under_one_parent_share_its_path_object() -> None:
    t = tree_of(Create("/p", b""))
    t.apply(Create("/p/a", b""), zxid=10, time_ms=10)
    first = t.last_events
    t.apply(Create("/p/b", b""), zxid=11, time_ms=11)
    second = t.last_events
    assert first == (("created", "/p/a"), ("children", "/p"))
    assert second == (("created", "/p/b"), ("children", "/p"))
    assert first[1][1] is second[1][1]
    t.apply(Delete("/p/a"), zxid=12, time_ms=12)
    assert t.last_events == (("deleted", "/p/a"), ("children", "/p"))
