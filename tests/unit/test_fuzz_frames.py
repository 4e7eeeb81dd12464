"""Fuzzing the frame layer: ``FrameDecoder.feed`` and the connection around it.

A stream of good frames with hostile ones mixed in, cut at arbitrary points: the decoder hands
out exactly the good payloads before the first bad frame, then ``FrameError`` and nothing else,
and never holds more than a header and one frame's worth of bytes. ``FramedProtocol`` (the
asyncio connection) closes on the first bad frame, never lets an exception out of
``data_received`` and delivers nothing after it closed.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
import zlib
from typing import Any

from fuzzing import fuzz
from hypothesis import given
from hypothesis import strategies as st

from paxctl.protocol.framing import (
    HEADER_SIZE,
    PROTOCOL_VERSION,
    FrameDecoder,
    FrameError,
    encode_frame,
)
from paxctl.server.transport import FramedProtocol

LIMIT = 64  # a small max_frame, so that oversized frames are cheap to build


def frame(payload: bytes, version: int = PROTOCOL_VERSION, crc_xor: int = 0, length=None) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(bytes([version]))) ^ crc_xor
    size = len(payload) if length is None else length
    return struct.pack(">IIB", size, crc, version) + payload


good = st.binary(max_size=LIMIT).map(lambda p: ("good", p, frame(p)))
bad = st.one_of(
    st.tuples(st.binary(max_size=LIMIT), st.integers(1, 2**32 - 1)).map(
        lambda t: ("bad", t[0], frame(t[0], crc_xor=t[1]))
    ),
    st.tuples(st.binary(max_size=LIMIT), st.integers(0, 255).filter(lambda v: v != 1)).map(
        lambda t: ("bad", t[0], frame(t[0], version=t[1]))
    ),
    st.integers(LIMIT + 1, 2**32 - 1).map(lambda n: ("bad", b"", frame(b"", length=n))),
    st.binary(min_size=1, max_size=80).map(lambda b: ("garbage", b"", b)),
)
streams = st.lists(st.one_of(good, good, bad), max_size=12)


def cut(data: st.DataObject, stream: bytes) -> list[bytes]:
    """``stream`` in pieces, cut at points hypothesis picks (empty pieces included)."""
    points = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts"))
    edges = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


def expected(items: list[tuple[str, bytes, bytes]]) -> list[bytes]:
    """The payloads a correct decoder hands out: the good frames before the first other."""
    out = []
    for kind, payload, _ in items:
        if kind != "good":
            break
        out.append(payload)
    return out


def feed_all(decoder: FrameDecoder, pieces: list[bytes]) -> tuple[list[bytes], bool]:
    """What ``decoder`` hands out for ``pieces`` and whether it refused the stream; checks
    after every piece that it holds no more than a header and one frame."""
    out: list[bytes] = []
    for piece in pieces:
        try:
            out += decoder.feed(piece)
        except FrameError:
            return out, True
        assert decoder.buffered < HEADER_SIZE + LIMIT
    return out, False


@fuzz(400)
@given(st.data(), streams)
def test_frame_decoder_yields_the_good_prefix_then_only_frame_error(data, items):
    decoder = FrameDecoder(LIMIT)
    out, failed = feed_all(decoder, cut(data, b"".join(raw for _, _, raw in items)))
    # Good frames in order, none past the first other one (garbage that happened to carry a
    # valid CRC of its own would be a frame: a 2**-32 chance, never seen). The payloads of the
    # piece that held a bad frame are dropped with it: the connection closes anyway.
    want = expected(items)
    assert out == want[: len(out)]
    first_other = next((kind for kind, _, _ in items if kind != "good"), None)
    if first_other == "bad":  # complete in the stream, so it is refused
        assert failed
    else:
        assert out == want or failed
    if first_other is None:
        assert not failed and decoder.buffered == 0


@fuzz(400)
@given(st.lists(st.binary(max_size=200), max_size=16))
def test_frame_decoder_on_pure_noise(chunks):
    decoder = FrameDecoder(LIMIT)
    for chunk in chunks:
        try:
            payloads = decoder.feed(chunk)
        except FrameError:
            return
        assert all(len(p) <= LIMIT for p in payloads)
        assert decoder.buffered < HEADER_SIZE + LIMIT


# ---------------------------------------------------------------------------- FramedProtocol


class FakeTransport(asyncio.Transport):
    """Just what ``FramedProtocol`` asks of an asyncio transport, without a loop or socket."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.written))


def make_protocol(close_after: int | None) -> tuple[FramedProtocol, FakeTransport, list[bytes]]:
    """A connection whose owner closes it after ``close_after`` payloads (None: never)."""
    got: list[bytes] = []

    def on_payload(proto: FramedProtocol, payload: bytes) -> None:
        got.append(payload)
        if close_after is not None and len(got) >= close_after:
            proto.close("the owner had enough")

    proto = FramedProtocol(on_payload, label="fuzz", max_frame=LIMIT)
    transport = FakeTransport()
    proto.connection_made(transport)
    return proto, transport, got


@fuzz(300)
@given(st.data(), streams, st.none() | st.integers(1, 4))
def test_framed_protocol_closes_on_a_bad_frame_and_never_raises(data, items, close_after):
    pieces = cut(data, b"".join(raw for _, _, raw in items))
    reference, refused = feed_all(FrameDecoder(LIMIT), pieces)
    proto, transport, got = make_protocol(close_after)
    for piece in pieces:
        if transport.closed:
            break  # asyncio delivers nothing to a closed connection
        proto.data_received(piece)  # an exception escaping here fails the test
    # What the decoder hands out, in order, up to where the owner closed the connection.
    owner_closed = close_after is not None and len(reference) >= close_after
    assert got == (reference[:close_after] if owner_closed else reference)
    # A bad frame closes the connection; good frames alone never do.
    assert transport.closed == (refused or owner_closed)


def test_framed_protocol_sends_and_refuses_oversized_payloads():
    proto, transport, _ = make_protocol(None)
    assert proto.send(b"hello")
    assert transport.written == [encode_frame(b"hello", LIMIT)]
    assert not proto.send(b"x" * (LIMIT + 1))  # refused, logged, the connection stays
    assert not transport.closed
    proto.connection_lost(None)
    assert not proto.open and not proto.send(b"late")
