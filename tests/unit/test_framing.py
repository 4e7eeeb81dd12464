"""Frames on a stream: whatever way the bytes are cut, the payloads come out whole and in order,
and a frame that is oversized, of another version or damaged raises ``FrameError`` at once."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxctl.protocol.framing import (
    HEADER_SIZE,
    MAX_FRAME,
    PROTOCOL_VERSION,
    FrameDecoder,
    FrameError,
    encode_frame,
)

payloads = st.lists(st.binary(max_size=300), max_size=30)


def raw_frame(
    payload: bytes, *, version: int = PROTOCOL_VERSION, crc: int | None = None, length=None
) -> bytes:
    """A frame built by hand, so that each field can be made wrong on its own."""
    if crc is None:
        crc = zlib.crc32(payload, zlib.crc32(bytes([version])))
    size = len(payload) if length is None else length
    return struct.pack(">IIB", size, crc, version) + payload


def feed_in_pieces(decoder: FrameDecoder, data: bytes, cuts: list[int]) -> list[bytes]:
    out: list[bytes] = []
    start = 0
    for end in [*sorted(cuts), len(data)]:
        out += decoder.feed(data[start:end])
        start = end
    return out


# ------------------------------------------------------------------ round trips


def test_header_layout_is_length_crc_version():
    frame = encode_frame(b"abc")
    assert len(frame) == HEADER_SIZE + 3 == 12
    assert frame == raw_frame(b"abc")
    length, crc, version = struct.unpack(">IIB", frame[:HEADER_SIZE])
    assert (length, version) == (3, PROTOCOL_VERSION)
    assert crc == zlib.crc32(bytes([PROTOCOL_VERSION]) + b"abc")


def test_empty_payload_round_trips():
    assert FrameDecoder().feed(encode_frame(b"")) == [b""]


@settings(max_examples=100, deadline=None)
@given(payloads)
def test_many_frames_fed_byte_by_byte(items):
    stream = b"".join(encode_frame(p) for p in items)
    decoder = FrameDecoder()
    out = [p for i in range(len(stream)) for p in decoder.feed(stream[i : i + 1])]
    assert out == items
    assert decoder.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.data(), payloads)
def test_many_frames_fed_in_random_chunks(data, items):
    stream = b"".join(encode_frame(p) for p in items)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40), label="cuts")
    decoder = FrameDecoder()
    assert feed_in_pieces(decoder, stream, cuts) == items
    assert decoder.buffered == 0


@settings(max_examples=200, deadline=None)
@given(st.data(), payloads, st.binary(min_size=1, max_size=300))
def test_a_partial_frame_waits_for_the_rest(data, items, last):
    stream = b"".join(encode_frame(p) for p in items)
    tail = encode_frame(last)
    cut = data.draw(st.integers(0, len(tail) - 1), label="cut")
    decoder = FrameDecoder()
    assert decoder.feed(stream + tail[:cut]) == items
    assert decoder.buffered == cut
    assert decoder.feed(tail[cut:]) == [last]
    assert decoder.buffered == 0


def test_a_frame_of_exactly_max_frame_bytes_round_trips():
    payload = bytes(range(256)) * (MAX_FRAME // 256)
    assert len(payload) == MAX_FRAME
    frame = encode_frame(payload)
    decoder = FrameDecoder()
    assert decoder.feed(frame[: HEADER_SIZE + 10]) == []
    assert decoder.feed(frame[HEADER_SIZE + 10 :]) == [payload]


# ------------------------------------------------------------------ oversized frames


def test_encode_frame_refuses_payloads_above_max_frame():
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame(b"\0" * (MAX_FRAME + 1))


@pytest.mark.parametrize("length", [MAX_FRAME + 1, 2**31, 2**32 - 1])
def test_oversized_length_is_refused_from_the_header_alone(length):
    decoder = FrameDecoder()
    with pytest.raises(FrameError, match="exceeds"):
        decoder.feed(struct.pack(">IIB", length, 0, PROTOCOL_VERSION))


def test_oversized_length_is_refused_before_the_payload_is_buffered():
    decoder = FrameDecoder(max_frame=64)
    header = struct.pack(">IIB", 65, 0, PROTOCOL_VERSION)
    # The header arrives in pieces: nothing is decided until it is whole...
    assert decoder.feed(header[:5]) == []
    # ...and then the frame is refused at once, without waiting for (or holding) its payload.
    with pytest.raises(FrameError, match="65 bytes exceeds the 64-byte limit"):
        decoder.feed(header[5:])


def test_length_at_the_limit_is_accepted_and_one_above_is_not():
    assert FrameDecoder(max_frame=64).feed(raw_frame(b"x" * 64)) == [b"x" * 64]
    with pytest.raises(FrameError):
        FrameDecoder(max_frame=64).feed(raw_frame(b"x" * 65))


def test_oversized_frame_after_good_ones_is_refused():
    decoder = FrameDecoder(max_frame=64)
    with pytest.raises(FrameError, match="exceeds"):
        decoder.feed(encode_frame(b"ok") + struct.pack(">IIB", 1000, 0, PROTOCOL_VERSION))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_hostile_bytes_raise_only_frame_error_and_never_buffer_past_one_frame(chunks):
    decoder = FrameDecoder(max_frame=64)
    for chunk in chunks:
        try:
            decoder.feed(chunk)
        except FrameError:
            return
        assert decoder.buffered < HEADER_SIZE + 64


# ------------------------------------------------------------------ bad version, bad checksum


@pytest.mark.parametrize("version", [0, PROTOCOL_VERSION + 1, 255])
def test_unknown_version_is_refused(version):
    with pytest.raises(FrameError, match=f"unknown protocol version {version}"):
        FrameDecoder().feed(raw_frame(b"payload", version=version))


def test_unknown_version_is_refused_from_the_header_alone():
    header = raw_frame(b"payload", version=7)[:HEADER_SIZE]
    with pytest.raises(FrameError, match="version"):
        FrameDecoder().feed(header)


def test_bad_crc_is_refused():
    good = raw_frame(b"payload")
    crc = struct.unpack(">I", good[4:8])[0]
    with pytest.raises(FrameError, match="checksum"):
        FrameDecoder().feed(raw_frame(b"payload", crc=crc ^ 1))


def test_the_crc_covers_the_version_byte():
    # A checksum of the payload alone (without the version byte) is not accepted.
    with pytest.raises(FrameError, match="checksum"):
        FrameDecoder().feed(raw_frame(b"payload", crc=zlib.crc32(b"payload")))


@settings(max_examples=300, deadline=None)
@given(st.data(), st.binary(min_size=1, max_size=100))
def test_any_flipped_bit_after_the_length_is_refused(data, payload):
    frame = bytearray(encode_frame(payload))
    bit = data.draw(st.integers(32, len(frame) * 8 - 1), label="bit")  # crc, version or payload
    frame[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(FrameError):
        FrameDecoder().feed(bytes(frame))


@settings(max_examples=300, deadline=None)
@given(st.data(), st.lists(st.binary(max_size=50), min_size=1, max_size=5))
def test_a_damaged_length_never_yields_a_wrong_payload(data, items):
    frames = [encode_frame(p) for p in items]
    index = data.draw(st.integers(0, len(items) - 1), label="frame")
    bit = data.draw(st.integers(0, 31), label="bit")
    damaged = bytearray(frames[index])
    damaged[bit // 8] ^= 1 << (bit % 8)
    stream = b"".join(frames[:index]) + bytes(damaged) + b"".join(frames[index + 1 :])
    decoder = FrameDecoder()
    try:
        out = decoder.feed(stream)
    except FrameError:
        return
    # Either the damaged frame is still waiting for bytes, or it was refused: never misread.
    assert out == items[:index]
