"""Fenced writes: only the current holder's token passes; a stale holder's write is refused."""

from __future__ import annotations

import pytest

from paxctl.statemachine.errors import BadArguments, FenceRejected, MultiError
from paxctl.statemachine.machine import StateMachine
from paxctl.statemachine.ops import (
    TEMP_CLIENT_BIT,
    CloseSession,
    Create,
    Delete,
    Fence,
    Multi,
    OpenSession,
    SetData,
    decode_op,
    encode_command,
    encode_op,
)

A, B = 1 << 16, 2 << 16  # the sessions opened in slots 1 and 2 (a session's id is its zxid)


class Machine:
    def __init__(self) -> None:
        self.m = StateMachine()
        self.zxid = 0
        self.seqs: dict[int, int] = {}

    def run(self, client: int, op: object):
        self.zxid += 1 << 16  # one command a slot
        seq = self.seqs[client] = self.seqs.get(client, 0) + 1
        return self.m.apply_command(self.zxid, encode_command(self.zxid, op), client, seq)


def setup() -> tuple[Machine, str, str, int, int]:
    m = Machine()
    for k, s in enumerate((A, B), start=1):
        assert m.run(TEMP_CLIENT_BIT | k, OpenSession(1000)).value == s
    assert m.run(A, Create("/locks/x", parents=True)).ok
    first = m.run(A, Create("/locks/x/aaaa-lock-", ephemeral=True, sequential=True)).value
    second = m.run(B, Create("/locks/x/bbbb-lock-", ephemeral=True, sequential=True)).value
    assert m.run(A, Create("/shared", b"0")).ok
    t1 = m.m.tree.stat(first).czxid
    t2 = m.m.tree.stat(second).czxid
    return m, first, second, t1, t2


def test_the_holders_token_passes_and_a_waiters_does_not():
    m, first, _, t1, t2 = setup()
    assert m.m.tree.holder("/locks/x") == first
    ok = m.run(A, Multi((Fence("/locks/x", t1), SetData("/shared", b"1"))))
    assert ok.ok
    refused = m.run(B, Multi((Fence("/locks/x", t2), SetData("/shared", b"2"))))
    assert isinstance(refused.error(), MultiError)
    assert refused.error_code == "FenceRejected" and refused.error_index == 0
    assert m.m.tree.get("/shared")[0] == b"1"


def test_a_stale_holder_is_refused_once_its_session_ended():
    m, _, second, t1, t2 = setup()
    assert m.run(A, CloseSession(A)).ok  # A's session expires: its lock node goes
    assert m.m.tree.holder("/locks/x") == second
    stale = m.run(B, Multi((Fence("/locks/x", t1), SetData("/shared", b"stale"))))
    assert stale.error_code == "FenceRejected"
    assert m.run(B, Multi((Fence("/locks/x", t2), SetData("/shared", b"new")))).ok
    assert t2 > t1  # tokens grow across holders
    assert m.m.tree.get("/shared")[0] == b"new"


def test_fence_on_a_missing_or_empty_lock_is_refused():
    m, first, second, t1, _ = setup()
    assert m.run(A, Delete(first)).ok
    assert m.run(B, Delete(second)).ok
    with pytest.raises(FenceRejected, match="nobody holds it"):
        m.m.tree.apply(Fence("/locks/x", t1), 99, 99, A)
    with pytest.raises(FenceRejected, match="no such lock"):
        m.m.tree.apply(Fence("/locks/nope", t1), 99, 99, A)


def test_children_without_a_sequence_suffix_are_not_holders():
    m, first, _, _, _ = setup()
    assert m.run(A, Create("/locks/x/readme", b"")).ok
    assert m.m.tree.holder("/locks/x") == first


def test_fence_codec_round_trip_and_validation():
    op = Multi((Fence("/locks/x", 42), SetData("/a", b"")))
    assert decode_op(encode_op(op)) == op
    with pytest.raises(BadArguments):
        Fence("/locks/x", -1)
    with pytest.raises(BadArguments):
        Fence("no-slash", 1)
