"""The replicated session table: which client sessions are open, each one's timeout, and the
hash of its secret (what a hello resuming it must prove; never listed to anyone).

The table is replicated (snapshotted and digested) rather than kept by the leader alone, so a new
leader knows every session it must keep expiring, and every replica refuses the writes of a
session already closed in the same order. It holds no times: liveness is the leader's business,
and the state machine stays a function of the commands.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from paxctl.statemachine.errors import SnapshotError
from paxctl.statemachine.ops import MAX_SESSION_TIMEOUT_MS, SECRET_HASH_BYTES, is_session_id

_MOD = 1 << 256


class SessionTable:
    """``session -> timeout_ms`` and each one's secret hash, with an incremental digest as the
    tree's (dirty entries only)."""

    def __init__(self) -> None:
        self._timeouts: dict[int, int] = {}
        self._secrets: dict[int, bytes] = {}
        self._hashes: dict[int, int] = {}
        self._dirty: dict[int, None] = {}
        self._sum = 0

    def __contains__(self, session: int) -> bool:
        return session in self._timeouts

    def __len__(self) -> int:
        return len(self._timeouts)

    def as_dict(self) -> dict[int, int]:
        """A copy, sorted by session, that the caller may keep or change."""
        return {s: self._timeouts[s] for s in sorted(self._timeouts)}

    def open(self, session: int, timeout_ms: int, secret_hash: bytes) -> None:
        """Add ``session`` (the state machine opens each id once: ids are never reused)."""
        self._timeouts[session] = timeout_ms
        self._secrets[session] = secret_hash
        self._dirty[session] = None

    def close(self, session: int) -> bool:
        """Remove ``session``; False if it was not open (closing twice is no error)."""
        if self._timeouts.pop(session, None) is None:
            return False
        del self._secrets[session]
        self._dirty[session] = None
        return True

    def proven(self, session: int, secret_hash: bytes) -> bool:
        """Whether ``session`` is open and ``secret_hash`` is its secret's hash (compared in
        constant time: the time taken says nothing about how much of it matched)."""
        expected = self._secrets.get(session)
        return expected is not None and hmac.compare_digest(expected, secret_hash)

    # ---------------------------------------------------------------------------- digest

    def digest_sum(self) -> int:
        """Sum of the entries' hashes modulo 2**256, rehashing only the entries changed."""
        for session in self._dirty:
            self._sum -= self._hashes.pop(session, 0)
            timeout = self._timeouts.get(session)
            if timeout is not None:
                h = _hash_entry(session, timeout, self._secrets[session])
                self._hashes[session] = h
                self._sum += h
        self._dirty.clear()
        self._sum %= _MOD
        return self._sum

    def digest_sum_from_scratch(self) -> int:
        """The same sum from every entry, to audit the incremental one."""
        entries = self._timeouts.items()
        return sum(_hash_entry(s, t, self._secrets[s]) for s, t in entries) % _MOD

    # -------------------------------------------------------------------------- snapshots

    def to_wire(self) -> list[list[Any]]:
        """``[[session, timeout_ms, secret_hash], ...]`` in session order, so equal tables
        encode alike."""
        return [[s, self._timeouts[s], self._secrets[s]] for s in sorted(self._timeouts)]

    @classmethod
    def from_wire(cls, wire: Any) -> SessionTable:
        """The table ``to_wire`` produced; ``SnapshotError`` for anything else."""
        if type(wire) is not list:
            raise SnapshotError("the session table is a list of [session, timeout_ms, hash]")
        table = cls()
        previous = -1
        for entry in wire:
            if type(entry) is not list or len(entry) != 3:
                raise SnapshotError("a session entry is [session, timeout_ms, secret_hash]")
            session, timeout, secret_hash = entry
            if not (
                type(session) is int
                and is_session_id(session)
                and session > previous
                and type(timeout) is int
                and 1 <= timeout <= MAX_SESSION_TIMEOUT_MS
                and type(secret_hash) is bytes
                and len(secret_hash) == SECRET_HASH_BYTES
            ):
                raise SnapshotError(f"bad or unordered session entry for session {session!r}")
            previous = session
            table.open(session, timeout, secret_hash)
        return table


def _hash_entry(session: int, timeout_ms: int, secret_hash: bytes) -> int:
    entry = b"%d:%d:%s" % (session, timeout_ms, secret_hash)
    h = hashlib.blake2b(entry, digest_size=32, person=b"paxctl-sess")
    return int.from_bytes(h.digest(), "big")
