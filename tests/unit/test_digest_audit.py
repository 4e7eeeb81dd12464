"""The digest audit: replicas compare their state at a slot through a command in the log."""

from __future__ import annotations

import logging

import msgpack

from paxctl.server.audit import SYSTEM_CLIENT, DigestAudit


def test_matching_digests_pass_and_a_mismatch_is_loud(caplog):
    leader, follower = DigestAudit(10), DigestAudit(10)
    assert leader.due(20) and not leader.due(21)
    leader.note(20, b"same")
    follower.note(20, b"same")
    cmd = leader.command(20)
    assert cmd.client == SYSTEM_CLIENT and cmd.seq == 20
    assert follower.check(cmd.data) is True
    follower.note(30, b"mine")
    leader.note(30, b"theirs")
    with caplog.at_level(logging.CRITICAL):
        assert follower.check(leader.command(30).data) is False
    assert follower.mismatches == 1 and follower.checks == 2
    assert "STATE DIVERGENCE" in caplog.text


def test_unknown_slots_and_malformed_commands_are_not_comparable():
    audit = DigestAudit(10, keep=2)
    for slot in (10, 20, 30):
        audit.note(slot, b"d")
    assert audit.check(msgpack.packb(["digest", 10, b"d"])) is None  # forgotten (kept 2)
    assert audit.check(msgpack.packb(["digest", 30, b"d"])) is True
    assert audit.check(b"\xc1garbage") is None
    assert audit.check(msgpack.packb(["other", 30, b"d"])) is None
    assert audit.checks == 1 and audit.mismatches == 0


def test_interval_zero_never_audits():
    assert not DigestAudit(0).due(100)
