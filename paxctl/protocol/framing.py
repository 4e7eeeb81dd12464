"""Frames on a TCP stream, for peer and client traffic alike (sans-I/O).

A frame is ``length(4) crc32(4) version(1) payload``: the length counts the payload, the CRC
covers the version byte and the payload. ``FrameDecoder`` is fed whatever bytes arrive and hands
back whole payloads; a frame that is oversized, of an unknown version or fails its checksum
raises ``FrameError`` with the reason, and the connection it came on is closed. Nothing a peer or
a client sends can make the decoder allocate more than ``MAX_FRAME`` bytes or raise anything else.
"""

from __future__ import annotations

import struct
import zlib

PROTOCOL_VERSION = 1
#: The largest payload a client may send or receive: room for a 1 MiB znode and its stat.
MAX_FRAME = 4 * 1024 * 1024
#: The largest payload between nodes. Snapshots no longer bound it: they travel in chunks of
#: ``Config.snapshot_chunk_bytes`` (1 MiB), and batches, catch-up replies and forwards are kept
#: near ``Config.max_message_bytes`` (2 MiB) but for one command of up to a client frame. What
#: needs it is a ``Promise``: the votes for every open slot above the candidate's commit, up to
#: a window (16) of slots of up to one client frame each. Lowering it to a few MiB needs the
#: Promise split in parts first (tests/unit/test_message_sizes.py checks the arithmetic).
MAX_PEER_FRAME = 64 * 1024 * 1024
#: A client whose hello would carry more than this many bytes of watches first says hello
#: without them (a node takes only small frames before a hello), then again with them.
HELLO_WATCH_BYTES = 2048
#: The smallest pre-hello frame limit a node may be given: room for any hello so sent.
MIN_HELLO_FRAME = 4096
_HEADER = struct.Struct(">IIB")
#: The CRC of the version byte, which every frame's CRC starts from.
_VERSION_CRC = zlib.crc32(bytes([PROTOCOL_VERSION]))
HEADER_SIZE = _HEADER.size


class FrameError(ValueError):
    """The stream carries something that is not a valid frame; close the connection."""


def encode_frame(payload: bytes, max_frame: int = MAX_FRAME) -> bytes:
    if len(payload) > max_frame:
        raise FrameError(f"frame of {len(payload)} bytes exceeds the {max_frame}-byte limit")
    return _HEADER.pack(len(payload), zlib.crc32(payload, _VERSION_CRC), PROTOCOL_VERSION) + payload


class FrameDecoder:
    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        #: The largest frame accepted; the owner may change it between feeds (e.g. a client's
        #: small limit before its hello).
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every complete payload, in order.

        Usually ``data`` holds whole frames and nothing waits: they are cut from it directly
        (one copy each), and only a partial frame's bytes are kept."""
        buf: bytes | bytearray | memoryview = data
        if self._buf:
            self._buf += data
            buf = self._buf
        out = []
        pos, size, limit = 0, len(buf), self._max
        while size - pos >= HEADER_SIZE:
            length, crc, version = _HEADER.unpack_from(buf, pos)
            if version != PROTOCOL_VERSION:
                raise FrameError(f"unknown protocol version {version}")
            if length > limit:
                raise FrameError(f"frame of {length} bytes exceeds the {limit}-byte limit")
            start = pos + HEADER_SIZE
            end = start + length
            if size < end:
                break
            payload = bytes(buf[start:end])
            if zlib.crc32(payload, _VERSION_CRC) != crc:
                raise FrameError("frame checksum mismatch")
            out.append(payload)
            pos = end
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < size:
            self._buf = bytearray(buf[pos:])
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def max_frame(self) -> int:
        return self._max

    @max_frame.setter
    def max_frame(self, value: int) -> None:
        """Change the limit for the frames still to come (a peer connection starts with a small
        one and raises it once the peer is authenticated)."""
        self._max = value
