"""The simulator's state machine: a hash chain over the commands that take effect.

Two replicas that applied the same commands in the same order hold the same digest, so comparing
digests slot by slot checks that every replica's state is the one sequence applied in order
(and, through snapshots, that state transfer carries exactly that state). Exactly-once is the
application's, as in the real state machine: it keeps each client's highest applied ``seq``
(in its snapshots too) and leaves a retry out of the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack

from paxctl.core.membership import CONFIG_CLIENT
from paxctl.core.state import ReadState
from paxctl.core.types import Applied, Command, Snapshot

if TYPE_CHECKING:
    from paxctl.server.driver import Driver

GENESIS = b"\x00" * 32


def chain(digest: bytes, commands: tuple[Command, ...]) -> bytes:
    h = hashlib.sha256(digest)
    for cmd in commands:
        h.update(b"%d:%d:%d:" % (cmd.client, cmd.seq, len(cmd.data)))
        h.update(cmd.data)
    return h.digest()


class ChainApp:
    def __init__(
        self, slot: int = 0, digest: bytes = GENESIS, last: dict[int, int] | None = None
    ) -> None:
        self.slot = slot
        self.digest = digest
        self.last: dict[int, int] = dict(last or {})  # client -> highest seq applied

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot | None) -> ChainApp:
        if snapshot is None:
            return cls()
        slot, digest = decode_state(snapshot.app)
        _, _, last = msgpack.unpackb(snapshot.app, raw=False, strict_map_key=False)
        return cls(slot, digest, {int(c): int(s) for c, s in last})

    def is_applied(self, cmd: Command) -> bool:
        return cmd.seq <= self.last.get(cmd.client, -1)

    def apply(self, slot: int, commands: tuple[Command, ...]) -> tuple[Command, ...]:
        """Apply a chosen slot; returns the commands that took effect (retries left out).
        Configuration changes are the core's business: the chain leaves them out."""
        fresh = []
        for cmd in commands:
            if cmd.client != CONFIG_CLIENT and not self.is_applied(cmd):
                self.last[cmd.client] = cmd.seq
                fresh.append(cmd)
        self.slot = slot
        self.digest = chain(self.digest, tuple(fresh))
        return tuple(fresh)

    def encode(self) -> bytes:
        last = [[c, self.last[c]] for c in sorted(self.last)]
        data: bytes = msgpack.packb([self.slot, self.digest, last], use_bin_type=True)
        return data


def decode_state(app: bytes) -> tuple[int, bytes]:
    slot, digest, _ = msgpack.unpackb(app, raw=False)
    return int(slot), bytes(digest)


@dataclass(frozen=True, slots=True)
class Answer:
    """The chain workload's reply: ``cmd`` took effect (or was a retry of one that did)."""

    cmd: Command


@dataclass(frozen=True, slots=True)
class Served:
    """A linearizable read answered from the state after ``slot`` (None: it failed)."""

    ctx: int
    slot: int | None


class ChainReplica:
    """The ``Application`` the shared Ready loop (``server/driver.py``) drives in the chain
    workload: the hash chain, its replies and reads, as outputs in the loop's order."""

    def __init__(self, snapshot: Snapshot | None, on_state: Callable[[int, bytes], None]) -> None:
        self.state = ChainApp.from_snapshot(snapshot)
        self.on_state = on_state  # the oracle's check of the state after each slot
        self.driver: Driver[Answer | Served] | None = None

    def check(self, snapshot: Snapshot) -> bool:
        """The application's check of a pulled snapshot: it decodes, and is of its slot."""
        try:
            return ChainApp.from_snapshot(snapshot).slot == snapshot.slot
        except Exception:
            return False

    def install(self, snapshot: Snapshot) -> None:
        self.state = ChainApp.from_snapshot(snapshot)

    def apply(self, applied: Applied) -> None:
        assert self.driver is not None
        self.state.apply(applied.slot, applied.commands)
        self.on_state(applied.slot, self.state.digest)
        self.driver.out.extend(Answer(cmd) for cmd in applied.commands)  # retries: done too

    def read_done(self, read: ReadState) -> None:
        driver = self.driver
        assert driver is not None
        if read.index is None:
            driver.out.append(Served(read.ctx, None))
            return
        ctx = read.ctx

        def serve() -> None:
            driver.out.append(Served(ctx, driver.node.learner.applied))

        driver.when_applied(read.index, serve)

    def snapshot(self) -> bytes:
        return self.state.encode()
