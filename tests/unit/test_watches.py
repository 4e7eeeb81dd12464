"""The watch registry and event history: ZooKeeper's watch semantics, replay after failover."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from paxctl.server import watches as watches_module
from paxctl.server.watches import (
    MAX_FIRED_PER_CONNECTION,
    REPLAY_BUDGET,
    RESYNC,
    Event,
    EventHistory,
    ReplayBudget,
    WatchRegistry,
    ancestors,
)

A, B = "conn-a", "conn-b"


def registry(limit: int = 50_000, horizon: int = 0) -> WatchRegistry:
    return WatchRegistry(EventHistory(limit, horizon))


def ev(kind: str, path: str, zxid: int) -> Event:
    return Event(kind, path, zxid)


# ---------------------------------------------------------------------- history


def test_history_returns_events_after_a_zxid_in_order():
    h = EventHistory()
    h.add(1, [("created", "/a"), ("children", "/")])
    h.add(2, [])
    h.add(3, [("changed", "/a")])
    assert h.since(0) == [ev("created", "/a", 1), ev("children", "/", 1), ev("changed", "/a", 3)]
    assert h.since(1) == [ev("changed", "/a", 3)]
    assert h.since(2) == [ev("changed", "/a", 3)]
    assert h.since(3) == [] and h.since(99) == []
    assert h.since(0, upto=2) == [ev("created", "/a", 1), ev("children", "/", 1)]
    assert len(h) == 3 and h.last == 3


def test_history_keeps_flat_entries_sharing_the_paths_it_was_given():
    """Compact (issue 16): one flat tuple per command, no Event objects until a replay."""
    path = "".join(["/a", "/b"])  # a fresh object, not an interned literal
    h = EventHistory()
    h.add(9, [("created", path), ("children", "/a")])
    (entry,) = h._entries
    assert entry == (9, "created", path, "children", "/a") and entry[2] is path
    assert not any(isinstance(x, Event) for x in entry)
    assert h.since(8) == [ev("created", path, 9), ev("children", "/a", 9)]


def test_history_zxids_must_increase():
    h = EventHistory()
    h.add(5, [("changed", "/a")])
    with pytest.raises(ValueError):
        h.add(5, [("changed", "/a")])
    with pytest.raises(ValueError):
        h.add(4, [])
    with pytest.raises(ValueError):
        EventHistory(-1)


def test_history_limit_drops_whole_zxids_and_raises_the_horizon():
    h = EventHistory(limit=3)
    h.add(1, [("created", "/a"), ("children", "/")])
    h.add(2, [("changed", "/a")])
    assert h.horizon == 0 and len(h) == 3
    h.add(3, [("changed", "/a")])  # 4 events > 3: zxid 1 goes as a whole
    assert h.horizon == 1 and len(h) == 2
    assert h.since(0) is None  # a gap: zxid 1's events are gone
    assert h.since(1) == [ev("changed", "/a", 2), ev("changed", "/a", 3)]
    h.add(4, [("created", "/b"), ("children", "/"), ("changed", "/b")])
    assert h.horizon == 3 and len(h) == 3
    assert h.since(2) is None and h.since(3) == h.since(0 + 3)
    assert [e.zxid for e in h.since(3) or []] == [4, 4, 4]


def test_history_too_big_for_the_limit_keeps_nothing_but_stays_consistent():
    h = EventHistory(limit=1)
    h.add(7, [("created", "/a"), ("children", "/")])
    assert len(h) == 0 and h.horizon == 7
    assert h.since(6) is None and h.since(7) == []


def test_history_reset_starts_over_at_a_horizon():
    h = EventHistory(horizon=10)
    assert h.since(9) is None and h.since(10) == []
    h.add(11, [("changed", "/a")])
    h.reset(100)
    assert len(h) == 0 and h.horizon == 100 and h.last == 100
    assert h.since(50) is None and h.since(100) == []
    with pytest.raises(ValueError):
        h.add(100, [])
    h.add(101, [("changed", "/a")])
    assert h.since(100) == [ev("changed", "/a", 101)]


def test_ancestors():
    assert list(ancestors("/")) == ["/"]
    assert list(ancestors("/a")) == ["/a", "/"]
    assert list(ancestors("/a/bc/d")) == ["/a/bc/d", "/a/bc", "/a", "/"]


# ---------------------------------------------------------------------- modes


def test_data_watch_is_one_shot_and_fires_on_created_changed_deleted_of_its_path():
    for kind in ("created", "changed", "deleted"):
        w = registry()
        assert w.register(A, 1, "/a", "data", 0, 0) == []
        assert w.fire(1, [("children", "/a"), ("changed", "/a/b"), ("changed", "/ab")]) == {}
        assert w.fire(2, [(kind, "/a")]) == {A: [(1, ev(kind, "/a", 2))]}
        assert w.count() == 0
        assert w.fire(3, [(kind, "/a")]) == {}


def test_children_watch_fires_on_children_and_on_deletion_only():
    w = registry()
    w.register(A, 1, "/a", "children", 0, 0)
    assert w.fire(1, [("changed", "/a"), ("created", "/a/b")]) == {}
    assert w.fire(2, [("children", "/a")]) == {A: [(1, ev("children", "/a", 2))]}
    assert w.count() == 0
    w.register(A, 2, "/a", "children", 2, 2)
    assert w.fire(3, [("deleted", "/a")]) == {A: [(2, ev("deleted", "/a", 3))]}
    assert w.count() == 0


def test_children_watch_fires_on_its_parent_role_when_a_child_is_created():
    """Creating /p/c reports (created, /p/c) and (children, /p): a children watch on /p fires."""
    w = registry()
    w.register(A, 1, "/p", "children", 0, 0)
    w.register(A, 2, "/p/c", "data", 0, 0)  # an exists() watch on the future child
    out = w.fire(1, [("created", "/p/c"), ("children", "/p")])
    assert out == {A: [(2, ev("created", "/p/c", 1)), (1, ev("children", "/p", 1))]}


def test_persistent_watch_stays_and_sees_every_kind_on_its_path_only():
    w = registry()
    w.register(A, 1, "/a", "persistent", 0, 0)
    assert w.fire(1, [("created", "/a"), ("children", "/")]) == {A: [(1, ev("created", "/a", 1))]}
    assert w.fire(2, [("created", "/a/b"), ("children", "/a")]) == {
        A: [(1, ev("children", "/a", 2))]
    }
    assert w.fire(3, [("changed", "/a/b")]) == {}
    assert w.fire(4, [("changed", "/a")]) == {A: [(1, ev("changed", "/a", 4))]}
    assert w.fire(5, [("deleted", "/a")]) == {A: [(1, ev("deleted", "/a", 5))]}
    assert w.count() == 1  # still there: a persistent watch outlives its node
    assert w.fire(6, [("created", "/a")]) == {A: [(1, ev("created", "/a", 6))]}


def test_recursive_watch_on_root_sees_everything_but_children_events():
    w = registry()
    w.register(A, 1, "/", "recursive", 0, 0)
    changes = [
        ("created", "/x"),
        ("children", "/"),
        ("created", "/x/y/z"),
        ("children", "/x/y"),
        ("changed", "/"),
        ("deleted", "/x"),
    ]
    out = w.fire(1, changes)
    assert out == {
        A: [(1, ev(k, p, 1)) for k, p in changes if k != "children"],
    }
    assert w.count() == 1


def test_recursive_watch_covers_its_subtree_and_not_lookalike_siblings():
    w = registry()
    w.register(A, 1, "/a", "recursive", 0, 0)
    out = w.fire(
        1,
        [
            ("changed", "/a"),
            ("changed", "/a/b"),
            ("changed", "/a/b/c"),
            ("changed", "/ab"),
            ("changed", "/"),
            ("children", "/a"),
        ],
    )
    assert [e.path for _, e in out[A]] == ["/a", "/a/b", "/a/b/c"]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        registry().register(A, 1, "/a", "sticky", 0, 0)


def test_resync_kind_matches_nothing_in_fire():
    w = registry()
    w.register(A, 1, "/", "recursive", 0, 0)
    w.register(A, 2, "/", "persistent", 0, 0)
    assert w.fire(1, [("weird", "/")]) == {}


# ---------------------------------------------------------------------- firing rules


def test_each_event_at_most_once_per_watch():
    w = registry()
    w.register(A, 1, "/a", "persistent", 0, 0)
    w.register(A, 2, "/", "recursive", 0, 0)
    w.register(A, 3, "/a", "recursive", 0, 0)
    out = w.fire(1, [("changed", "/a"), ("changed", "/a")])
    assert out == {
        A: [(1, ev("changed", "/a", 1)), (2, ev("changed", "/a", 1)), (3, ev("changed", "/a", 1))]
    }


def test_one_shot_fires_once_even_if_several_events_of_one_command_match():
    w = registry()
    w.register(A, 1, "/a", "children", 0, 0)
    out = w.fire(1, [("children", "/a"), ("deleted", "/a")])  # a multi deleting child and /a
    assert out == {A: [(1, ev("children", "/a", 1))]}
    assert w.count() == 0


def test_watches_skip_events_they_already_saw():
    w = registry()
    w.register(A, 1, "/a", "persistent", after_zxid=5, applied_zxid=3)  # client saw 5 elsewhere
    w.register(A, 2, "/a", "data", after_zxid=5, applied_zxid=3)
    assert w.fire(4, [("changed", "/a")]) == {}
    assert w.fire(5, [("changed", "/a")]) == {}
    assert w.fire(6, [("changed", "/a")]) == {
        A: [(1, ev("changed", "/a", 6)), (2, ev("changed", "/a", 6))]
    }


def test_fire_groups_by_connection_in_order_of_first_hit():
    w = registry()
    w.register(A, 1, "/a", "data", 0, 0)
    w.register(B, 1, "/b", "data", 0, 0)
    w.register(B, 2, "/a", "persistent", 0, 0)
    out = w.fire(1, [("changed", "/b"), ("changed", "/a")])
    assert list(out) == [B, A]
    assert out[B] == [(1, ev("changed", "/b", 1)), (2, ev("changed", "/a", 1))]
    assert out[A] == [(1, ev("changed", "/a", 1))]


def test_fire_output_is_deterministic():
    def run(conns: list[object]) -> list[tuple[int, list[tuple[int, Event]]]]:
        w = registry()
        for i, conn in enumerate(conns):
            w.register(conn, 1, "/", "recursive", 0, 0)
            w.register(conn, 2, f"/n{i % 3}", "persistent", 0, 0)
            w.register(conn, 3, f"/n{i % 2}", "data", 0, 0)
        trace = []
        for z in range(1, 6):
            out = w.fire(z, [("changed", f"/n{z % 3}"), ("children", f"/n{z % 2}")])
            trace.extend((conns.index(c), pairs) for c, pairs in out.items())
        return trace

    ints = list(range(10))
    objs = [object() for _ in range(10)]
    assert run(ints) == run(ints) == run(objs)  # ints and identity-hashed objects alike


def test_fire_records_history_even_without_watches():
    w = registry()
    assert w.fire(1, [("created", "/a")]) == {}
    assert w.history.since(0) == [ev("created", "/a", 1)]


# ---------------------------------------------------------------------- registry management


def test_reregistering_a_wid_replaces_the_old_watch():
    w = registry()
    w.register(A, 1, "/a", "persistent", 0, 0)
    w.register(A, 1, "/b", "data", 0, 0)
    assert w.count() == 1 and w.watches_of(A) == [(1, "/b", "data")]
    assert w.fire(1, [("changed", "/a")]) == {}
    assert w.fire(2, [("changed", "/b")]) == {A: [(1, ev("changed", "/b", 2))]}


def test_replacing_with_an_immediately_consumed_watch_still_drops_the_old_one():
    w = registry()
    w.fire(1, [("changed", "/b")])
    w.register(A, 1, "/a", "persistent", 1, 1)
    assert w.register(A, 1, "/b", "data", 0, 1) == [ev("changed", "/b", 1)]
    assert w.count() == 0
    assert w.fire(2, [("changed", "/a")]) == {}


def test_remove_drop_count_and_listing():
    w = registry()
    w.register(A, 3, "/x", "recursive", 0, 0)
    w.register(A, 1, "/y", "data", 0, 0)
    w.register(B, 1, "/y", "children", 0, 0)
    assert w.count() == 3
    assert w.watches_of(A) == [(1, "/y", "data"), (3, "/x", "recursive")]
    assert w.remove(A, 1) is True and w.remove(A, 1) is False and w.remove("nobody", 1) is False
    assert w.drop(A) == 1 and w.drop(A) == 0
    assert w.watches_of(A) == [] and w.count() == 1
    assert w.fire(1, [("changed", "/x/z"), ("changed", "/y")]) == {}
    assert w.fire(2, [("children", "/y")]) == {B: [(1, ev("children", "/y", 2))]}
    assert w.count() == 0


def test_same_wid_on_different_connections_are_different_watches():
    w = registry()
    w.register(A, 1, "/a", "data", 0, 0)
    w.register(B, 1, "/a", "data", 0, 0)
    assert w.remove(A, 1)
    assert w.fire(1, [("changed", "/a")]) == {B: [(1, ev("changed", "/a", 1))]}


def test_indexes_are_cleaned_up():
    w = registry()
    for i in range(20):
        w.register(A, i, f"/p{i}", "recursive" if i % 2 else "persistent", 0, 0)
    w.drop(A)
    assert w._exact == {} and w._recursive == {} and w._by_conn == {}


# ---------------------------------------------------------------------- replay and resync


def failover_world() -> WatchRegistry:
    """A node that applied zxids 1..6; the client saw up to zxid 2 on its old node."""
    w = registry()
    w.fire(1, [("created", "/a"), ("children", "/")])
    w.fire(2, [("changed", "/a")])
    w.fire(3, [("created", "/a/b"), ("children", "/a")])
    w.fire(4, [("changed", "/a")])
    w.fire(5, [("changed", "/a/b")])
    w.fire(6, [("deleted", "/a/b"), ("children", "/a")])
    return w


def test_reregistered_persistent_watch_replays_missed_events_once_in_order():
    w = failover_world()
    replay = w.register(A, 1, "/a", "persistent", after_zxid=2, applied_zxid=6)
    assert replay == [ev("children", "/a", 3), ev("changed", "/a", 4), ev("children", "/a", 6)]
    assert w.fire(7, [("changed", "/a")]) == {A: [(1, ev("changed", "/a", 7))]}


def test_replay_then_fire_delivers_every_event_exactly_once():
    w = failover_world()
    got = [e for e in w.register(A, 1, "/", "recursive", after_zxid=0, applied_zxid=6)]
    for z, changes in ((7, [("created", "/c")]), (8, [("changed", "/a"), ("changed", "/c")])):
        got += [e for _, e in w.fire(z, changes).get(A, [])]
    expected = [e for e in w.history.since(0) or [] if e.kind != "children"]
    assert got == expected and len(got) == len(set(got)) == 9


def test_reregistered_recursive_watch_replays_its_subtree():
    w = failover_world()
    replay = w.register(A, 1, "/a", "recursive", after_zxid=2, applied_zxid=6)
    assert replay == [
        ev("created", "/a/b", 3),
        ev("changed", "/a", 4),
        ev("changed", "/a/b", 5),
        ev("deleted", "/a/b", 6),
    ]
    assert w.count() == 1


def test_reregistered_one_shot_gets_only_the_first_match_and_is_consumed():
    w = failover_world()
    assert w.register(A, 1, "/a", "data", after_zxid=2, applied_zxid=6) == [ev("changed", "/a", 4)]
    assert w.register(A, 2, "/a", "children", after_zxid=3, applied_zxid=6) == [
        ev("children", "/a", 6)
    ]
    assert w.count() == 0
    assert w.fire(7, [("changed", "/a"), ("children", "/a")]) == {}


def test_one_shot_without_a_match_in_replay_is_kept_and_fires_later():
    w = failover_world()
    assert w.register(A, 1, "/a/b", "children", after_zxid=2, applied_zxid=6) == [
        ev("deleted", "/a/b", 6)
    ]
    assert w.register(A, 2, "/zzz", "data", after_zxid=2, applied_zxid=6) == []
    assert w.count() == 1
    assert w.fire(7, [("created", "/zzz")]) == {A: [(2, ev("created", "/zzz", 7))]}


def test_replay_stops_at_applied_and_nothing_when_client_is_ahead():
    w = failover_world()
    assert w.register(A, 1, "/a", "persistent", after_zxid=6, applied_zxid=6) == []
    assert w.register(A, 2, "/a", "persistent", after_zxid=9, applied_zxid=6) == []
    assert w.fire(7, [("changed", "/a")]) == {A: [(1, ev("changed", "/a", 7))]}
    assert w.fire(9, [("changed", "/a")]) == {A: [(1, ev("changed", "/a", 9))]}
    assert w.fire(10, [("changed", "/a")]) == {
        A: [(1, ev("changed", "/a", 10)), (2, ev("changed", "/a", 10))]
    }


def test_replay_covers_events_already_fired_past_the_given_applied_zxid():
    """A caller passing a stale applied_zxid must not make the watch miss fired events."""
    w = failover_world()
    assert w.register(A, 1, "/a", "persistent", after_zxid=4, applied_zxid=5) == [
        ev("children", "/a", 6)
    ]
    assert w.fire(7, [("changed", "/a")]) == {A: [(1, ev("changed", "/a", 7))]}


def test_gap_gives_resync_keeps_persistent_and_consumes_one_shot():
    w = registry(limit=2)
    for z in range(1, 6):
        w.fire(z, [("changed", "/a")])
    assert w.history.horizon == 3
    assert w.register(A, 1, "/a", "persistent", after_zxid=2, applied_zxid=5) == [
        ev("resync", "/a", 5)
    ]
    assert w.register(A, 2, "/a", "data", after_zxid=1, applied_zxid=5) == [ev("resync", "/a", 5)]
    assert w.register(A, 3, "/", "recursive", after_zxid=0, applied_zxid=5) == [
        ev("resync", "/", 5)
    ]
    assert w.watches_of(A) == [(1, "/a", "persistent"), (3, "/", "recursive")]
    assert w.fire(6, [("changed", "/a")]) == {
        A: [(1, ev("changed", "/a", 6)), (3, ev("changed", "/a", 6))]
    }
    # At the horizon itself nothing is missing: a normal replay.
    assert w.history.horizon == 4
    assert w.register(B, 1, "/a", "persistent", after_zxid=4, applied_zxid=6) == [
        ev("changed", "/a", 5),
        ev("changed", "/a", 6),
    ]


def test_history_horizon_after_start_means_older_clients_resync():
    w = registry(horizon=40)  # started from a snapshot at zxid 40
    assert w.register(A, 1, "/a", "data", after_zxid=39, applied_zxid=40) == [
        ev("resync", "/a", 40)
    ]
    assert w.register(A, 2, "/a", "data", after_zxid=40, applied_zxid=40) == []


def test_reset_history_resyncs_watches_that_fall_behind_the_jump():
    w = registry()
    w.register(A, 1, "/a", "persistent", 0, 0)
    w.register(A, 2, "/a", "data", 0, 0)
    w.register(B, 1, "/", "recursive", 0, 0)
    w.register(B, 2, "/b", "data", after_zxid=500, applied_zxid=0)  # already saw past the jump
    w.fire(1, [("changed", "/c")])
    out = w.reset_history(100)
    assert out == {
        A: [(1, ev("resync", "/a", 100)), (2, ev("resync", "/a", 100))],
        B: [(1, ev("resync", "/", 100))],
    }
    assert w.history.horizon == 100 and w.history.since(0) is None
    assert w.watches_of(A) == [(1, "/a", "persistent")]
    assert w.watches_of(B) == [(1, "/", "recursive"), (2, "/b", "data")]
    assert w.fire(101, [("changed", "/a")]) == {
        A: [(1, ev("changed", "/a", 101))],
        B: [(1, ev("changed", "/a", 101))],
    }
    assert w.reset_history(100) == {}  # nothing is behind any more


def test_many_watches_fire_without_scanning_them_all():
    """An event touches only the watches on its path and its ancestors."""
    w = registry()
    for i in range(5000):
        w.register(i, 1, f"/n{i}", "persistent", 0, 0)
        w.register(i, 2, f"/n{i}/deep", "recursive", 0, 0)
    calls = 0
    original = w._candidates

    def counting(event):
        nonlocal calls
        found = original(event)
        calls += len(found)
        return found

    w._candidates = counting  # type: ignore[method-assign]
    out = w.fire(1, [("changed", "/n42/deep/x"), ("changed", "/n7")])
    assert out == {42: [(2, ev("changed", "/n42/deep/x", 1))], 7: [(1, ev("changed", "/n7", 1))]}
    assert calls == 2


# ---------------------------------------------------------------------- bounds (issue 14)


def full_history_world() -> WatchRegistry:
    """A default-sized history (100,000 events) full of creates, no watches yet."""
    w = registry(limit=100_000)
    for z in range(1, 1001):
        w.fire(z, [("created", f"/n{z}_{k}") for k in range(100)])
    assert len(w.history) == 100_000 and w.history.horizon == 0
    return w


def counting_walks(w: WatchRegistry) -> list[int]:
    walked: list[int] = []
    original = w.history.walk

    def walk(
        after: int, upto: int | None = None, limit: int | None = None
    ) -> tuple[list[Event] | None, int]:
        replay, n = original(after, upto, limit)
        walked.append(n)
        return replay, n

    w.history.walk = walk  # type: ignore[method-assign]
    return walked


def test_a_hello_of_identical_watches_walks_history_once_and_replays_within_the_budget():
    w = full_history_world()
    walked = counting_walks(w)
    budget = ReplayBudget()
    replies = [w.register(A, wid, "/", "recursive", 0, 1000, budget) for wid in range(1000)]
    assert walked == [100_000]  # one walk for all 1,000 (was one per watch: 10**8 steps)
    assert len(replies[0]) == 100_000 and replies[0][0] == ev("created", "/n1_0", 1)
    assert all(r == [Event(RESYNC, "/", 1000)] for r in replies[1:])  # the budget is spent
    assert sum(len(r) for r in replies) <= REPLAY_BUDGET + 1000
    assert w.count() == 1000  # persistent kinds stay registered after a resync
    assert w.fire(1001, [("changed", "/x")])[A][:2] == [
        (0, ev("changed", "/x", 1001)),
        (1, ev("changed", "/x", 1001)),
    ]


def test_a_hello_of_distinct_watches_walks_at_most_the_budget():
    w = full_history_world()
    walked = counting_walks(w)
    budget = ReplayBudget()
    replies = [w.register(A, i, f"/n{i}_0", "persistent", 0, 1000, budget) for i in range(1000)]
    assert replies[0] == []  # /n0_0 never existed: the walk spent 100,000 of the budget
    assert replies[1] == [Event(RESYNC, "/n1_0", 1000)]  # its one hit no longer fits
    assert walked[:2] == [100_000, 100_000]
    # each later walk stops at once: it passes at most one command's events (100 here)
    assert walked[2:] == [100] * 998 and sum(walked) <= REPLAY_BUDGET + 100 * len(walked)
    assert all(r == [Event(RESYNC, f"/n{i}_0", 1000)] for i, r in enumerate(replies) if i)


def test_one_watch_request_replays_the_whole_default_history():
    w = full_history_world()
    assert len(w.register(A, 1, "/", "recursive", 0, 1000)) == 100_000
    assert len(w.register(A, 2, "/", "recursive", 0, 1000)) == 100_000  # a batch of its own


def test_a_small_budget_answers_resync_and_one_shots_are_used_up():
    w = failover_world()
    budget = ReplayBudget(left=6)  # zxids 3..6 hold 6 events: the walk alone spends it
    assert w.register(A, 1, "/a", "persistent", 2, 6, budget) == [ev(RESYNC, "/a", 6)]
    assert w.register(A, 2, "/a", "data", 2, 6, budget) == [ev(RESYNC, "/a", 6)]
    assert w.watches_of(A) == [(1, "/a", "persistent")]
    roomy = ReplayBudget(left=7)
    assert w.register(B, 1, "/a", "data", 2, 6, roomy) == [ev("changed", "/a", 4)]
    assert roomy.left == 0 and w.count_of(B) == 0


def test_identical_watches_of_a_connection_are_matched_once_per_event():
    w = registry()
    for wid in range(1000):
        w.register(A, wid, "/", "recursive", 0, 0)
    w.register(B, 7, "/", "recursive", 0, 0)
    matched = 0
    original = w._candidates

    def counting(event: Event) -> list[object]:
        nonlocal matched
        found = original(event)
        matched += len(found)
        return found

    w._candidates = counting  # type: ignore[method-assign]
    out = w.fire(1, [("created", f"/c{i}") for i in range(10)])
    assert matched == 20  # one group per connection and event, not one check per watch
    assert out[A] == [(wid, ev("created", f"/c{i}", 1)) for i in range(10) for wid in range(1000)]
    assert out[B] == [(7, ev("created", f"/c{i}", 1)) for i in range(10)]


def test_a_connection_past_the_fire_cap_gets_resync_per_affected_watch_instead():
    w = registry()
    for wid in range(100_000):  # the default --max-watches-per-connection
        w.register(A, wid, "/", "recursive", 0, 0)
    w.register(B, 1, "/", "recursive", 0, 0)
    w.register(A, 100_000, "/elsewhere", "data", 0, 0)
    out = w.fire(1, [("created", f"/c{i}") for i in range(1000)])  # was 10**8 pairs
    assert MAX_FIRED_PER_CONNECTION == 200_000  # two events reach all 100,000, the third not
    delivered = [(wid, ev("created", f"/c{i}", 1)) for i in range(2) for wid in range(100_000)]
    assert out[A] == delivered + [(wid, ev(RESYNC, "/", 1)) for wid in range(100_000)]
    assert len(out[A]) <= MAX_FIRED_PER_CONNECTION + w.count_of(A)
    assert out[B] == [(1, ev("created", f"/c{i}", 1)) for i in range(1000)]  # B is not cut
    assert w.count_of(A) == 100_001  # persistent watches stay, the data watch was not hit
    again = w.fire(2, [("changed", "/elsewhere")])  # one event reaches every watch
    assert again[B] == [(1, ev("changed", "/elsewhere", 2))]
    assert len(again[A]) == 100_001 and again[A][-1] == (100_000, ev("changed", "/elsewhere", 2))
    assert w.count_of(A) == 100_000  # the one-shot watch fired and is used up


def test_the_fire_cap_keeps_what_was_delivered_and_resyncs_the_rest(monkeypatch):
    monkeypatch.setattr(watches_module, "MAX_FIRED_PER_CONNECTION", 5)
    w = registry()
    w.register(A, 1, "/a", "persistent", 0, 0)
    w.register(A, 2, "/a", "persistent", 0, 0)
    w.register(A, 3, "/b", "data", 0, 0)
    w.register(A, 4, "/c", "persistent", 0, 0)
    w.register(A, 5, "/d", "data", 0, 0)
    events = [("changed", "/a"), ("changed", "/b"), ("deleted", "/a"), ("created", "/a")]
    out = w.fire(1, [*events, ("changed", "/d")])
    assert out == {
        A: [
            (1, ev("changed", "/a", 1)),
            (2, ev("changed", "/a", 1)),
            (3, ev("changed", "/b", 1)),
            (1, ev("deleted", "/a", 1)),
            (2, ev("deleted", "/a", 1)),
            # "created /a" would pass 5 pairs: from there on, resync for each affected watch
            (1, ev(RESYNC, "/a", 1)),
            (2, ev(RESYNC, "/a", 1)),
            (5, ev(RESYNC, "/d", 1)),
        ]
    }
    assert w.watches_of(A) == [
        (1, "/a", "persistent"),
        (2, "/a", "persistent"),
        (4, "/c", "persistent"),
    ]
    assert w.fire(2, [("changed", "/a")]) == {
        A: [(1, ev("changed", "/a", 2)), (2, ev("changed", "/a", 2))]
    }


def test_module_is_pure():
    path = Path(__file__).resolve().parents[2] / "paxctl" / "server" / "watches.py"
    tree = ast.parse(path.read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    forbidden = {"asyncio", "time", "os", "socket", "random", "threading"}
    assert not {m.split(".")[0] for m in mods} & forbidden
