"""Replicas compare state digests through the log (Paxos Made Live, section 6.2).

Every ``interval`` slots each replica notes the digest of its state. The leader proposes a
check command carrying its own digest for such a slot; every replica applies that command at the
same point of the log and compares it with the digest it noted. A mismatch means two replicas
applied the same log and reached different states: a bug or corruption that must be loud.
"""

from __future__ import annotations

import logging

import msgpack

from paxctl.core.types import Command

log = logging.getLogger("paxctl.audit")

#: The client id of commands the cluster proposes for itself (clients use ids >= 1).
SYSTEM_CLIENT = 0


class DigestAudit:
    def __init__(self, interval: int, keep: int = 8) -> None:
        self.interval = interval
        self._keep = keep
        self._noted: dict[int, bytes] = {}
        self.checks = 0
        self.mismatches = 0

    def due(self, slot: int) -> bool:
        return self.interval > 0 and slot % self.interval == 0

    def note(self, slot: int, digest: bytes) -> None:
        self._noted[slot] = digest
        for old in sorted(self._noted)[: -self._keep]:
            del self._noted[old]

    def command(self, slot: int) -> Command:
        """The check command a leader proposes for a slot it noted."""
        data = msgpack.packb(["digest", slot, self._noted[slot]], use_bin_type=True)
        return Command(SYSTEM_CLIENT, slot, data)

    def check(self, data: bytes) -> bool | None:
        """Apply a check command: True if it matches, False if not, None if not comparable."""
        try:
            kind, slot, digest = msgpack.unpackb(data, raw=False)
            if kind != "digest" or type(slot) is not int or type(digest) is not bytes:
                raise ValueError
        except (ValueError, TypeError, msgpack.UnpackException):
            log.error("malformed digest check command ignored")
            return None
        mine = self._noted.get(slot)
        if mine is None:  # e.g. this node installed a snapshot past that slot
            return None
        self.checks += 1
        if mine != digest:
            self.mismatches += 1
            log.critical(
                "STATE DIVERGENCE: after slot %d this replica's digest is %s, the leader's %s. "
                "Replicas applied the same log and disagree: stop writes and investigate.",
                slot, mine.hex(), digest.hex(),
            )  # fmt: skip
            return False
        return True
