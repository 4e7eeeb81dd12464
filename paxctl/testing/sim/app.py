"""The simulator's state machine: a hash chain over the commands that take effect.

Two replicas that applied the same commands in the same order hold the same digest, so comparing
digests slot by slot checks that every replica's state is the one sequence applied in order
(and, through snapshots, that state transfer carries exactly that state).
"""

from __future__ import annotations

import hashlib

import msgpack

from paxctl.core.types import Command, Snapshot

GENESIS = b"\x00" * 32


def chain(digest: bytes, commands: tuple[Command, ...]) -> bytes:
    h = hashlib.sha256(digest)
    for cmd in commands:
        h.update(b"%d:%d:%d:" % (cmd.client, cmd.seq, len(cmd.data)))
        h.update(cmd.data)
    return h.digest()


class ChainApp:
    def __init__(self, slot: int = 0, digest: bytes = GENESIS) -> None:
        self.slot = slot
        self.digest = digest

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot | None) -> ChainApp:
        return cls() if snapshot is None else cls(*decode_state(snapshot.app))

    def apply(self, slot: int, commands: tuple[Command, ...]) -> None:
        self.slot = slot
        self.digest = chain(self.digest, commands)

    def encode(self) -> bytes:
        data: bytes = msgpack.packb([self.slot, self.digest], use_bin_type=True)
        return data


def decode_state(app: bytes) -> tuple[int, bytes]:
    slot, digest = msgpack.unpackb(app, raw=False)
    return int(slot), bytes(digest)
