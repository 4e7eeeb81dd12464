"""One test per rule of ZooKeeper's data model, as DataTree applies single operations."""

from __future__ import annotations

import pytest
from znode_helpers import Clock, zxid

from paxctl.statemachine import (
    BadArguments,
    BadVersion,
    Check,
    CloseSession,
    Create,
    DataTree,
    Delete,
    NoChildrenForEphemerals,
    NodeExists,
    NoNode,
    NotEmpty,
    SetData,
    Stat,
)


@pytest.fixture
def c() -> Clock:
    return Clock()


def test_a_new_tree_holds_only_the_root_with_a_zero_stat():
    t = DataTree()
    assert len(t) == 1
    assert t.get("/") == (b"", Stat())
    assert t.children("/") == []
    assert t.exists("/") == Stat()


# ---------------------------------------------------------------------------------- create


def test_create_sets_czxid_mzxid_pzxid_and_times_and_returns_the_path():
    t = DataTree()
    assert t.apply(Create("/a", b"hello"), zxid(7, 3), 1234) == "/a"
    assert t.get("/a") == (
        b"hello",
        Stat(
            czxid=zxid(7, 3),
            mzxid=zxid(7, 3),
            pzxid=zxid(7, 3),
            ctime=1234,
            mtime=1234,
            version=0,
            cversion=0,
            aversion=0,
            ephemeral_owner=0,
            data_length=5,
            num_children=0,
        ),
    )


def test_create_bumps_the_parents_cversion_pzxid_and_num_children_only():
    t = DataTree()
    t.apply(Create("/p", b"data"), zxid(1), 10)
    before = t.stat("/p")
    t.apply(Create("/p/x"), zxid(2), 20)
    t.apply(Create("/p/y"), zxid(3), 30)
    after = t.stat("/p")
    assert after.cversion == before.cversion + 2
    assert after.pzxid == zxid(3)
    assert after.num_children == 2
    # Child changes are not data changes.
    assert (after.version, after.mzxid, after.mtime) == (before.version, before.mzxid, 10)
    assert (after.czxid, after.ctime, after.data_length) == (zxid(1), 10, 4)
    assert t.children("/p") == ["x", "y"]


def test_create_of_an_existing_node_is_node_exists(c):
    c.apply(Create("/a"))
    with pytest.raises(NodeExists):
        c.apply(Create("/a", b"other"))
    assert c.tree.get("/a")[0] == b""
    with pytest.raises(NodeExists):
        c.apply(Create("/"))


def test_create_under_a_missing_parent_is_no_node(c):
    with pytest.raises(NoNode):
        c.apply(Create("/a/b"))
    assert c.tree.exists("/a") is None


def test_children_are_listed_sorted(c):
    for name in ["m", "b", "z", "a", "B"]:
        c.apply(Create(f"/{name}"))
    assert c.tree.children("/") == ["B", "a", "b", "m", "z"]


# ------------------------------------------------------------------------------ sequential


def test_sequential_names_append_the_parents_cversion_in_ten_digits(c):
    c.apply(Create("/q"))
    assert c.apply(Create("/q/job-", sequential=True)) == "/q/job-0000000000"
    assert c.apply(Create("/q/job-", sequential=True)) == "/q/job-0000000001"
    c.apply(Create("/q/other"))  # any child change advances the counter
    assert c.apply(Create("/q/job-", sequential=True)) == "/q/job-0000000003"


def test_deletes_advance_the_sequence_too_so_names_are_never_reused(c):
    c.apply(Create("/q"))
    first = c.apply(Create("/q/n", sequential=True))
    c.apply(Delete(first))
    assert c.apply(Create("/q/n", sequential=True)) == "/q/n0000000002"


def test_a_sequential_prefix_may_be_the_parent_itself(c):
    c.apply(Create("/q"))
    assert c.apply(Create("/q/", sequential=True)) == "/q/0000000000"
    assert c.apply(Create("/", sequential=True)) == "/0000000001"  # root cversion is now 1


def test_a_sequential_name_taken_by_hand_is_node_exists(c):
    c.apply(Create("/q"))
    c.apply(Create("/q/n0000000001"))
    with pytest.raises(NodeExists):
        c.apply(Create("/q/n", sequential=True))
    # The failed create changed nothing, so the next try fails the same way...
    with pytest.raises(NodeExists):
        c.apply(Create("/q/n", sequential=True))
    c.apply(Create("/q/pad"))
    # ...until another child change moves the counter past the taken name.
    assert c.apply(Create("/q/n", sequential=True)) == "/q/n0000000002"


# ---------------------------------------------------------------------------------- parents


def test_parents_creates_missing_ancestors_as_empty_persistent_nodes(c):
    c.apply(Create("/a"))
    path = c.apply(Create("/a/b/c/d", b"leaf", parents=True), session=5)
    assert path == "/a/b/c/d"
    z = zxid(c.slot)
    for p in ("/a/b", "/a/b/c"):
        data, st = c.tree.get(p)
        assert data == b""
        assert (st.czxid, st.mzxid, st.pzxid, st.ctime, st.mtime) == (
            z,
            z,
            z,
            c.slot * 1000,
            1000 * c.slot,
        )
        assert st.ephemeral_owner == 0
        assert st.num_children == 1
        assert st.cversion == 1
    assert c.tree.get("/a/b/c/d")[0] == b"leaf"
    assert c.tree.stat("/a").cversion == 1
    assert c.tree.stat("/a").pzxid == z


def test_parents_with_an_existing_path_is_still_node_exists(c):
    c.apply(Create("/a/b", parents=True))
    with pytest.raises(NodeExists):
        c.apply(Create("/a/b", parents=True))


def test_parents_with_sequential_numbers_from_the_new_parents_counter(c):
    assert c.apply(Create("/locks/x/lock-", sequential=True, parents=True)) == (
        "/locks/x/lock-0000000000"
    )


def test_parents_of_an_ephemeral_is_refused_and_creates_nothing(c):
    c.apply(Create("/e", ephemeral=True), session=1)
    with pytest.raises(NoChildrenForEphemerals):
        c.apply(Create("/e/a/b", parents=True))
    assert c.tree.exists("/e/a") is None
    assert c.tree.stat("/e").cversion == 0


# ------------------------------------------------------------------------------- ephemerals


def test_ephemerals_record_their_owner_and_cannot_have_children(c):
    c.apply(Create("/e", b"x", ephemeral=True), session=42)
    assert c.tree.stat("/e").ephemeral_owner == 42
    assert c.tree.ephemerals(42) == ["/e"]
    assert c.tree.ephemerals(7) == []
    with pytest.raises(NoChildrenForEphemerals):
        c.apply(Create("/e/child"))
    with pytest.raises(NoChildrenForEphemerals):
        c.apply(Create("/e/", sequential=True))


def test_an_ephemeral_needs_a_session(c):
    with pytest.raises(BadArguments):
        c.apply(Create("/e", ephemeral=True), session=0)


def test_close_session_deletes_exactly_that_sessions_ephemerals(c):
    c.apply(Create("/app"))
    c.apply(Create("/app/w-", ephemeral=True, sequential=True), session=1)
    c.apply(Create("/app/x", ephemeral=True), session=1)
    c.apply(Create("/app/y", ephemeral=True), session=2)
    c.apply(Create("/app/z"), session=1)  # persistent: survives its creator
    cversion = c.tree.stat("/app").cversion
    deleted = c.apply(CloseSession(1))
    assert deleted == ["/app/w-0000000000", "/app/x"]
    assert c.tree.children("/app") == ["y", "z"]
    assert c.tree.ephemerals(1) == []
    assert c.tree.ephemerals(2) == ["/app/y"]
    st = c.tree.stat("/app")
    assert st.cversion == cversion + 2
    assert st.pzxid == zxid(c.slot)
    assert c.apply(CloseSession(1)) == []


def test_deleting_an_ephemeral_by_hand_forgets_it(c):
    c.apply(Create("/e", ephemeral=True), session=3)
    c.apply(Delete("/e"))
    assert c.tree.ephemerals(3) == []
    assert c.apply(CloseSession(3)) == []


# --------------------------------------------------------------------------------- set data


def test_set_data_bumps_version_mzxid_mtime_and_returns_the_new_stat(c):
    c.apply(Create("/a", b"one"))
    created = c.tree.stat("/a")
    st = c.apply(SetData("/a", b"three"))
    assert st == c.tree.stat("/a")
    assert st.version == 1
    assert st.mzxid == zxid(c.slot)
    assert st.mtime == 1000 * c.slot
    assert st.data_length == 5
    assert (st.czxid, st.ctime, st.pzxid, st.cversion) == (
        created.czxid,
        created.ctime,
        created.pzxid,
        created.cversion,
    )
    assert c.tree.get("/a")[0] == b"three"


def test_setting_the_same_data_still_counts_as_a_change(c):
    c.apply(Create("/a", b"x"))
    c.apply(SetData("/a", b"x"))
    assert c.tree.stat("/a").version == 1


def test_set_data_on_a_missing_node_is_no_node(c):
    with pytest.raises(NoNode):
        c.apply(SetData("/nope", b""))


def test_set_data_on_the_root_is_allowed(c):
    st = c.apply(SetData("/", b"root data"))
    assert st.version == 1
    assert c.tree.get("/")[0] == b"root data"


# ---------------------------------------------------------------------------------- delete


def test_delete_removes_the_node_and_updates_the_parent(c):
    c.apply(Create("/p"))
    c.apply(Create("/p/x"))
    assert c.apply(Delete("/p/x")) is None
    assert c.tree.exists("/p/x") is None
    st = c.tree.stat("/p")
    assert st.num_children == 0
    assert st.cversion == 2
    assert st.pzxid == zxid(c.slot)
    assert st.version == 0


def test_delete_of_a_node_with_children_is_not_empty(c):
    c.apply(Create("/p/x", parents=True))
    with pytest.raises(NotEmpty):
        c.apply(Delete("/p"))
    assert c.tree.children("/p") == ["x"]


def test_delete_of_a_missing_node_is_no_node(c):
    with pytest.raises(NoNode):
        c.apply(Delete("/nope"))


def test_a_recreated_node_starts_over(c):
    c.apply(Create("/a", b"1"))
    c.apply(SetData("/a", b"2"))
    c.apply(Delete("/a"))
    c.apply(Create("/a", b"3"))
    st = c.tree.stat("/a")
    assert (st.version, st.czxid) == (0, zxid(c.slot))


# ---------------------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    "make",
    [
        lambda v: SetData("/a", b"new", v),
        lambda v: Delete("/a", v),
        lambda v: Check("/a", v),
    ],
)
def test_version_checks(c, make):
    c.apply(Create("/a"))
    c.apply(SetData("/a", b"x"))  # version 1
    with pytest.raises(BadVersion):
        c.apply(make(0))
    with pytest.raises(BadVersion):
        c.apply(make(2))
    assert c.tree.stat("/a").version == 1  # a failed check changes nothing
    c.apply(make(1))


@pytest.mark.parametrize(
    "make", [lambda: SetData("/a", b"new", -1), lambda: Delete("/a", -1), lambda: Check("/a", -1)]
)
def test_version_minus_one_matches_any(c, make):
    c.apply(Create("/a"))
    for _ in range(3):
        c.apply(SetData("/a", b"x"))
    c.apply(make())


def test_no_node_comes_before_bad_version_and_bad_version_before_not_empty(c):
    with pytest.raises(NoNode):
        c.apply(Delete("/a", 5))
    c.apply(Create("/a/b", parents=True))
    with pytest.raises(BadVersion):
        c.apply(Delete("/a", 5))
    with pytest.raises(NotEmpty):
        c.apply(Delete("/a", 0))


def test_check_returns_none_and_changes_nothing(c):
    c.apply(Create("/a"))
    d = c.tree.digest()
    assert c.apply(Check("/a", 0)) is None
    with pytest.raises(NoNode):
        c.apply(Check("/b", -1))
    assert c.tree.digest() == d


# ------------------------------------------------------------------------------------ reads


@pytest.mark.parametrize("read", ["get", "stat", "children"])
def test_reads_of_missing_nodes_raise_no_node(read):
    with pytest.raises(NoNode):
        getattr(DataTree(), read)("/missing")


@pytest.mark.parametrize("read", ["get", "stat", "children", "exists"])
def test_reads_of_invalid_paths_raise_bad_arguments(read):
    with pytest.raises(BadArguments):
        getattr(DataTree(), read)("no/slash")


def test_exists_returns_none_for_missing_nodes(c):
    assert c.tree.exists("/a") is None
    c.apply(Create("/a"))
    assert c.tree.exists("/a") == c.tree.stat("/a")


def test_returned_stats_are_pictures_not_views(c):
    c.apply(Create("/a"))
    st = c.tree.stat("/a")
    c.apply(SetData("/a", b"x"))
    assert st.version == 0
