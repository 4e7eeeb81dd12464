"""The replicated session table: open, close, who may do which, and what an unknown session gets."""

from __future__ import annotations

import msgpack
import pytest
from znode_helpers import C1, C2, C3, C4, Driver, zxid

from paxctl.statemachine import (
    FIRST_CLIENT_ID,
    REAPER_CLIENT,
    Check,
    CloseSession,
    Create,
    Delete,
    Multi,
    OpenSession,
    Outcome,
    Reap,
    SessionExpired,
    SetData,
    StateMachine,
    encode_command,
)


def cache_clients(sm: StateMachine) -> list[int]:
    """The clients with a cached reply, read from the snapshot (the cache has no accessor)."""
    return [entry[0] for entry in msgpack.unpackb(sm.snapshot())[4]]


def check_digest(sm: StateMachine) -> None:
    assert sm.digest() == sm.digest_from_scratch()
    assert StateMachine.restore(sm.snapshot()).digest() == sm.digest()


# ---------------------------------------------------------------------------------- open


def test_open_returns_the_timeout_and_lists_the_session():
    d = Driver(sessions=())
    assert d.run(OpenSession(C1, 4000), client=C1) == Outcome(True, 4000)
    assert d.sm.sessions() == {C1: 4000}
    assert d.sm.cached(C1, 1) == Outcome(True, 4000)
    assert d.sm.last_events == ()
    check_digest(d.sm)


def test_sessions_returns_a_copy():
    d = Driver()
    listing = d.sm.sessions()
    listing.clear()
    assert d.sm.sessions() == dict.fromkeys((C1, C2, C3), 10_000)


def test_reopening_keeps_the_session_and_its_ephemerals_and_updates_the_timeout():
    d = Driver()
    d.run(Create("/e", ephemeral=True), client=C1)
    tree_digest = d.sm.tree.digest()
    assert d.run(OpenSession(C1, 777), client=C1) == Outcome(True, 777)
    assert d.sm.sessions()[C1] == 777
    assert d.sm.tree.ephemerals(C1) == ["/e"]
    assert d.sm.tree.digest() == tree_digest
    check_digest(d.sm)


@pytest.mark.parametrize("client", [C2, C4, REAPER_CLIENT, 0])
def test_only_the_session_itself_may_open_it(client):
    d = Driver(sessions=(C2,))
    out = d.run(OpenSession(C1, 1000), client=client)
    assert (out.ok, out.error_code) == (False, "BadArguments")
    assert C1 not in d.sm.sessions()


def test_the_timeout_is_part_of_the_digest():
    a, b = Driver(sessions=()), Driver(sessions=())
    a.run(OpenSession(C1, 1000), client=C1)
    b.run(OpenSession(C1, 1001), client=C1)
    assert a.sm.tree.digest() == b.sm.tree.digest()
    assert a.sm.digest() != b.sm.digest()
    b.run(OpenSession(C1, 1000), client=C1)
    c = Driver(sessions=())
    c.run(OpenSession(C1, 1000), client=C1)
    c.run(OpenSession(C1, 1000), client=C1)
    assert b.sm.digest() == c.sm.digest() == c.sm.digest_from_scratch()


# ----------------------------------------------------------------------- unknown sessions

WRITES = [
    Create("/x"),
    SetData("/a", b"x"),
    Delete("/a"),
    Check("/a", -1),
    Multi((Check("/a", -1), Create("/y"))),
    Create("/e", ephemeral=True),
]


@pytest.mark.parametrize("op", WRITES)
def test_an_unknown_session_gets_session_expired_which_is_not_cached(op):
    d = Driver()
    d.run(Create("/a"), client=C1)
    before = d.sm.tree.encode_snapshot()
    clients = cache_clients(d.sm)
    out = d.run(op, client=C4)
    assert (out.ok, out.error_code) == (False, "SessionExpired")
    assert isinstance(out.error(), SessionExpired)
    assert d.sm.cached(C4, 1) is None
    assert cache_clients(d.sm) == clients
    assert d.sm.tree.encode_snapshot() == before
    assert d.sm.last_events == ()
    check_digest(d.sm)


def test_a_malformed_command_from_an_unknown_session_is_not_cached_either():
    sm = StateMachine()
    out = sm.apply_command(zxid(1), b"junk", client=C4, seq=1)
    assert (out.ok, out.error_code) == (False, "BadArguments")
    assert sm.cached(C4, 1) is None
    assert cache_clients(sm) == []


def test_the_clusters_own_ids_need_no_session():
    d = Driver(sessions=())
    for client in (0, REAPER_CLIENT, FIRST_CLIENT_ID - 1):
        assert d.run(Check("/", -1), client=client).ok
    assert cache_clients(d.sm) == [0, REAPER_CLIENT, FIRST_CLIENT_ID - 1]


# ---------------------------------------------------------------------------------- close


def test_closing_its_own_session_deletes_its_ephemerals_and_forgets_it():
    d = Driver()
    d.run(Create("/app"), client=C1)
    d.run(Create("/app/lock-", ephemeral=True, sequential=True), client=C1)
    d.run(Create("/app/other", ephemeral=True), client=C2)
    d.run(Create("/app/keep"), client=C1)
    assert cache_clients(d.sm) == [C1, C2, C3]
    out = d.run(CloseSession(C1), client=C1)
    assert out == Outcome(True, ["/app/lock-0000000000"])
    assert d.sm.last_closed == C1
    assert d.sm.tree.children("/app") == ["keep", "other"]
    assert d.sm.tree.ephemerals(C1) == []
    assert C1 not in d.sm.sessions()
    # Its reply cache entry is gone too, and its close is not cached: the cache shrank.
    assert cache_clients(d.sm) == [C2, C3]
    assert d.sm.cached(C1, d.seqs[C1]) is None
    out = d.run(Create("/late"), client=C1)
    assert out.error_code == "SessionExpired"
    check_digest(d.sm)


def test_the_reaper_closes_a_session_and_its_own_reply_is_cached():
    d = Driver()
    d.run(Create("/e", ephemeral=True), client=C2)
    out = d.run(CloseSession(C2), client=REAPER_CLIENT)
    assert out == Outcome(True, ["/e"])
    assert d.sm.last_closed == C2
    d.run(Check("/", -1), client=C1)
    assert d.sm.last_closed is None
    assert d.sm.tree.exists("/e") is None
    assert d.sm.sessions() == {C1: 10_000, C3: 10_000}
    assert cache_clients(d.sm) == [REAPER_CLIENT, C1, C3]
    assert d.sm.cached(REAPER_CLIENT, 1) == out
    assert d.run(SetData("/", b""), client=C2).error_code == "SessionExpired"
    check_digest(d.sm)


def test_an_ephemeral_created_just_before_the_close_is_removed_with_it():
    d = Driver()
    candidates = d.sm.tree.ephemerals(C1)  # what a leader might have looked at
    d.run(Create("/late", ephemeral=True), client=C1)
    assert candidates == []
    assert d.run(CloseSession(C1), client=REAPER_CLIENT).value == ["/late"]


@pytest.mark.parametrize("closer", [C1, REAPER_CLIENT])
def test_closing_a_session_that_is_not_open_is_an_empty_success(closer):
    d = Driver(sessions=(C2,))
    assert d.run(CloseSession(C1), client=closer) == Outcome(True, [])
    assert d.sm.last_closed is None  # nothing was open to close
    assert d.run(CloseSession(C2), client=REAPER_CLIENT) == Outcome(True, [])
    assert d.sm.last_closed == C2
    assert d.run(CloseSession(C2), client=REAPER_CLIENT) == Outcome(True, [])
    assert d.sm.last_closed is None
    assert d.sm.sessions() == {}
    check_digest(d.sm)


@pytest.mark.parametrize("closer", [C2, C4, 0, 2])
def test_nobody_else_may_close_a_session(closer):
    d = Driver()
    d.run(Create("/e", ephemeral=True), client=C1)
    out = d.run(CloseSession(C1), client=closer)
    assert (out.ok, out.error_code) == (False, "BadArguments")
    assert d.sm.last_closed is None
    assert C1 in d.sm.sessions()
    assert d.sm.tree.ephemerals(C1) == ["/e"]


@pytest.mark.parametrize("session", [REAPER_CLIENT, 2, FIRST_CLIENT_ID - 1])
def test_the_clusters_own_ids_are_not_sessions_to_close(session):
    d = Driver()
    d.run(Check("/", -1), client=session)
    out = d.run(CloseSession(session), client=REAPER_CLIENT)
    assert (out.ok, out.error_code) == (False, "BadArguments")
    assert session in cache_clients(d.sm)


def test_a_closed_session_may_open_again_from_scratch():
    d = Driver()
    d.run(Create("/e", ephemeral=True), client=C1)
    d.run(CloseSession(C1), client=REAPER_CLIENT)
    assert d.run(OpenSession(C1, 50), client=C1) == Outcome(True, 50)
    assert d.run(Create("/e2", ephemeral=True), client=C1) == Outcome(True, "/e2")
    assert d.sm.tree.ephemerals(C1) == ["/e2"]
    check_digest(d.sm)


def test_only_the_reaper_may_reap():
    d = Driver()
    for client in (C1, 0, 2):
        out = d.run(Reap(()), client=client)
        assert (out.ok, out.error_code) == (False, "BadArguments")
    assert d.run(Reap(()), client=REAPER_CLIENT) == Outcome(True, [])


# --------------------------------------------------------------------- snapshot and digest


def test_sessions_survive_a_snapshot_and_the_digest_agrees_throughout():
    d = Driver()
    steps = [
        (Create("/e1", ephemeral=True), C1),
        (Create("/e2", ephemeral=True), C2),
        (OpenSession(C4, 3), C4),
        (Create("/e4", ephemeral=True), C4),
        (CloseSession(C2), REAPER_CLIENT),
        (OpenSession(C1, 99), C1),
        (CloseSession(C3), C3),
        (Create("/x"), C3),  # expired
    ]
    for op, client in steps:
        d.run(op, client=client)
        check_digest(d.sm)
    restored = StateMachine.restore(d.sm.snapshot())
    assert restored.sessions() == d.sm.sessions() == {C1: 99, C4: 3}
    assert restored.snapshot() == d.sm.snapshot()
    assert restored.tree.ephemerals(C4) == ["/e4"]
    # Both refuse and accept the same clients afterwards.
    for sm in (restored, d.sm):
        assert sm.apply_command(zxid(100), encode_command(1, Create("/y")), C3, 9).error_code == (
            "SessionExpired"
        )
        assert sm.apply_command(zxid(101), encode_command(1, Create("/y")), C4, 9).ok
    assert restored.digest() == d.sm.digest()


def test_a_session_opened_and_closed_leaves_no_trace_but_time():
    a, b = Driver(sessions=()), Driver(sessions=())
    a.run(OpenSession(C1, 10), client=C1)
    a.run(CloseSession(C1), client=C1)
    # Two commands that change nothing but the time and zxid: an unknown session's writes.
    assert b.run(Create("/x"), client=C4).error_code == "SessionExpired"
    assert b.run(Create("/x"), client=C4).error_code == "SessionExpired"
    assert cache_clients(a.sm) == cache_clients(b.sm) == []
    assert a.sm.digest() == b.sm.digest() == a.sm.digest_from_scratch()
    assert a.sm.snapshot() == b.sm.snapshot()
