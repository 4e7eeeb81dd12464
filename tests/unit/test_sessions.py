"""Session liveness: the leader's tracker and every node's heartbeat relay."""

from __future__ import annotations

import ast
from pathlib import Path

from paxctl.server.sessions import LivenessTracker, TouchRelay

# ---------------------------------------------------------------------- LivenessTracker


def test_inactive_tracker_expires_nothing_and_ignores_touches():
    t = LivenessTracker()
    assert not t.active
    t.touch([1], 0)
    assert t.last_seen(1) is None
    assert t.due(10**9, {1: 10}) == []


def test_lead_gives_every_session_a_fresh_full_timeout():
    t = LivenessTracker()
    t.lead(1000)
    assert t.active and t.leading_since == 1000
    table = {1: 500, 2: 800}
    assert t.due(1000, table) == []  # first sight: last_seen = now
    assert t.due(1500, table) == []  # exactly the timeout is not past it
    assert t.due(1501, table) == [1]
    assert t.due(1801, table) == [2]


def test_old_observations_do_not_survive_a_new_term():
    t = LivenessTracker()
    t.lead(0)
    t.due(0, {1: 100})
    t.follow()
    t.lead(10_000)  # long silence under another leader does not count against the session
    assert t.due(10_000, {1: 100}) == []
    assert t.due(10_100, {1: 100}) == []
    assert t.due(10_101, {1: 100}) == [1]


def test_touched_sessions_never_expire():
    t = LivenessTracker()
    t.lead(0)
    table = {1: 100, 2: 100}
    for now in range(0, 1000, 50):
        t.touch([1], now)
        due = t.due(now, table)
        assert 1 not in due
    assert t.last_seen(1) == 950


def test_expiry_after_the_timeout_since_the_last_touch():
    t = LivenessTracker()
    t.lead(0)
    t.due(0, {7: 300})
    t.touch([7], 200)
    assert t.due(500, {7: 300}) == []
    assert t.due(501, {7: 300}) == [7]


def test_touch_never_moves_last_seen_back():
    t = LivenessTracker()
    t.lead(0)
    t.touch([1], 500)
    t.touch([1], 400)  # a late-delivered relay
    assert t.last_seen(1) == 500


def test_due_is_sorted_and_retries_only_after_retry_ms():
    t = LivenessTracker(retry_ms=1000)
    t.lead(0)
    table = {9: 10, 3: 10, 5: 10_000}
    t.due(0, table)
    assert t.due(11, table) == [3, 9]
    assert t.due(12, table) == []  # proposed, waiting for the command to apply
    assert t.due(1010, table) == []
    assert t.due(1011, table) == [3, 9]  # the proposal was lost (leader change?): again
    t.touch([3], 2005)
    assert t.due(2011, table) == [9]


def test_sessions_that_leave_the_table_are_forgotten():
    t = LivenessTracker()
    t.lead(0)
    t.due(0, {1: 10, 2: 10})
    t.touch([1, 2, 99], 5)
    assert t.due(20, {1: 10, 2: 10}) == [1, 2]
    assert t.due(21, {}) == []  # expired (applied), closed or never existed
    assert t.last_seen(1) is None and t.last_seen(99) is None
    # A session id coming back (it never does in practice) starts from scratch.
    assert t.due(22, {1: 10}) == []
    assert t.due(33, {1: 10}) == [1]


def test_unknown_sessions_get_a_full_timeout_on_first_sight():
    t = LivenessTracker()
    t.lead(0)
    assert t.due(5000, {1: 100}) == []  # created long after lead, first seen now
    assert t.due(5100, {1: 100}) == []
    assert t.due(5101, {1: 100}) == [1]


def test_follow_clears_everything():
    t = LivenessTracker()
    t.lead(0)
    t.due(0, {1: 10})
    t.touch([1], 0)
    t.follow()
    assert not t.active and t.leading_since is None
    assert t.last_seen(1) is None
    assert t.due(100, {1: 10}) == []
    t.touch([1], 100)
    assert t.last_seen(1) is None


def test_relead_clears_retry_suppression():
    t = LivenessTracker(retry_ms=10_000)
    t.lead(0)
    t.due(0, {1: 10})
    assert t.due(11, {1: 10}) == [1]
    t.lead(20)
    assert t.due(20, {1: 10}) == []
    assert t.due(31, {1: 10}) == [1]


# ---------------------------------------------------------------------- TouchRelay


def test_nothing_to_relay():
    r = TouchRelay()
    assert r.take() is None and r.round == 0 and r.pending() == 0
    assert r.acked(1, []) == []


def test_rounds_carry_touched_and_pinged_sessions_sorted():
    r = TouchRelay()
    r.touch(5)
    r.ping(3, "p1")
    r.touch(3)
    r.touch(9)
    assert r.take() == (1, (3, 5, 9))
    assert r.pending() == 1


def test_ack_answers_the_round_and_touches_are_not_resent():
    r = TouchRelay()
    r.touch(5)
    r.ping(3, "p1")
    assert r.take() == (1, (3, 5))
    assert r.acked(1, []) == [("p1", True)]
    assert r.pending() == 0
    assert r.take() is None  # everything acknowledged, nothing new


def test_tokens_wait_for_the_ack_not_the_take():
    r = TouchRelay()
    r.ping(1, "a")
    assert r.acked(0, []) == []
    r.take()
    r.ping(2, "b")  # after the round left: not covered by its ack
    assert r.acked(1, []) == [("a", True)]
    assert r.pending() == 1
    assert r.take() == (2, (2,))
    assert r.acked(2, []) == [("b", True)]


def test_unacked_rounds_are_resent_and_a_later_ack_answers_older_rounds():
    r = TouchRelay()
    r.ping(1, "a")
    assert r.take() == (1, (1,))  # lost
    assert r.take() == (2, (1,))  # nothing new, but ping "a" still waits: send again
    r.ping(2, "b")
    r.touch(7)
    assert r.take() == (3, (1, 2, 7))
    assert r.acked(3, []) == [("a", True), ("b", True)]
    assert r.take() is None


def test_ack_of_an_older_round_leaves_newer_tokens_waiting():
    r = TouchRelay()
    r.ping(1, "a")
    r.take()
    r.ping(2, "b")
    r.take()
    assert r.acked(1, []) == [("a", True)]
    assert r.take() == (3, (2,))  # only b's session still needs to reach the leader
    assert r.acked(2, []) == [("b", True)]


def test_expired_sessions_are_answered_not_alive():
    r = TouchRelay()
    r.ping(1, (10, 1))
    r.ping(2, (10, 2))
    r.ping(1, (11, 1))
    r.take()
    assert r.acked(1, iter([1])) == [((10, 1), False), ((10, 2), True), ((11, 1), False)]


def test_stale_duplicate_and_future_acks_answer_nothing():
    r = TouchRelay()
    r.ping(1, "a")
    r.take()
    assert r.acked(5, []) == []  # never sent (e.g. an ack meant for an earlier process)
    assert r.acked(1, []) == [("a", True)]
    assert r.acked(1, []) == []
    r.ping(1, "b")
    r.take()
    r.ping(1, "c")
    r.take()
    assert r.acked(3, []) == [("b", True), ("c", True)]
    assert r.acked(2, [1]) == []  # reordered older ack: already answered
    assert r.pending() == 0


def test_discard_forgets_tokens_of_a_closed_connection():
    r = TouchRelay()
    r.ping(1, ("c1", 1))
    r.ping(2, ("c2", 1))
    r.take()
    r.ping(1, ("c1", 2))
    assert r.discard(lambda token: token[0] == "c1") == 2
    assert r.pending() == 1
    assert r.take() == (2, (1, 2))  # session 1 was still touched by the discarded ping
    assert r.acked(2, []) == [(("c2", 1), True)]
    assert r.discard(lambda token: True) == 0


def test_discarding_every_waiting_token_stops_resending():
    r = TouchRelay()
    r.ping(1, "a")
    r.take()
    r.discard(lambda token: token == "a")
    assert r.take() is None


def test_relay_round_trip_with_a_leader_tracker():
    """Follower relay -> leader tracker -> ack: a pinged session stays alive."""
    leader = LivenessTracker()
    leader.lead(0)
    relay = TouchRelay()
    table = {1: 1000, 2: 1000}
    leader.due(0, table)
    proposed: list[tuple[int, int]] = []
    for now in range(100, 3000, 100):
        relay.ping(1, f"ping@{now}")
        sent = relay.take()
        assert sent is not None
        round_, sessions = sent
        leader.touch(sessions, now)
        due = leader.due(now, table)
        proposed += [(now, s) for s in due]
        expired = set(due)
        answers = relay.acked(round_, [s for s in sessions if s in expired])
        assert answers == [(f"ping@{now}", True)]
    # Only the silent session is proposed for expiry: after its timeout, then once per retry.
    assert proposed == [(1100, 2), (2100, 2)]


def test_module_is_pure():
    path = Path(__file__).resolve().parents[2] / "paxctl" / "server" / "sessions.py"
    tree = ast.parse(path.read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    forbidden = {"asyncio", "time", "os", "socket", "random", "threading"}
    assert not {m.split(".")[0] for m in mods} & forbidden
