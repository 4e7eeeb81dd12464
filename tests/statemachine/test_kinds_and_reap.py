"""Node kinds, and reaping containers and TTL nodes: candidates, and the re-check at apply."""

from __future__ import annotations

import pytest
from znode_helpers import C1, Clock, Driver

from paxctl.statemachine import (
    REAPER_CLIENT,
    Create,
    DataTree,
    Delete,
    Multi,
    MultiError,
    NoChildrenForEphemerals,
    NoNode,
    Outcome,
    Reap,
    SetData,
)

# Clock gives command n the time 1000 * n.


@pytest.fixture
def c() -> Clock:
    return Clock()


# ------------------------------------------------------------------------------------ kinds


def test_each_node_remembers_its_kind(c):
    c.apply(Create("/p"))
    c.apply(Create("/e", ephemeral=True), session=7)
    c.apply(Create("/box", container=True))
    c.apply(Create("/t", ttl_ms=1234))
    c.apply(Create("/t-", ttl_ms=5, sequential=True))
    assert c.tree.kind("/") == ("persistent", 0)
    assert c.tree.kind("/p") == ("persistent", 0)
    assert c.tree.kind("/e") == ("ephemeral", 0)
    assert c.tree.kind("/box") == ("container", 0)
    assert c.tree.kind("/t") == ("ttl", 1234)
    assert c.tree.kind("/t-0000000004") == ("ttl", 5)
    # The Stat is ZooKeeper's, unchanged: only ephemerals have an owner.
    for path in ("/box", "/t"):
        assert c.tree.stat(path).ephemeral_owner == 0
    with pytest.raises(NoNode):
        c.tree.kind("/missing")


def test_ancestors_made_by_parents_are_persistent(c):
    c.apply(Create("/a/b/box", container=True, parents=True))
    assert c.tree.kind("/a") == c.tree.kind("/a/b") == ("persistent", 0)
    assert c.tree.kind("/a/b/box") == ("container", 0)


def test_containers_and_ttl_nodes_may_have_children_ephemerals_may_not(c):
    c.apply(Create("/box", container=True))
    c.apply(Create("/t", ttl_ms=10))
    c.apply(Create("/e", ephemeral=True), session=7)
    c.apply(Create("/box/x"))
    c.apply(Create("/t/x"))
    with pytest.raises(NoChildrenForEphemerals):
        c.apply(Create("/e/x"))


# ------------------------------------------------------------------------------ containers


def test_a_container_is_a_candidate_only_once_it_has_had_a_child(c):
    c.apply(Create("/box", container=True))
    assert c.tree.reap_candidates(10**12) == []
    c.apply(Create("/box/item"))
    assert c.tree.reap_candidates(10**12) == []  # not empty
    assert c.apply(Reap(("/box",))) == []
    c.apply(Delete("/box/item"))
    assert c.tree.reap_candidates(0) == ["/box"]  # no time involved
    assert c.apply(Reap(("/box",))) == ["/box"]
    assert c.tree.exists("/box") is None
    assert c.tree.reap_candidates(10**12) == []


def test_a_container_that_gains_a_child_after_the_candidates_survives(c):
    c.apply(Create("/box", container=True))
    c.apply(Create("/box/a"))
    c.apply(Delete("/box/a"))
    candidates = c.tree.reap_candidates(0)
    assert candidates == ["/box"]
    c.apply(Create("/box/b"))
    assert c.apply(Reap(tuple(candidates))) == []
    assert c.tree.children("/box") == ["b"]


# ------------------------------------------------------------------------------- TTL nodes


def test_a_ttl_node_expires_when_unchanged_for_its_ttl(c):
    c.apply(Create("/t", ttl_ms=2500))  # mtime 1000
    assert c.tree.reap_candidates(3499) == []
    assert c.tree.reap_candidates(3500) == ["/t"]  # mtime + ttl <= time
    c.apply(Reap(("/t",)))  # at 2000: too early
    c.apply(Reap(("/t",)))  # at 3000: still
    assert c.tree.exists("/t") is not None
    assert c.apply(Reap(("/t",))) == ["/t"]  # at 4000


def test_setting_the_data_postpones_expiry(c):
    c.apply(Create("/t", ttl_ms=1500))  # mtime 1000
    c.apply(SetData("/t", b"alive"))  # mtime 2000
    assert c.tree.reap_candidates(3000) == []
    assert c.tree.reap_candidates(3500) == ["/t"]


def test_a_ttl_node_with_children_is_kept_and_child_changes_do_not_renew_it(c):
    c.apply(Create("/t", ttl_ms=1))  # mtime 1000
    c.apply(Create("/t/x"))
    assert c.tree.reap_candidates(10**12) == []
    assert c.apply(Reap(("/t",))) == []
    c.apply(Delete("/t/x"))
    assert c.tree.reap_candidates(c.slot * 1000) == ["/t"]


def test_a_node_set_after_the_candidates_were_computed_is_not_deleted(c):
    c.apply(Create("/t", ttl_ms=2000))  # mtime 1000
    c.slot = 5
    candidates = c.tree.reap_candidates(6000)
    assert candidates == ["/t"]
    c.apply(SetData("/t", b"renewed"))  # at 6000
    assert c.apply(Reap(tuple(candidates))) == []  # at 7000: 6000 + 2000 > 7000
    assert c.tree.get("/t")[0] == b"renewed"


# ------------------------------------------------------------------------------ reap itself


def test_reap_skips_anything_not_expired_without_error(c):
    c.apply(Create("/p"))
    c.apply(Create("/e", ephemeral=True), session=7)
    c.apply(Create("/box", container=True))
    c.apply(Create("/t", ttl_ms=1))
    paths = ("/missing", "/p", "/e", "/box", "/", "/t", "/t")
    assert c.apply(Reap(paths)) == ["/t"]
    assert sorted(c.tree.children("/")) == ["box", "e", "p"]


def test_reap_rechecks_in_order_so_an_emptied_parent_may_follow(c):
    c.apply(Create("/box", container=True))
    c.apply(Create("/box/t", ttl_ms=1))
    assert c.tree.reap_candidates(10**6) == ["/box/t"]  # the parent is not empty yet
    assert c.apply(Reap(("/box/t", "/box"))) == ["/box/t", "/box"]
    c2 = Clock()
    c2.apply(Create("/box", container=True))
    c2.apply(Create("/box/t", ttl_ms=1))
    assert c2.apply(Reap(("/box", "/box/t"))) == ["/box/t"]
    assert c2.tree.reap_candidates(0) == ["/box"]


def test_candidates_are_sorted_and_limited(c):
    for name in ("d", "b", "a", "c"):
        c.apply(Create(f"/{name}", ttl_ms=1))
    c.apply(Create("/box", container=True))
    c.apply(Multi((Create("/box/x"), Delete("/box/x"))))
    assert c.tree.reap_candidates(10**6) == ["/a", "/b", "/box", "/c", "/d"]
    assert c.tree.reap_candidates(10**6, limit=2) == ["/a", "/b"]
    assert c.tree.reap_candidates(10**6, limit=0) == []


def test_a_rolled_back_multi_leaves_the_tracked_nodes_as_they_were(c):
    c.apply(Create("/t", ttl_ms=1))
    c.apply(Create("/box", container=True))
    c.apply(Create("/box/x"))
    with pytest.raises(MultiError):
        c.apply(
            Multi(
                (
                    Delete("/t"),  # untracked, then restored
                    Delete("/box/x"),
                    Create("/new", container=True),  # tracked, then dropped
                    Create("/nt", ttl_ms=1),
                    Delete("/missing"),
                )
            )
        )
    assert c.tree.reap_candidates(10**6) == ["/t"]
    c.apply(Delete("/box/x"))
    assert c.tree.reap_candidates(10**6) == ["/box", "/t"]
    assert c.apply(Reap(("/box", "/t"))) == ["/box", "/t"]
    assert c.tree.reap_candidates(10**6) == []


def test_tracked_nodes_are_rebuilt_from_a_snapshot(c):
    c.apply(Create("/t", ttl_ms=1))
    c.apply(Create("/box", container=True))
    c.apply(Create("/box/x"))
    t2 = DataTree.decode_snapshot(c.tree.encode_snapshot())
    assert t2.reap_candidates(10**6) == ["/t"]
    Clock(t2).apply(Delete("/box/x"))
    assert t2.reap_candidates(10**6) == ["/box", "/t"]


# ------------------------------------------------------------------------- state machine


def test_the_state_machine_reaps_at_the_commands_time():
    d = Driver()
    d.run(Create("/t", ttl_ms=5000), client=C1, time_ms=10_000)
    assert d.sm.reap_candidates(14_999) == []
    assert d.sm.reap_candidates(15_000) == ["/t"]
    assert d.run(Reap(("/t",)), client=REAPER_CLIENT, time_ms=14_999) == Outcome(True, [])
    out = d.run(Reap(("/t",)), client=REAPER_CLIENT, time_ms=15_000)
    assert out == Outcome(True, ["/t"])
    assert d.sm.last_events == (("deleted", "/t"), ("children", "/"))
    assert d.sm.digest() == d.sm.digest_from_scratch()


def test_the_state_machine_never_reaps_with_a_time_behind_its_last():
    d = Driver()
    d.run(Create("/t", ttl_ms=5000), client=C1, time_ms=10_000)
    d.run(SetData("/", b""), client=C1, time_ms=20_000)
    # A new leader whose clock is behind: the command's time is raised to 20_000.
    assert d.run(Reap(("/t",)), client=REAPER_CLIENT, time_ms=1).value == ["/t"]
