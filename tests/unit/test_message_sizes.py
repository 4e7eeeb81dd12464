"""The message size limits agree: what the core may put in one message fits in a peer frame."""

from __future__ import annotations

from paxctl.core import codec
from paxctl.core.messages import SnapshotChunk
from paxctl.core.state import MAX_SNAPSHOT_BYTES, Config
from paxctl.protocol.framing import MAX_FRAME, MAX_PEER_FRAME


def test_a_full_snapshot_chunk_fits_in_a_message_and_a_frame():
    cfg = Config(1, (1, 2, 3))
    chunk = SnapshotChunk(2**31, 2**31, 2**62, 2**62, b"\xff" * cfg.snapshot_chunk_bytes)
    size = len(codec.encode(chunk))
    assert size <= cfg.max_message_bytes <= MAX_PEER_FRAME
    assert cfg.max_snapshot_bytes == MAX_SNAPSHOT_BYTES > 4 * MAX_PEER_FRAME  # not frame-bound


def test_a_promise_of_a_window_of_the_largest_commands_fits_in_a_peer_frame():
    # A slot holds up to max_batch_bytes of commands, or one bigger command, which arrived in
    # one client frame; a Promise carries the votes of up to a window of open slots.
    cfg = Config(1, (1, 2, 3))
    largest_slot = max(cfg.max_batch_bytes, MAX_FRAME)
    assert cfg.window * largest_slot <= MAX_PEER_FRAME
    assert cfg.max_message_bytes + MAX_FRAME <= MAX_PEER_FRAME  # a batch plus one big command
