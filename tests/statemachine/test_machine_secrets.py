"""Session secrets and bounded sequence numbers in the replicated state machine (issue 14).

A session keeps the hash of the secret it was opened with, in the table, the snapshot and the
digest, and never in what is listed; a ``seq`` too far ahead of the client's last is refused,
changes nothing and is not recorded, so it cannot turn the client's later writes into "applied
earlier" (as ``seq`` 2**63-1 once did)."""

from __future__ import annotations

import pytest
from znode_helpers import Driver, zxid

from paxctl.statemachine import CloseSession, Create, OpenSession, StateMachine, encode_command
from paxctl.statemachine.machine import MAX_SEQ_AHEAD
from paxctl.statemachine.ops import NO_SECRET_HASH, REAPER_CLIENT, SYSTEM_CLIENT, TEMP_CLIENT_BIT

H1 = b"\x01" * 16
H2 = b"\x02" * 16


def opened(d: Driver, secret_hash: bytes) -> int:
    out = d.run(OpenSession(1000, secret_hash), d.temp())
    assert out.ok
    return out.value


def test_a_session_is_proven_only_by_the_hash_it_was_opened_with():
    d = Driver(sessions=())
    s1, s2 = opened(d, H1), opened(d, H2)
    assert d.sm.session_proven(s1, H1) and d.sm.session_proven(s2, H2)
    assert not d.sm.session_proven(s1, H2)
    assert not d.sm.session_proven(s2, H1)
    assert not d.sm.session_proven(s1, H1[:-1])  # a prefix is no proof
    assert not d.sm.session_proven(s1 + 1, H1)  # no such session
    assert not d.sm.session_proven(s1, NO_SECRET_HASH)


def test_a_closed_session_is_proven_by_nothing():
    d = Driver(sessions=())
    s = opened(d, H1)
    assert d.run(CloseSession(s), client=s).ok
    assert not d.sm.session_proven(s, H1)


def test_the_hash_survives_a_snapshot_and_counts_in_the_digest():
    a, b = Driver(sessions=()), Driver(sessions=())
    sa, sb = opened(a, H1), opened(b, H2)
    assert sa == sb and a.sm.sessions() == b.sm.sessions()
    assert a.sm.digest() != b.sm.digest()  # replicas disagreeing on a secret would be seen
    restored = StateMachine.restore(a.sm.snapshot())
    assert restored.session_proven(sa, H1) and not restored.session_proven(sa, H2)
    assert restored.digest() == a.sm.digest() == a.sm.digest_from_scratch()


def test_the_listing_of_sessions_holds_no_secret():
    d = Driver(sessions=())
    s = opened(d, H1)
    assert d.sm.sessions() == {s: 1000}
    assert H1 not in repr(d.sm.sessions()).encode()
    assert "secret" not in repr(OpenSession(1000, H1))  # nor does a logged command


def write(sm: StateMachine, slot: int, client: int, seq: int, path: str):
    return sm.apply_command(zxid(slot), encode_command(slot, Create(path)), client, seq)


@pytest.mark.parametrize("seq", [2**63 - 1, MAX_SEQ_AHEAD + 2, 2**62])
def test_a_seq_too_far_ahead_is_refused_and_not_recorded(seq):
    d = Driver(sessions=())
    s = opened(d, H1)
    assert write(d.sm, 10, s, 1, "/a").ok
    refused = write(d.sm, 11, s, seq, "/b")
    assert not refused.ok and refused.error_code == "BadArguments"
    assert "ahead of the client's last (1)" in refused.error_message
    assert d.sm.last_events == () and d.sm.tree.exists("/b") is None
    assert not d.sm.is_applied(s, seq) and d.sm.cached(s, seq) is None
    # The client's later writes are still applied and answered: the table was not poisoned.
    assert write(d.sm, 12, s, 2, "/c").value == "/c"
    assert d.sm.cached(s, 2).value == "/c"
    assert write(d.sm, 13, s, 2, "/c").value == "/c"  # a retry is answered from the table


def test_the_window_is_counted_from_the_last_applied_seq():
    d = Driver(sessions=())
    s = opened(d, H1)
    assert write(d.sm, 10, s, MAX_SEQ_AHEAD, "/a").ok  # a fresh session's last is 0
    assert write(d.sm, 11, s, 2 * MAX_SEQ_AHEAD, "/b").ok
    assert not write(d.sm, 12, s, 3 * MAX_SEQ_AHEAD + 1, "/c").ok
    assert d.sm.seq_in_window(s, 3 * MAX_SEQ_AHEAD)
    assert not d.sm.seq_in_window(s, 3 * MAX_SEQ_AHEAD + 1)


def test_a_temporary_id_cannot_open_a_session_with_a_seq_far_ahead():
    sm = StateMachine()
    out = sm.apply_command(
        zxid(1), encode_command(1, OpenSession(1000, H1)), TEMP_CLIENT_BIT, 2**63 - 1
    )
    assert not out.ok and sm.sessions() == {}
    out = sm.apply_command(zxid(2), encode_command(2, OpenSession(1000, H1)), TEMP_CLIENT_BIT, 1)
    assert out.ok and sm.session_proven(zxid(2), H1)


@pytest.mark.parametrize("client", [SYSTEM_CLIENT, REAPER_CLIENT])
def test_the_clusters_own_ids_are_not_bound(client):
    assert StateMachine().seq_in_window(client, 2**63 - 1)
