"""The exactly-once table of one-shot writes (``Once``): bounded, and safe when it forgets.

A one-shot write has no session whose entry could hold its outcome, so the state machine keeps
one entry per temporary id that wrote, ``(seq, outcome, zxid applied)``, in the order they were
last written. Anyone can make up temporary ids, so the table keeps at most ``ONCE_KEEP`` of them:
the oldest goes first, alike on every replica (it is replicated state, in snapshots and the
digest), and ``horizon`` remembers the zxid at which the newest forgotten one was written.

Forgetting must never let a retry apply twice. Every ``Once`` carries ``after``, a zxid its
client had seen before it first sent the write; an earlier attempt of it was therefore applied
after ``after``. Entries leave oldest first, so every entry written after ``horizon`` is still
here: a write with no entry and ``after >= horizon`` has certainly not been applied, and one
with ``after < horizon`` may have been, and forgotten. That one is refused as ``Indeterminate``
(the client reports the outcome as unknown, exit 6), never applied. A flood of one-shot writes
from others can thus cost a slow retry its answer, never its exactly-once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from paxctl.core.ints import MAX_UINT
from paxctl.statemachine.errors import SnapshotError, ZnodeError
from paxctl.statemachine.ops import is_temporary_id

if TYPE_CHECKING:
    from paxctl.statemachine.machine import Outcome

#: Temporary ids whose last one-shot write the table keeps. A one-shot client is answered in
#: milliseconds, so this covers its retries unless thousands of other one-shot writes come in
#: between; memory stays bounded by it (an entry holds one outcome: a stat or a path).
ONCE_KEEP = 4096

_MOD = 1 << 256


class OutcomeUnknown(ZnodeError):
    """A one-shot write whose earlier attempt may have been applied and forgotten since."""

    code = "Indeterminate"


class OnceTable:
    """``temporary id -> (seq, outcome, zxid)``, oldest first, at most ``keep`` entries."""

    def __init__(self, keep: int = ONCE_KEEP) -> None:
        self.keep = keep
        #: The zxid at which the newest forgotten entry was written (0: none forgotten).
        self.horizon = 0
        self._entries: dict[int, tuple[int, Outcome, int]] = {}
        self._hashes: dict[int, int] = {}
        self._sum = 0

    def __len__(self) -> int:
        return len(self._entries)

    def last(self, client: int) -> tuple[int, Outcome] | None:
        """``client``'s last one-shot ``(seq, outcome)``, if kept."""
        entry = self._entries.get(client)
        return None if entry is None else (entry[0], entry[1])

    def may_have_forgotten(self, after: int) -> bool:
        """Whether a write first sent after its client saw ``after`` (and with no entry) may
        have been applied and forgotten."""
        return after < self.horizon

    def record(self, client: int, seq: int, outcome: Outcome, zxid: int) -> None:
        """Keep ``client``'s outcome as its newest entry; forget the oldest beyond ``keep``."""
        self._drop(client)
        self._entries[client] = (seq, outcome, zxid)
        h = _hash_entry(client, seq, outcome, zxid)
        self._hashes[client] = h
        self._sum = (self._sum + h) % _MOD
        while len(self._entries) > self.keep:
            oldest = next(iter(self._entries))
            self.horizon = max(self.horizon, self._entries[oldest][2])
            self._drop(oldest)

    def _drop(self, client: int) -> None:
        if self._entries.pop(client, None) is not None:
            self._sum = (self._sum - self._hashes.pop(client)) % _MOD

    # ---------------------------------------------------------------------------- digest

    def digest_part(self) -> bytes:
        return b"%d:%d:%d:" % (self.horizon, len(self._entries), self._sum)

    def digest_part_from_scratch(self) -> bytes:
        total = sum(_hash_entry(c, *e) for c, e in self._entries.items()) % _MOD
        return b"%d:%d:%d:" % (self.horizon, len(self._entries), total)

    # -------------------------------------------------------------------------- snapshots

    def to_wire(self) -> list[Any]:
        """``[horizon, [[client, seq, outcome, zxid], ...]]``, oldest first."""
        rows = [[c, s, o.to_wire(), z] for c, (s, o, z) in self._entries.items()]
        return [self.horizon, rows]

    @classmethod
    def from_wire(
        cls, wire: Any, outcome: Callable[[Any], Outcome], last_zxid: int, keep: int = ONCE_KEEP
    ) -> OnceTable:
        """The table ``to_wire`` produced (``outcome`` decodes one); ``SnapshotError`` for
        anything else, including entries a real log could not have left."""
        if type(wire) is not list or len(wire) != 2 or type(wire[1]) is not list:
            raise SnapshotError("the one-shot table is [horizon, entries]")
        horizon, rows = wire
        if type(horizon) is not int or not 0 <= horizon <= last_zxid or len(rows) > keep:
            raise SnapshotError("bad one-shot horizon or too many entries")
        table = cls(keep)
        previous = horizon
        for row in rows:
            if type(row) is not list or len(row) != 4:
                raise SnapshotError("a one-shot entry is [client, seq, outcome, zxid]")
            client, seq, wired, zxid = row
            if not (
                type(client) is int
                and is_temporary_id(client)
                and client not in table._entries
                and type(seq) is int
                and 1 <= seq <= MAX_UINT
                and type(zxid) is int
                and previous < zxid <= last_zxid
            ):
                raise SnapshotError(f"bad, repeated or unordered one-shot entry {client!r}")
            try:
                decoded = outcome(wired)
            except ValueError as e:
                raise SnapshotError(f"bad one-shot outcome: {e}") from e
            table.record(client, seq, decoded, zxid)
            previous = zxid
        table.horizon = horizon
        return table


def _hash_entry(client: int, seq: int, outcome: Outcome, zxid: int) -> int:
    packed = msgpack.packb([client, seq, outcome.to_wire(), zxid], use_bin_type=True)
    h = hashlib.blake2b(packed, digest_size=32, person=b"paxctl-once")
    return int.from_bytes(h.digest(), "big")
