"""Fuzzing the peer message codec (``paxctl/core/codec.py``), one target per message kind.

The kinds and their fields are read from ``paxctl/core/messages.py``, so a kind added there is
fuzzed here at once. For each: valid messages round-trip; their encodings, structurally mutated
(values replaced, items dropped or added, integers pushed out of range, types changed), bit
flipped or truncated, decode to a message or raise ``CodecError``, never anything else; and any
message that does come out is one the codec can send again unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
from fuzzing import MESSAGE_KINDS, Derive, fuzz, mutated, pack, unpack
from hypothesis import given
from hypothesis import strategies as st

from paxctl.core.codec import CodecError, decode, encode
from paxctl.core.membership import founding
from paxctl.core.messages import Message

#: Configurations as peers send them: valid ones (the codec refuses the rest, tested apart).
configs = st.lists(
    st.sampled_from([1, 2, 3, 5, 7]).map(
        lambda n: founding({i: f"10.0.0.{i}:7000" for i in range(1, n + 1)})
    ),
    min_size=1,
    max_size=1,
).map(tuple)
derive = Derive(by_name={"configs": configs})
ids = [kind.__name__ for kind in MESSAGE_KINDS]


def decodes_cleanly(data: Any) -> Message | None:
    """The message ``data`` holds, or None for ``CodecError``; any other exception fails."""
    try:
        msg = decode(data)
    except CodecError:
        return None
    assert isinstance(msg, Message)
    # Whatever is accepted is in range and well typed: it encodes to a message equal to it.
    assert decode(encode(msg)) == msg
    return msg


def test_every_message_kind_is_fuzzed():
    assert len(MESSAGE_KINDS) >= 14  # the kinds of "One engine"; later ones are added here
    assert all(isinstance(kind, type) and issubclass(kind, Message) for kind in MESSAGE_KINDS)


@pytest.mark.parametrize("kind", MESSAGE_KINDS, ids=ids)
@fuzz(20)
@given(data=st.data())
def test_valid_messages_round_trip(kind, data):
    msg = data.draw(derive.build(kind), label="message")
    encoded = encode(msg)
    assert decode(encoded) == msg
    assert encode(decode(encoded)) == encoded  # one encoding per message


@pytest.mark.parametrize("kind", MESSAGE_KINDS, ids=ids)
@fuzz(40)
@given(data=st.data())
def test_mutated_encodings_decode_or_raise_codec_error(kind, data):
    msg = data.draw(derive.build(kind), label="message")
    bad = data.draw(mutated(unpack(encode(msg))), label="mutated")
    decodes_cleanly(pack(bad))


@pytest.mark.parametrize("kind", MESSAGE_KINDS, ids=ids)
@fuzz(20)
@given(data=st.data())
def test_damaged_bytes_decode_or_raise_codec_error(kind, data):
    encoded = bytearray(encode(data.draw(derive.build(kind), label="message")))
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        bit = data.draw(st.integers(0, len(encoded) * 8 - 1), label="bit")
        encoded[bit // 8] ^= 1 << (bit % 8)
    cut = data.draw(st.integers(0, len(encoded)), label="cut")
    decodes_cleanly(bytes(encoded))
    decodes_cleanly(bytes(encoded[:cut]))


@fuzz(300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_codec_error(data):
    decodes_cleanly(data)
