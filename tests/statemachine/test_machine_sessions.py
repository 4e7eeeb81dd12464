"""The replicated session table: open, close, who may do which, and what an unknown session gets.

Session ids are assigned by the cluster: the zxid of the ``OpenSession`` that created them.
"""

from __future__ import annotations

import msgpack
import pytest
from znode_helpers import C1, C2, C3, C4, Driver, zxid

from paxctl.statemachine import (
    FIRST_CLIENT_ID,
    REAPER_CLIENT,
    TEMP_CLIENT_BIT,
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


def test_open_returns_the_new_session_id_which_is_its_zxid_and_lists_the_session():
    d = Driver(sessions=())
    temp = d.temp()
    d.slot = 6
    assert d.run(OpenSession(4000), client=temp) == Outcome(True, zxid(7))
    assert d.sm.last_opened == zxid(7)
    assert d.sm.sessions() == {zxid(7): 4000}
    # The temporary id has no entry: it is no session, and the retry of its open is no retry.
    assert d.sm.cached(temp, 1) is None and not d.sm.is_applied(temp, 1)
    assert d.sm.last_events == ()
    check_digest(d.sm)


def test_session_ids_are_never_reused_and_a_lost_open_retried_makes_an_orphan():
    """A retried OpenSession (its answer was lost) opens a second session; the first, which
    nobody learned, expires like any silent session. No id is ever handed out twice."""
    d = Driver(sessions=())
    temp = d.temp()
    d.seqs[temp] = 0
    first = d.run(OpenSession(1000), client=temp).value
    d.seqs[temp] = 0  # the same (client, seq) again: a retry
    second = d.run(OpenSession(1000), client=temp).value
    assert first != second and set(d.sm.sessions()) == {first, second}
    seen = {first, second}
    for _ in range(50):
        session = d.open(timeout_ms=10)
        assert session not in seen
        seen.add(session)
        assert d.run(CloseSession(session), client=session).ok
    assert set(d.sm.sessions()) == {first, second}
    check_digest(d.sm)


def test_sessions_returns_a_copy():
    d = Driver()
    listing = d.sm.sessions()
    listing.clear()
    assert d.sm.sessions() == dict.fromkeys((C1, C2, C3), 10_000)


@pytest.mark.parametrize("client", [C2, C4, REAPER_CLIENT, 0, FIRST_CLIENT_ID, TEMP_CLIENT_BIT - 1])
def test_only_a_temporary_id_may_open_a_session(client):
    """Session ids and temporary ids never meet: an open session (or any id below the
    temporary range) opening another is refused, and nothing is opened."""
    d = Driver(sessions=(C2,))
    out = d.run(OpenSession(1000), client=client)
    assert (out.ok, out.error_code) == (False, "BadArguments")
    assert d.sm.sessions() == {C2: 10_000}
    assert d.sm.last_opened is None


@pytest.mark.parametrize("at", [zxid(0, 5), 1 << 62, (1 << 62) + 1])
def test_a_zxid_outside_the_session_range_opens_nothing(at):
    sm = StateMachine()
    out = sm.apply_command(at, encode_command(1, OpenSession(1000)), TEMP_CLIENT_BIT, 1)
    assert (out.ok, out.error_code) == (False, "BadArguments")
    assert sm.sessions() == {}


def test_the_timeout_is_part_of_the_digest():
    a, b = Driver(sessions=()), Driver(sessions=())
    a.open(1000)
    b.open(1001)
    assert a.sm.tree.digest() == b.sm.tree.digest()
    assert a.sm.digest() != b.sm.digest()
    c = Driver(sessions=())
    c.open(1001)
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
    assert cache_clients(d.sm) == [C1, C2]  # C3 has not written: no entry yet
    out = d.run(CloseSession(C1), client=C1)
    assert out == Outcome(True, ["/app/lock-0000000000"])
    assert d.sm.last_closed == C1
    assert d.sm.tree.children("/app") == ["keep", "other"]
    assert d.sm.tree.ephemerals(C1) == []
    assert C1 not in d.sm.sessions()
    # Its exactly-once entry is gone too, and its close is not kept: the table shrank.
    assert cache_clients(d.sm) == [C2]
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
    assert cache_clients(d.sm) == [REAPER_CLIENT, C1]
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


def test_a_closed_session_never_comes_back_and_its_client_opens_a_new_one():
    d = Driver()
    d.run(Create("/e", ephemeral=True), client=C1)
    d.run(CloseSession(C1), client=REAPER_CLIENT)
    assert d.run(Create("/e2", ephemeral=True), client=C1).error_code == "SessionExpired"
    new = d.open(50)
    assert new not in (C1, C2, C3)
    assert d.run(Create("/e2", ephemeral=True), client=new) == Outcome(True, "/e2")
    assert d.sm.tree.ephemerals(new) == ["/e2"] and d.sm.tree.ephemerals(C1) == []
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
        (OpenSession(3), d.temp()),  # opens C4 = zxid(6)
        (Create("/e4", ephemeral=True), zxid(6)),
        (CloseSession(C2), REAPER_CLIENT),
        (CloseSession(C3), C3),
        (Create("/x"), C3),  # expired
    ]
    for op, client in steps:
        d.run(op, client=client)
        check_digest(d.sm)
    C4 = zxid(6)
    restored = StateMachine.restore(d.sm.snapshot())
    assert restored.sessions() == d.sm.sessions() == {C1: 10_000, C4: 3}
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
    session = a.open(10)
    a.run(CloseSession(session), client=session)
    # Commands that change nothing but the time and zxid: an unknown session's writes.
    assert b.run(Create("/x"), client=C4).error_code == "SessionExpired"
    assert b.run(Create("/x"), client=C4).error_code == "SessionExpired"
    assert cache_clients(a.sm) == cache_clients(b.sm) == []
    assert a.sm.digest() == b.sm.digest() == a.sm.digest_from_scratch()
    assert a.sm.snapshot() == b.sm.snapshot()
