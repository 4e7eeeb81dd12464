"""Exactly-once application of client commands.

A client retries a command whose outcome it did not learn, with the same ``(client, seq)``. The
retry may be chosen in a second slot; every replica skips it there, because every replica applies
the same slots in the same order and so holds the same table. Clients issue their sequence numbers
in order and wait for each command before the next (as ZooKeeper's and Raft's sessions assume), so
the highest applied sequence number per client is all the table needs.
"""

from __future__ import annotations

from paxctl.core.types import Applied, Command, Value


class ClientTable:
    """The highest sequence number applied for each client."""

    def __init__(self, last_seq: dict[int, int] | None = None) -> None:
        self.last_seq: dict[int, int] = dict(last_seq or {})

    def is_applied(self, command: Command) -> bool:
        return command.seq <= self.last_seq.get(command.client, -1)

    def apply(self, slot: int, value: Value) -> Applied:
        """Split a chosen slot into the commands that take effect and the retries to skip."""
        fresh: list[Command] = []
        skipped: list[Command] = []
        for cmd in value:
            if self.is_applied(cmd):
                skipped.append(cmd)
            else:
                self.last_seq[cmd.client] = cmd.seq
                fresh.append(cmd)
        return Applied(slot, tuple(fresh), tuple(skipped))
