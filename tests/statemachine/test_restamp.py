"""A leader restamps the commands it proposes; malformed bytes pass through untouched."""

from __future__ import annotations

import pytest

from paxctl.statemachine.errors import BadArguments
from paxctl.statemachine.ops import Create, decode_command, encode_command, restamp_command


def test_restamp_changes_only_the_time():
    data = encode_command(5, Create("/a", b"x", ephemeral=True))
    time_ms, op = decode_command(restamp_command(data, 123_456))
    assert time_ms == 123_456
    assert op == Create("/a", b"x", ephemeral=True)


@pytest.mark.parametrize("junk", [b"", b"\xc1", b"\x93\x01\x02", b"\x91\x01", b"\x93\x63\x00\x90"])
def test_malformed_commands_pass_through_unchanged(junk):
    assert restamp_command(junk, 1) == junk


def test_the_new_time_is_checked():
    with pytest.raises(BadArguments):
        restamp_command(encode_command(1, Create("/a")), -1)
