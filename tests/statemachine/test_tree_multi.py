"""Multi: all or nothing, one zxid, and the index of the operation that failed."""

from __future__ import annotations

import pytest
from znode_helpers import Clock, zxid

from paxctl.statemachine import (
    BadVersion,
    Check,
    Create,
    Delete,
    Multi,
    MultiError,
    NoChildrenForEphemerals,
    NodeExists,
    NoNode,
    NotEmpty,
    SetData,
    Stat,
)


@pytest.fixture
def c() -> Clock:
    c = Clock()
    c.apply(Create("/a", b"a"))
    c.apply(Create("/a/child"))
    c.apply(Create("/q"))
    c.apply(Create("/e", ephemeral=True), session=9)
    return c


def test_a_successful_multi_returns_each_result_in_order(c):
    results = c.apply(
        Multi(
            (
                Create("/b", b"b"),
                Create("/q/s-", sequential=True),
                SetData("/a", b"A", 0),
                Check("/a", 1),
                Delete("/a/child"),
            )
        )
    )
    assert results[0] == "/b"
    assert results[1] == "/q/s-0000000000"
    assert isinstance(results[2], Stat)
    assert results[2].version == 1
    assert results[3:] == [None, None]


def test_all_operations_share_one_zxid(c):
    c.apply(Multi((Create("/x"), Create("/y"), SetData("/a", b"new"))))
    z = zxid(c.slot)
    assert c.tree.stat("/x").czxid == z
    assert c.tree.stat("/y").czxid == z
    assert c.tree.stat("/a").mzxid == z
    assert c.tree.stat("/").pzxid == z


def test_later_operations_see_earlier_ones(c):
    results = c.apply(
        Multi(
            (
                Create("/n"),
                Create("/n/m"),
                SetData("/n/m", b"1"),
                Check("/n/m", 1),
                Delete("/n/m", 1),
                Create("/n/s", sequential=True),
            )
        )
    )
    assert results[-1] == "/n/s0000000002"
    assert c.tree.children("/n") == ["s0000000002"]


def test_an_empty_multi_succeeds_and_changes_nothing(c):
    d = c.tree.digest()
    assert c.apply(Multi(())) == []
    assert c.tree.digest() == d


FAILURES = [
    (Create("/a"), NodeExists),
    (Create("/nope/x"), NoNode),
    (Create("/e/x"), NoChildrenForEphemerals),
    (SetData("/a", b"", 7), BadVersion),
    (SetData("/nope", b""), NoNode),
    (Delete("/a"), NotEmpty),
    (Delete("/a/child", 3), BadVersion),
    (Check("/a", 5), BadVersion),
    (Check("/nope", -1), NoNode),
]


@pytest.mark.parametrize(("failing", "cause"), FAILURES)
@pytest.mark.parametrize("position", [0, 1, 4])
def test_a_failing_operation_undoes_everything_and_reports_its_index(c, failing, cause, position):
    before = c.tree.encode_snapshot()
    digest = c.tree.digest()
    ephemerals = c.tree.ephemerals(9)
    ops = [
        Create("/new", b"n", parents=True),
        Create("/deep/er/node", parents=True, ephemeral=True),
        Create("/q/s-", sequential=True),
        SetData("/a", b"changed"),
        Delete("/a/child"),
    ]
    ops.insert(position, failing)
    with pytest.raises(MultiError) as info:
        c.apply(Multi(tuple(ops)), session=9)
    err = info.value
    assert err.index == position
    assert err.code == cause.code
    assert isinstance(err.error, cause)
    assert c.tree.encode_snapshot() == before
    assert c.tree.digest() == digest
    assert c.tree.digest_from_scratch() == digest
    assert c.tree.ephemerals(9) == ephemerals
    # And the tree still works: the sequence counter did not move.
    assert c.apply(Create("/q/s-", sequential=True)) == "/q/s-0000000000"


def test_rollback_restores_deleted_ephemerals_to_their_session(c):
    with pytest.raises(MultiError) as info:
        c.apply(Multi((Delete("/e"), Check("/e", -1))))
    assert info.value.index == 1
    assert c.tree.ephemerals(9) == ["/e"]
    assert c.tree.stat("/e").ephemeral_owner == 9


def test_a_failed_single_operation_is_not_a_multi_error(c):
    with pytest.raises(NodeExists) as info:
        c.apply(Create("/a"))
    assert not isinstance(info.value, MultiError)
